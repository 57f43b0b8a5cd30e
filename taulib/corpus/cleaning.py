"""Turning packaged documentation and text into clean prose paragraphs (standard library only)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_CODE_LIKE = re.compile(r"[{}<>]|==|\(\)|->|::|\$\w|/\w+/\w+")
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]?$")


def prose_paragraph(text: str, min_words: int = 8) -> str | None:
    """Normalise whitespace and keep the paragraph only if it reads as prose.

    Prose here: at least `min_words` words, at least 70% letters, ends like a sentence, and
    (when short) carries no code-like tokens. Tables, code and navigation text fail these.
    """
    paragraph = re.sub(r"\s+", " ", text).strip()
    if len(paragraph.split()) < min_words:
        return None
    letters = sum(character.isalpha() for character in paragraph)
    if letters / len(paragraph) < 0.70:
        return None
    if not _SENTENCE_END.search(paragraph):
        return None
    if len(paragraph) < 200 and _CODE_LIKE.search(paragraph):
        return None
    return paragraph


def split_blank_lines(text: str) -> list[str]:
    return [block for block in re.split(r"\n\s*\n", text) if block.strip()]


class _ParagraphParser(HTMLParser):
    """Collects text by block element, skipping code, navigation and other non-prose regions."""

    BLOCK = {
        "p",
        "li",
        "dd",
        "dt",
        "blockquote",
        "td",
        "th",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "div",
        "section",
        "tr",
        "table",
        "ul",
        "ol",
        "dl",
        "page",
        "note",
        "item",
    }
    SKIP = {"script", "style", "pre", "nav", "head", "title", "header", "footer", "math", "svg", "button", "form", "select", "code", "screen", "info"}
    VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "source", "base", "embed", "param", "track"}
    # exact class tokens: a substring match would hide whole pages (e.g. body class="sidebar-visible")
    SKIP_CLASSES = {
        "sphinxsidebar",
        "related",
        "navigation",
        "navheader",
        "navfooter",
        "footer",
        "headerlink",
        "highlight",
        "toc",
        "sidebar",
        "breadcrumb",
        "breadcrumbs",
        "sig",
        "literal-block",
        "screen",
        "programlisting",
        "synopsis",
        "nav-chapters",
        "nav-wrapper",
        "menu-bar",
        "toctree-wrapper",
        "example",
        "listingblock",
        "literalblock",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buffer: list[str] = []
        self._skipping: list[str] = []  # open tags of the skipped region

    def _flush(self) -> None:
        if self._buffer:
            self.paragraphs.append("".join(self._buffer))
            self._buffer = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag == "br" and not self._skipping:
                self._buffer.append(" ")
            return
        if self._skipping:
            self._skipping.append(tag)
            return
        attributes = dict(attrs)
        classes = set(f"{attributes.get('class') or ''} {attributes.get('role') or ''}".split())
        if tag in self.SKIP or (tag not in ("html", "body", "main", "article") and classes & self.SKIP_CLASSES):
            self._flush()
            self._skipping.append(tag)
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag in self._skipping:
                while self._skipping and self._skipping.pop() != tag:
                    pass
            return
        if tag in self.BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._buffer.append(data)


def html_paragraphs(markup: str) -> list[str]:
    """Text of an HTML (or Mallard/DocBook-like XML) page, one entry per block element."""
    parser = _ParagraphParser()
    parser.feed(markup)
    parser.close()
    parser._flush()
    return parser.paragraphs


_RST_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^`>]*>)?`")
_ADMONITION = re.compile(r"\.\.\s+(note|warning|tip|important|seealso|versionadded|versionchanged|deprecated|attention|hint)::\s*(.*)")
_RULE_LINE = re.compile(r"^\s*[=\-~^\"'`#*+_.:]{3,}\s*$")


def _rst_inline(text: str) -> str:
    text = _RST_ROLE.sub(r"\1", text)
    text = re.sub(r"`([^`<]+?)\s*<[^`>]+>`_+", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<!\w)\*([^*\s][^*]*)\*", r"\1", text)
    text = re.sub(r"\|(\w[\w -]*)\|", r"\1", text)
    return re.sub(r"\[#?\w*\]_", "", text)


def rst_paragraphs(text: str) -> list[str]:
    """Paragraphs of reStructuredText, dropping directives, literal blocks, tables and rules."""
    out: list[str] = []
    skip_deeper_than: int | None = None  # inside a directive body or literal block
    for block in split_blank_lines(text):
        lines = block.split("\n")
        first = lines[0]
        indent = len(first) - len(first.lstrip())
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        stripped = first.strip()
        if stripped.startswith(".."):
            admonition = _ADMONITION.match(stripped)
            if admonition:
                out.append(_rst_inline(" ".join([admonition.group(2)] + [line.strip() for line in lines[1:]])))
            else:
                skip_deeper_than = indent
            continue
        if _RULE_LINE.match(stripped) or stripped.startswith(("+--", "|", ">>>", "$ ", "# ")):
            continue
        paragraph = " ".join(line.strip() for line in lines if not _RULE_LINE.match(line))
        if paragraph.rstrip().endswith("::"):
            paragraph = paragraph.rstrip()[:-1]
            skip_deeper_than = indent  # the literal block that follows
        out.append(_rst_inline(paragraph))
    return [paragraph for paragraph in out if paragraph]


def pod_paragraphs(text: str) -> list[str]:
    """Ordinary paragraphs of Perl POD, without commands, verbatim blocks or formatting codes."""
    out: list[str] = []
    in_region = False
    for block in split_blank_lines(text):
        if block.startswith("=begin"):
            in_region = True
            continue
        if block.startswith("=end"):
            in_region = False
            continue
        if in_region or block[0] in " \t" or block.startswith("="):
            continue
        for _ in range(3):  # formatting codes nest
            block = re.sub(r"[BICFLSXEZ]<<+\s(.*?)\s>>+", r"\1", block)
            block = re.sub(r"L<[^|<>]*\|([^<>]*)>", r"\1", block)
            block = re.sub(r"[BICFLSXZ]<([^<>]*)>", r"\1", block)
        block = re.sub(r"E<(\w+)>", lambda m: chr(int(m.group(1))) if m.group(1).isdigit() else html.unescape(f"&{m.group(1)};"), block)
        out.append(block)
    return out


def vim_help_paragraphs(text: str) -> list[str]:
    """Vim help files: drop *tag* anchors, unwrap |links|."""
    text = re.sub(r"\*\S+?\*", "", text)
    text = re.sub(r"\|(\S+?)\|", r"\1", text)
    return split_blank_lines(text)
