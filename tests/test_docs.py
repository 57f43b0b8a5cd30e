"""The documentation: a README read in one sitting, the rest in docs/, links that resolve, and a
parameter reference generated from the typed configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taulib.parameter_docs import parameter_markdown, parameter_reference

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 200
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), REPO / "benchmarks" / "RESULTS.md"]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    """The document's links other than web addresses, code blocks left out."""
    return [target for target in LINK.findall(FENCE.sub("", path.read_text())) if not re.match(r"[a-z]+:", target)]


def test_link_and_anchor_rules_on_known_cases(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n## The GPU path (`benchmarks/gpu_path.py`)\n## Equal λ, single seed\n## Notes\n## Notes\n"
        "[a](other.md#x) ![b](img.png) [web](https://example.org) [here](#notes-1)\n```\n[not a link](in-code.md)\n```\n"
    )
    assert relative_links(page) == ["other.md#x", "img.png", "#notes-1"]
    assert anchors(page) == {"title", "the-gpu-path-benchmarksgpu_pathpy", "equal-λ-single-seed", "notes", "notes-1"}


def test_readme_is_read_in_one_sitting():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {README_MAX_LINES})"


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(document):
    broken = []
    for target in relative_links(document):
        file_part, _, fragment = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.relative_to(REPO)}")
    assert not broken, f"{document.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_indexes_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    missing = [path.name for path in DOCS.glob("*.md") if path.resolve() not in linked]
    assert DOCS.is_dir() and not missing, f"README.md does not link {missing}"


def test_parameters_page_is_generated_from_the_code():
    committed = (DOCS / "parameters.md").read_text()
    assert committed == parameter_markdown(), "docs/parameters.md is stale: run `python -m taulib params --markdown > docs/parameters.md`"


def test_parameters_page_lists_every_parameter_with_a_description():
    page = parameter_markdown()
    rows = parameter_reference()
    assert rows and all(f"| `{name}` |" in page for name, *_ in rows)
    undescribed = [name for name, _, _, description in rows if not description]
    assert not undescribed, f"parameters without a description (taulib/config.py): {undescribed}"
    # the sweep file's keys are listed too, and a type's `|` does not split its table cell
    assert "| `calibration.tolerance` | `float` | `0.15` |" in page
    assert "| `model.layer` | `int \\| None` | `None` |" in page


def test_readme_language_model_findings_are_generated_from_the_kept_report():
    """README quotes the kept language-model report (docs/findings/language_model, made by `python -m taulib keep` from a
    finished `make study`) word for word, and the kept report carries its stamp."""
    from taulib.analysis.findings import readme_block

    kept = DOCS / "findings" / "language_model"
    assert (kept / "REPORT.md").is_file() and (kept / "provenance.json").is_file()
    block = readme_block(kept, "docs/findings/language_model/REPORT.md")
    assert block in README.read_text(), "README's language-model findings differ from the kept report: run `python -m taulib keep`"


def test_readme_ground_truth_findings_are_generated_from_the_kept_report():
    """README quotes the kept ground-truth report (docs/findings/ground_truth, made by
    `benchmarks/ground_truth_track.py --keep docs/findings/ground_truth`) word for word."""
    from taulib.groundtruth.report import readme_block

    kept = DOCS / "findings" / "ground_truth"
    assert (kept / "REPORT.md").is_file() and (kept / "provenance.json").is_file()
    block = readme_block(kept, "docs/findings/ground_truth/REPORT.md")
    assert block in README.read_text(), "README's ground-truth findings differ from the kept report: run benchmarks/ground_truth_track.py --keep docs/findings/ground_truth"
