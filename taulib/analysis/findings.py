"""The kept findings: a finished study's reports copied into the repository, stamped, and README generated from them.

`python -m taulib keep` copies a finished default study (`make study`) into docs/findings/:

  docs/findings/language_model/   REPORT.md (with its stamp), report_claims.json, report_summary.json,
                                  study_summary.json, plan.json, provenance.json, figures/*.png
  docs/findings/ground_truth/     the same study's ground-truth track: REPORT.md, summary.json, track.json,
                                  provenance.json, figures/*.png

provenance.json is the stamp: the commit the runs were made at (their environment records), the CPU, the command,
the date and wall time, and the code versions (taulib.versions). README's findings are the blocks between the
markers, generated from these files (`readme_block`; the ground-truth one by taulib.groundtruth.report), and
tests/test_docs.py fails when README and the kept files disagree. A later study's report compares its code with
the stamp's (`code_comparison`) and says when its training or evaluation code differs.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taulib import atomic
from taulib.provenance import cpu_kind
from taulib.versions import EVALUATION_VERSION, EXTRACTION_VERSION, TRAINING_VERSION

LANGUAGE_MODEL, GROUND_TRUTH = "language_model", "ground_truth"
PROVENANCE_FILE = "provenance.json"
REPORT_FILE, CLAIMS_FILE, SUMMARY_FILE = "REPORT.md", "report_claims.json", "report_summary.json"
STUDY_SUMMARY_FILE = "study_summary.json"
README_BEGIN = "<!-- BEGIN language-model findings (generated: python -m taulib keep) -->"
README_END = "<!-- END language-model findings -->"
# the code whose change changes a study's numbers (a change elsewhere, to plots or the report's text, does not)
CODE_PATHS = (
    "taulib/activations",
    "taulib/corpus",
    "taulib/metrics",
    "taulib/train",
    "taulib/sae.py",
    "taulib/schedules.py",
    "taulib/precision.py",
    "taulib/versions.py",
)
REPOSITORY = Path(__file__).resolve().parents[2]
_LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)\)")


class FindingsError(ValueError):
    """A study that cannot be kept (unfinished, failed, or missing a report), said before anything is written."""


def code_versions() -> dict[str, int]:
    return {"extraction": EXTRACTION_VERSION, "training": TRAINING_VERSION, "evaluation": EVALUATION_VERSION}


def run_commits(outputs: Path) -> list[str]:
    """The distinct commits the study's runs were made at (each run's environment.json), in order of first use."""
    commits = []
    for path in sorted(Path(outputs).glob("*/environment.json")):
        commit = atomic.read_json(path).get("git_commit")
        if commit and commit not in commits:
            commits.append(commit)
    return commits


def study_stamp(outputs: Path, command: str) -> dict[str, Any]:
    """What made the study in `outputs`: its runs' commit, this CPU (a study is kept on the machine that ran it), the
    command, the date its report was written, its wall time and the code versions."""
    outputs = Path(outputs)
    summary = atomic.read_json(outputs / STUDY_SUMMARY_FILE)
    commits = run_commits(outputs)
    written = datetime.datetime.fromtimestamp((outputs / REPORT_FILE).stat().st_mtime, datetime.timezone.utc)
    return {
        "commit": commits[0] if len(commits) == 1 else None,
        "commits": commits,
        "report_commit": atomic.read_json(outputs / SUMMARY_FILE).get("commit"),  # the code that wrote REPORT.md
        "cpu": cpu_kind(),
        "command": command,
        "date": written.strftime("%Y-%m-%d"),
        "minutes": round(float(summary["seconds"]) / 60, 1),
        "code_versions": code_versions(),
    }


def check_keepable(outputs: Path) -> None:
    """Refuse, naming the problem, a study that is not a finished default study with a report."""
    outputs = Path(outputs)
    for name in (REPORT_FILE, CLAIMS_FILE, SUMMARY_FILE, STUDY_SUMMARY_FILE):
        if not (outputs / name).is_file():
            raise FindingsError(f"{outputs / name}: missing; keep a study that finished with its report (`make study`)")
    summary = atomic.read_json(outputs / STUDY_SUMMARY_FILE)
    if summary.get("error") or summary.get("interrupted"):
        raise FindingsError(f"{outputs / STUDY_SUMMARY_FILE}: the study did not finish ({summary.get('error') or 'interrupted'}); run it to the end first")
    pending = [run["run_name"] for run in summary.get("runs", []) if run.get("status") == "pending"]
    if pending or not summary.get("analyses"):
        what = f"{len(pending)} runs not yet run ({pending[0]}, …)" if pending else "its analyses have not run"
        raise FindingsError(f"{outputs / STUDY_SUMMARY_FILE}: the study is still running or was stopped: {what}; run it to the end first")
    if not run_commits(outputs):
        raise FindingsError(f"{outputs}: no run records its commit (environment.json): the report could not be traced to its code")


def keep_study(outputs: Path, findings: Path, command: str, readme: Path | None = None) -> dict[str, Any]:
    """Copy the study's report (and its ground-truth track's, when it ran) into `findings`, stamp both, and regenerate
    README's language-model block (the ground-truth block is taulib.groundtruth.report's). Each folder is written whole
    beside the old one and swapped in, so a failure leaves the old kept report as it was. Returns the stamp, with the
    folders kept ("kept")."""
    outputs, findings = Path(outputs), Path(findings)
    check_keepable(outputs)
    stamp = study_stamp(outputs, command)
    written_by = f"; the report written at commit {stamp['report_commit']}" if stamp["report_commit"] not in (None, stamp["commit"]) else ""
    header = (
        f"> Kept report: runs made at commit {stamp['commit'] or ', '.join(stamp['commits'])}{written_by}, on {stamp['cpu']}, {stamp['date']}, "
        f"by `{stamp['command']}` ({stamp['minutes']} min); code versions {stamp['code_versions']}.\n\n"
    )
    track = outputs / GROUND_TRUTH
    with tempfile.TemporaryDirectory(dir=findings.parent if findings.parent.is_dir() else None) as scratch:
        staged = Path(scratch)
        language_model = staged / LANGUAGE_MODEL
        _copy(outputs, language_model, (CLAIMS_FILE, SUMMARY_FILE, STUDY_SUMMARY_FILE))
        if (outputs / "sweeps" / "plan.json").is_file():
            shutil.copy2(outputs / "sweeps" / "plan.json", language_model / "plan.json")
        report = _kept_markdown(outputs / REPORT_FILE, language_model, {str((track / REPORT_FILE).resolve()): f"../{GROUND_TRUTH}/{REPORT_FILE}"})
        atomic.write_text(language_model / REPORT_FILE, header + report)
        atomic.write_json(language_model / PROVENANCE_FILE, stamp)
        kept = [LANGUAGE_MODEL]
        if (track / "summary.json").is_file() and (track / REPORT_FILE).is_file():
            ground_truth = staged / GROUND_TRUTH
            _copy(track, ground_truth, ("summary.json", "track.json"))
            for figure in sorted((track / "figures").glob("*.png")):  # its figures, as PNG (each HTML page embeds MBs of plotly.js)
                _copy(figure.parent, ground_truth / "figures", (figure.name,))
            atomic.write_text(ground_truth / REPORT_FILE, header + _kept_markdown(track / REPORT_FILE, ground_truth, {}))
            atomic.write_json(ground_truth / PROVENANCE_FILE, stamp)
            kept.append(GROUND_TRUTH)
        findings.mkdir(parents=True, exist_ok=True)
        for name in kept:
            _swap_in(staged / name, findings / name)
    if readme is not None:
        replace_marked_block(readme, README_BEGIN, README_END, readme_block(findings / LANGUAGE_MODEL, relative_link(findings / LANGUAGE_MODEL / REPORT_FILE, readme)))
    return stamp | {"kept": kept}


def _copy(source: Path, target: Path, names: Iterable[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def _kept_markdown(report: Path, kept: Path, redirects: dict[str, str]) -> str:
    """The report's markdown with its links made to work from the kept folder: PNG figures copied into figures/ (an
    HTML figure's PNG twin, when saved, instead: the HTML embeds MBs of plotly.js), links named in `redirects`
    (resolved path → new link) rewritten, and any other local link turned into plain text naming the original."""
    text = report.read_text(encoding="utf-8")

    def relink(match: re.Match) -> str:
        label, target = match.group(1), match.group(2)
        if "://" in target or target.startswith("#"):
            return match.group(0)
        path = (report.parent / target).resolve()
        if str(path) in redirects:
            return f"{label}({redirects[str(path)]})"
        figure = path.with_suffix(".png")
        if figure.is_file() and label.startswith("!"):
            (kept / "figures").mkdir(exist_ok=True)
            shutil.copy2(figure, kept / "figures" / figure.name)
            return f"{label}(figures/{figure.name})"
        return f"{label.lstrip('!')} (`{target}`, not kept)"

    return _LINK.sub(relink, text)


def _swap_in(staged: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    shutil.move(str(staged), str(target))
    shutil.rmtree(old, ignore_errors=True)


def relative_link(path: Path, readme: Path) -> str:
    """`path` as a link from the folder of `readme`."""
    return Path(os.path.relpath(Path(path).resolve(), Path(readme).resolve().parent)).as_posix()


def replace_marked_block(readme: Path, begin: str, end: str, block: str) -> None:
    """Replace README's text from the `begin` marker through the `end` marker with `block` (which carries both)."""
    text = readme.read_text(encoding="utf-8")
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < 0:
        raise FindingsError(f"{readme}: no generated block ({begin!r} … {end!r}) to replace")
    atomic.write_text(readme, text[:start] + block + text[stop + len(end) :])


