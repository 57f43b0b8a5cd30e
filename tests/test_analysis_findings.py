"""The kept findings (taulib.analysis.findings): keeping a finished study's report, README generated from it, and a
later study's code compared with the kept report's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from formula_study import AA_ARM, write_synthetic_sweep

from taulib.analysis.findings import (
    CLAIMS_FILE,
    LANGUAGE_MODEL,
    PROVENANCE_FILE,
    README_BEGIN,
    README_END,
    FindingsError,
    code_comparison,
    code_versions,
    keep_study,
    readme_block,
)
from taulib.provenance import git_commit
from taulib.study.run import NOTEBOOKS_DIR, REPORT_NOTEBOOK, execute_notebook

REPOSITORY = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A synthetic sweep with its A/A control, its runs stamped with one commit, reported by notebook 05."""
    root = tmp_path_factory.mktemp("findings")
    outputs = write_synthetic_sweep(root / "outputs", aa=True)
    for config in outputs.glob("*/config.json"):
        (config.parent / "environment.json").write_text(json.dumps({"git_commit": COMMIT, "cpu": "test CPU"}))
    execute_notebook(
        NOTEBOOKS_DIR / REPORT_NOTEBOOK,
        root / "05_report.ipynb",
        {"outputs_dir": str(outputs), "save_png": False, "reference_arm": "tightened", "kept_report_dir": str(root / "no_kept_report")},
    )
    summary = json.loads((outputs / "study_summary.json").read_text())  # as the study records its analyses when they finish
    (outputs / "study_summary.json").write_text(json.dumps(summary | {"analyses": [{"notebook": "05_report.ipynb", "status": "ok"}]}))
    return outputs


def _readme(folder: Path) -> Path:
    readme = folder / "README.md"
    readme.write_text(f"# a project\n\n{README_BEGIN}\nold findings, typed by hand\n{README_END}\n\nthe rest\n")
    return readme


def test_a_kept_study_is_stamped_and_readme_is_generated_from_it(reported, tmp_path):
    readme = _readme(tmp_path)
    stamp = keep_study(reported, tmp_path / "docs" / "findings", "make study", readme)
    kept = tmp_path / "docs" / "findings" / LANGUAGE_MODEL
    assert stamp["kept"] == [LANGUAGE_MODEL]  # no ground-truth track in this study
    provenance = json.loads((kept / PROVENANCE_FILE).read_text())
    assert provenance["commit"] == COMMIT and provenance["command"] == "make study" and provenance["code_versions"] == code_versions()
    report = (kept / "REPORT.md").read_text()
    assert report.startswith(f"> Kept report: runs made at commit {COMMIT}; the report written at commit ") and "## The A/A control" in report
    assert provenance["report_commit"] == git_commit(REPOSITORY)  # notebook 05 ran this checkout's code
    # README's block is the generator's output from the kept files, and nothing else of README moved
    text = readme.read_text()
    block = readme_block(kept, "docs/findings/language_model/REPORT.md")
    assert block in text and "typed by hand" not in text and text.startswith("# a project") and text.endswith("the rest\n")
    claims = json.loads((kept / CLAIMS_FILE).read_text())
    [aa] = [c for c in claims if c["kind"] == "aa_summary"]
    assert aa["verdict"] == "unresolved" and "A/A control" in block and "unresolved on all" in block
    primary = [c for c in claims if c["kind"] == "comparison" and c["primary"]]
    summary = json.loads((kept / "report_summary.json").read_text())
    titles = dict(summary["questions"])
    lines = {line.split("**")[1]: line for line in block.splitlines() if line.startswith("- **")}
    for claim in primary:  # each primary contrast's verdict at its target, in its question's line
        line = lines[titles[claim["question"]]]
        assert f"{claim['verdict']} at L0" in line and f"{claim['numbers']['l0_target']:g}" in line
    assert AA_ARM not in {c["other"] for c in primary}
    assert [key for key, _ in summary["questions"]][:2] == ["reconstruction", "formation"]  # the report's order, not sorted


def test_a_study_that_did_not_finish_is_refused_and_the_kept_report_is_untouched(reported, tmp_path):
    findings = tmp_path / "findings"
    keep_study(reported, findings, "make study")
    before = (findings / LANGUAGE_MODEL / "REPORT.md").read_text()
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(reported), str(broken)], check=True)
    summary = json.loads((broken / "study_summary.json").read_text())
    (broken / "study_summary.json").write_text(json.dumps(summary | {"interrupted": True}))
    with pytest.raises(FindingsError, match="did not finish"):
        keep_study(broken, findings, "make study")
    (broken / "study_summary.json").write_text(json.dumps(summary | {"runs": [run | {"status": "pending"} for run in summary["runs"]]}))
    with pytest.raises(FindingsError, match="still running or was stopped"):
        keep_study(broken, findings, "make study")
    (broken / "report_claims.json").unlink()
    with pytest.raises(FindingsError, match="report_claims.json: missing"):
        keep_study(broken, findings, "make study")
    assert (findings / LANGUAGE_MODEL / "REPORT.md").read_text() == before


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_a_later_study_says_whether_its_code_is_the_kept_reports(tmp_path):
    repository = tmp_path / "repository"
    (repository / "taulib" / "train").mkdir(parents=True)
    (repository / "taulib" / "plots").mkdir(parents=True)
    _git(repository, "init", "-q")
    _git(repository, "config", "user.email", "test@example.org")
    _git(repository, "config", "user.name", "test")
    (repository / "taulib" / "train" / "step.py").write_text("STEP = 1\n")
    _git(repository, "add", "-A")
    _git(repository, "commit", "-qm", "first")
    kept_at = _git(repository, "rev-parse", "HEAD")
    (repository / "taulib" / "plots" / "figure.py").write_text("COLOUR = 'red'\n")  # not code that moves a number
    _git(repository, "add", "-A")
    _git(repository, "commit", "-qm", "a plot")
    plotted = _git(repository, "rev-parse", "HEAD")
    (repository / "taulib" / "train" / "step.py").write_text("STEP = 2\n")
    _git(repository, "add", "-A")
    _git(repository, "commit", "-qm", "a step")
    stepped = _git(repository, "rev-parse", "HEAD")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / PROVENANCE_FILE).write_text(json.dumps({"commit": kept_at, "code_versions": code_versions()}))
    assert code_comparison([plotted], kept, repository).startswith("the same training, evaluation and extraction code")
    differs = code_comparison([stepped], kept, repository)
    assert "differs from the kept report's" in differs and "taulib/train/step.py" in differs
    (kept / PROVENANCE_FILE).write_text(json.dumps({"commit": kept_at, "code_versions": code_versions() | {"training": 0}}))
    assert "training version 0 → 1" in code_comparison([plotted], kept, repository)
    assert "2 commits" in code_comparison([plotted, stepped], kept, repository)
    assert "no kept report" in code_comparison([plotted], tmp_path / "nowhere", repository)


def test_the_study_report_states_its_code_against_the_kept_report(reported):
    """Notebook 05 writes the comparison into REPORT.md (here no kept report was given, and it says so)."""
    assert "no kept report at" in (reported / "REPORT.md").read_text()


def test_the_studys_ground_truth_track_is_kept_beside_it_with_its_figures(reported, tmp_path):
    """The track `make study` ran first is kept with the language model's report, stamped alike, with its figures as PNG
    (not the HTML pages, which embed plotly.js)."""
    import shutil

    outputs = tmp_path / "outputs"
    shutil.copytree(reported, outputs)
    track = outputs / "ground_truth"
    (track / "figures").mkdir(parents=True)
    (track / "summary.json").write_text(json.dumps({"verdicts": []}))
    (track / "REPORT.md").write_text("# Ground truth: a track\n")
    (track / "figures" / "ground_truth_mcc.png").write_bytes(b"png")
    (track / "figures" / "ground_truth_mcc.html").write_text("<html>")
    stamp = keep_study(outputs, tmp_path / "findings", "make study", _readme(tmp_path))
    kept = tmp_path / "findings" / "ground_truth"
    assert stamp["kept"] == [LANGUAGE_MODEL, "ground_truth"]
    assert (kept / "figures" / "ground_truth_mcc.png").read_bytes() == b"png" and not (kept / "figures" / "ground_truth_mcc.html").exists()
    assert json.loads((kept / PROVENANCE_FILE).read_text())["commit"] == COMMIT
    assert (kept / "REPORT.md").read_text().startswith(f"> Kept report: runs made at commit {COMMIT}") and "# Ground truth: a track" in (kept / "REPORT.md").read_text()