# ----------------------------------------------------------------------------- README's block
def readme_block(kept: Path, link: str) -> str:
    """README's language-model findings, generated from a kept report (`link`: the kept REPORT.md as README links it):
    each question's primary contrasts by L0 target, the identity check, the A/A control, what was out of range."""
    summary = atomic.read_json(kept / SUMMARY_FILE)
    claims = atomic.read_json(kept / CLAIMS_FILE)
    stamp = atomic.read_json(kept / PROVENANCE_FILE)
    names = summary["names"]
    reference = names[summary["reference"]]
    commit = (stamp["commit"] or ",".join(stamp["commits"]))[:10]
    if stamp.get("report_commit") not in (None, stamp["commit"]):
        commit += f" (the report written at {stamp['report_commit'][:10]})"
    lines = [
        README_BEGIN,
        f"**The language model** ([the kept report]({link}): runs at commit {commit}, {stamp['cpu']}, {stamp['date']}, `{stamp['command']}`, "
        f"{stamp['minutes']} min). Every arm at exactly matched final L0 ({', '.join(f'{t:g}' for t in summary['targets'])}), paired over "
        f"seeds {', '.join(map(str, summary['seeds']))}; each question's verdict is its primary contrasts, {reference} against "
        f"{' and '.join(names[a] for a in summary['primary_contrasts'])} on its primary endpoint, one Holm family (difference [95% CI], "
        f"{reference} minus the other):",
        "",
    ]
    for question, title in summary["questions"]:
        primary = [c for c in claims if c["question"] == question and c["kind"] == "comparison" and c["primary"]]
        if not primary:
            continue
        by_arm: dict[str, list[dict]] = {}
        for claim in primary:
            by_arm.setdefault(claim["other"], []).append(claim)
        parts = [f"against {names[other]}: {_verdicts(found)}" for other, found in by_arm.items()]
        lines.append(f"- **{title}** ({summary['primary'].get(question, 'primary endpoint')}): {'; '.join(parts)}.")
    identity = [c for c in claims if c["kind"] == "equivalence"]
    if identity:
        shown = sum(c["verdict"] == "equivalent" for c in identity)
        lines.append(f"- **Identity and equivalence checks** (constant τ is plain L1 with λ/τ): {shown} of {len(identity)} shown equivalent.")
    aa = [c for c in claims if c["kind"] == "aa_summary"]
    lines += [f"- **{c['text'].split(':', 1)[0]}**:{c['text'].split(':', 1)[1]}" for c in aa]
    lines += [f"- *Out of range*: {line}" for line in summary.get("out_of_range", [])]
    if "matching" in summary:
        lines.append(f"- *Matching*: {summary['matching']}")
    lines.append(README_END)
    return "\n".join(lines)


def _verdicts(claims: list[dict]) -> str:
    """'better at L0 20 (+0.012 [0.004, 0.020]), unresolved at 50, 100' for one contrast's targets."""
    groups: dict[str, list[str]] = {}
    for claim in sorted(claims, key=lambda c: c["numbers"]["l0_target"]):
        numbers = claim["numbers"]
        target = f"{numbers['l0_target']:g}"
        if claim["verdict"] in ("better", "worse"):
            target += f" ({numbers['difference']:+.3g} [{numbers['difference_low']:.3g}, {numbers['difference_high']:.3g}])"
        groups.setdefault(claim["verdict"], []).append(target)
    return ", ".join(f"{verdict} at L0 {', '.join(targets)}" for verdict, targets in groups.items())


# ----------------------------------------------------------------------------- a later study against the stamp
def code_comparison(commits: list[str], kept: Path, repository: Path = REPOSITORY) -> str:
    """One sentence for a study's report: whether its runs' training and evaluation code (CODE_PATHS, and the code
    versions) is the kept report's, by `git diff` between the two commits when git can tell."""
    stamp_path = Path(kept) / PROVENANCE_FILE
    if not stamp_path.is_file():
        return f"no kept report at {kept} to compare this study's code with"
    stamp = atomic.read_json(stamp_path)
    versions = stamp.get("code_versions", {})
    moved = [f"{stage} version {versions.get(stage)} → {now}" for stage, now in code_versions().items() if versions.get(stage) not in (None, now)]
    kept_commit = stamp.get("commit")
    if not commits:
        return "this study's runs record no commit (environment.json): cannot compare its code with the kept report's"
    if len(commits) != 1 or kept_commit is None:
        return f"this study's runs were made at {len(commits)} commits ({', '.join(c[:10] for c in commits)}): cannot compare its code with the kept report's"
    ours, theirs = commits[0].removesuffix("-dirty"), kept_commit.removesuffix("-dirty")
    dirty = commits[0].endswith("-dirty") or kept_commit.endswith("-dirty")
    result = subprocess.run(
        ["git", "diff", "--name-only", theirs, ours, "--", *CODE_PATHS], cwd=repository, capture_output=True, text=True, timeout=30, check=False
    )
    where = f"the kept report's (commit {theirs[:10]}, {kept})"
    if result.returncode != 0:
        return f"cannot tell whether this study's code is {where}: git cannot compare the commits" + (f"; {', '.join(moved)}" if moved else "")
    changed = result.stdout.split()
    note = " (a commit with uncommitted changes: they are not compared)" if dirty else ""
    if not changed and not moved:
        return f"the same training, evaluation and extraction code as {where}{note}"
    return (
        f"**this study's training, evaluation or extraction code differs from {where}**: "
        + "; ".join([*moved, *([f"files changed: {', '.join(changed)}"] if changed else [])])
        + note
    )
