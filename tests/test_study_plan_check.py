"""The catalogue of plans that cannot work: each parameter file is well-typed, but the plan contradicts itself,
does not fit this machine, or derives an absurd value. Each is refused before any work starts (exit 2), with a
message naming the file and the fields and what would work, and outputs/ is byte-identical afterwards.

The machine is fixed (8 GB of memory, 50 GB of disk, 2 cores, no GPU unless a case adds one), so the
catalogue means the same on every computer."""

import hashlib
import shutil
from pathlib import Path

import pytest
from test_bad_inputs import BASE, study  # noqa: F401  (the fixture: one good arm with earlier results)

import taulib.study.plan_check
from taulib.cli import main
from taulib.config import discover_parameter_files, load_run_config
from taulib.study.plan_check import Machine, PlanError, check_plan
from taulib.sweep.spec import load_sweep

GB = 10**9
PLAIN = Machine(memory_available=8 * GB, disk_free=50 * GB, cpu_count=2, cuda_devices=0, mps=False)
ONE_GPU = Machine(memory_available=8 * GB, disk_free=50 * GB, cpu_count=2, cuda_devices=1, mps=False, cuda_free=lambda index: 16 * GB)
PARAMETERS = Path(__file__).resolve().parents[1] / "parameters"

# (id, text of parameters/bad.yaml, fragment the message must contain, machine)
CATALOGUE = [
    # devices the machine does not have
    (
        "model-on-absent-cuda",
        "inherit: _base.yaml\nmodel:\n  device: cuda\n",
        "field 'model.device': 'cuda' is not on this machine (torch sees no CUDA device)",
        PLAIN,
    ),
    ("training-on-absent-cuda", "inherit: _base.yaml\ntraining:\n  device: cuda\n", "field 'training.device': 'cuda' is not on this machine", PLAIN),
    ("second-gpu-of-one", "inherit: _base.yaml\ntraining:\n  device: cuda:1\n", "'cuda:1' is not on this machine (CUDA devices: cuda:0)", ONE_GPU),
    ("absent-mps", "inherit: _base.yaml\ntraining:\n  device: mps\n", "field 'training.device': 'mps' is not available on this machine", PLAIN),
    # sizes that cannot fit in memory or on disk
    (
        "cache-beyond-memory",
        "inherit: _base.yaml\nactivations:\n  n_tokens: 10_000_000\n",
        "the train stage needs at least 25.68 GB of memory (activation cache (read, then concatenated) 25.68 GB",
        PLAIN,
    ),
    ("cache-beyond-memory-says-mmap", "inherit: _base.yaml\nactivations:\n  n_tokens: 10_000_000\n", "set training.activation_storage: mmap", PLAIN),
    ("sae-beyond-memory", "inherit: _base.yaml\nsae:\n  width: 1_000_000\n", "what would work: lower sae.width", PLAIN),
    (
        "batch-beyond-memory",
        "inherit: _base.yaml\nactivations:\n  n_tokens: 2_000_000\ntraining:\n  n_tokens: 2_000_000\n  batch_size: 2_000_000\n  n_checkpoints: 2\n",
        "what would work: lower training.batch_size",
        PLAIN,
    ),
    (
        "ce-logits-beyond-memory",
        "inherit: _base.yaml\nevaluation:\n  downstream: {sequences: 64, batch_size: 64}\n",
        "the evaluate stage needs at least",
        PLAIN,
    ),
    (
        "ce-logits-beyond-memory-says-batch",
        "inherit: _base.yaml\nevaluation:\n  downstream: {sequences: 64, batch_size: 64}\n",
        "lower evaluation.downstream.batch_size",
        PLAIN,
    ),
    (
        "device-cache-beyond-gpu",
        "inherit: _base.yaml\nactivations:\n  n_tokens: 20_000_000\ntraining:\n  device: cuda\n  activation_storage: device\n",
        "of memory on cuda:0",
        ONE_GPU,
    ),
    (
        "cache-beyond-disk",
        "inherit: _base.yaml\nactivations:\n  n_tokens: 50_000_000\ntraining:\n  activation_storage: mmap\n",
        "bad.yaml (64.20 GB): the plan writes at least 64.42 GB under",
        PLAIN,
    ),
    (
        "checkpoints-beyond-disk",
        "inherit: _base.yaml\nsae:\n  width: 200_000\ntraining:\n  n_tokens: 4000\n  n_checkpoints: 100\nevaluation:\n  families: [core]\n",
        "50.00 GB is free there",
        PLAIN,
    ),
    # sizes inconsistent with each other
    (
        "evaluation-beyond-heldout",
        "inherit: _base.yaml\nevaluation:\n  core: {tokens: 50}\n",
        "fields 'evaluation.core.tokens' (50) and 'activations.heldout_tokens' (20): the evaluation reads more held-out activations than are extracted",
        PLAIN,
    ),
    (
        "training-shorter-than-a-batch",
        "inherit: _base.yaml\ntraining:\n  n_tokens: 10\n",
        "training is shorter than one batch; set training.n_tokens >= 20",
        PLAIN,
    ),
    (
        "batch-larger-than-cache",
        "inherit: _base.yaml\ntraining:\n  n_tokens: 82\n  batch_size: 41\n",
        "one batch is larger than the whole activation cache",
        PLAIN,
    ),
    (
        "more-checkpoints-than-steps",
        "inherit: _base.yaml\ntraining:\n  n_checkpoints: 5\n",
        "the run has 2 steps (ceil(40 / 20)), so at most 3 checkpoints",
        PLAIN,
    ),
    (
        "probing-more-latents-than-width",
        "inherit: _base.yaml\nevaluation:\n  probing: {ks: [1, 20]}\n",
        "sparse probing cannot select more latents than the SAE has; keep probing.ks <= 16",
        PLAIN,
    ),
    (
        "absorption-more-latents-than-width",
        "inherit: _base.yaml\nsae:\n  width: 6\nevaluation:\n  probing: {ks: [1, 2]}\n",
        "the absorption metric's k-sparse probes select up to 10 latents per letter; set sae.width >= 10",
        PLAIN,
    ),
    ("threads-beyond-cores", "inherit: _base.yaml\ntraining:\n  threads: 64\n", "field 'training.threads' (64): this machine has 2 CPU cores", PLAIN),
    # derived quantities that are not finite or absurd
    ("absurd-lambda", "inherit: _base.yaml\ntraining:\n  l1_coefficient: 1.0e+38\n", "no latent could pay its penalty, every one would be dead", PLAIN),
    (
        "lambda-over-tau-overflows-float32",
        "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: 0.3, tau_final: 1.0e-40}\n",
        "fields 'training.l1_coefficient' and 'schedule.tau_final': the effective penalty λ/τ = 0.04 / 1e-40 is not a finite float32",
        PLAIN,
    ),
    (
        "lambda-over-tau-absurd",
        "inherit: _base.yaml\ntraining:\n  l1_coefficient: 10.0\nschedule: {kind: linear, tau_initial: 0.3, tau_final: 0.001}\n",
        "the effective penalty λ/τ reaches 1e+04, above 5,060",
        PLAIN,
    ),
    # YAML that means something other than what is written
    ("duplicate-top-level-key", "inherit: _base.yaml\nseed: 1\nseed: 2\n", "key 'seed' is given twice (lines 2 and 3)", PLAIN),
    ("duplicate-nested-key", "inherit: _base.yaml\ntraining:\n  lr: 1.0e-3\n  lr: 3.0e-4\n", "key 'training.lr' is given twice (lines 3 and 4)", PLAIN),
    (
        "duplicate-key-in-flow-mapping",
        "inherit: _base.yaml\nschedule: {kind: cosine, tau_initial: 0.3, kind: linear}\n",
        "key 'schedule.kind' is given twice",
        PLAIN,
    ),
    ("duplicate-section", "inherit: _base.yaml\nsae:\n  width: 16\nsae:\n  width: 8\n", "key 'sae' is given twice (lines 2 and 4)", PLAIN),
]


def _tree_digest(folder: Path) -> str:
    """Every path under the folder (files and folders) and every file's bytes, as one hash."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode() + (b"/" if path.is_dir() else b""))
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@pytest.fixture
def machine(monkeypatch):
    """The plan check sees the machine the test names, not this one."""

    def use(fixed: Machine) -> None:
        monkeypatch.setattr(taulib.study.plan_check, "probe_machine", lambda outputs_root: fixed)

    use(PLAIN)
    return use


def _refused(command: list[str], outputs: Path, capsys) -> str:
    before = _tree_digest(outputs)
    assert main(command) == 2
    assert _tree_digest(outputs) == before, "outputs/ changed"
    return capsys.readouterr().err


def _study(params: Path, outputs: Path, *extra: str) -> list[str]:
    return ["study", "--parameters", str(params), "--outputs", str(outputs), *extra]


def test_catalogue_is_at_least_20_distinct_inputs():
    assert len({case[0] for case in CATALOGUE}) == len(CATALOGUE) >= 20


@pytest.mark.parametrize(("text", "fragment", "fixed"), [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE])
def test_a_plan_that_cannot_work_is_refused_before_any_work(study, machine, capsys, text, fragment, fixed):  # noqa: F811
    params, outputs, _ = study
    machine(fixed)
    (params / "bad.yaml").write_text(text)
    error = _refused(_study(params, outputs), outputs, capsys)
    assert "refused before any work started" in error, error
    assert "bad.yaml" in error, error
    assert fragment in error, error


def test_the_good_plan_passes(study, machine):  # noqa: F811
    params, outputs, config = study
    plan = check_plan([(params / "arm.yaml", config)], outputs, machine=PLAIN)
    assert plan.disk["activation caches"] == 0  # both caches are complete already
    assert 0 < plan.peak_memory() < PLAIN.memory_available


@pytest.mark.parametrize("command", ["extract", "train", "evaluate"])
def test_every_step_command_checks_the_plan(study, machine, capsys, command):  # noqa: F811
    params, outputs, _ = study
    (params / "bad.yaml").write_text("inherit: _base.yaml\ntraining:\n  device: cuda\n")
    if command == "extract":
        argv = ["extract", "--parameters", str(params), "--outputs", str(outputs)]
    else:
        argv = [command, str(params / "bad.yaml"), "--outputs", str(outputs), "--quiet"]
    error = _refused(argv, outputs, capsys)
    assert "bad.yaml" in error and "field 'training.device': 'cuda' is not on this machine" in error, error


def test_every_problem_is_reported_at_once(study, machine, capsys):  # noqa: F811
    params, outputs, _ = study
    (params / "bad.yaml").write_text("inherit: _base.yaml\ntraining:\n  n_checkpoints: 5\n  threads: 64\nevaluation:\n  core: {tokens: 50}\n")
    error = _refused(_study(params, outputs), outputs, capsys)
    assert "at most 3 checkpoints" in error and "2 CPU cores" in error and "more held-out activations" in error, error


def test_a_key_given_twice_in_a_base_file_names_the_base(study, machine, capsys):  # noqa: F811
    params, outputs, _ = study
    (params / "_base.yaml").write_text(BASE + "seed: 3\nseed: 4\n")
    error = _refused(_study(params, outputs), outputs, capsys)
    assert "_base.yaml: key 'seed' is given twice" in error, error


def test_a_set_given_twice_is_refused(study, machine, capsys):  # noqa: F811
    params, outputs, _ = study
    error = _refused(_study(params, outputs, "--set", "training.lr=1e-3", "--set", "training.lr=3e-4"), outputs, capsys)
    assert "--set training.lr: given twice ('1e-3' and '3e-4')" in error, error


@pytest.mark.parametrize(
    ("sweep", "fragment"),
    [
        ("l0_targets: [5, 20]\nseeds: [0]\n", "field 'l0_targets' (20) and"),
        ("l0_targets: [5]\nseeds: [0]\ncalibration: {initial_effective_coefficient: 1.0e+6}\n", "field 'calibration.initial_effective_coefficient' (1e+06)"),
        ("l0_targets: [5]\nseeds: [0]\nseeds: [1]\n", "key 'seeds' is given twice (lines 2 and 3)"),
    ],
    ids=["l0-target-beyond-width", "absurd-first-probe", "duplicate-sweep-key"],
)
def test_a_sweep_that_cannot_work_is_refused(study, machine, capsys, sweep, fragment):  # noqa: F811
    params, outputs, _ = study
    (params / "_sweep.yaml").write_text(sweep)
    error = _refused(_study(params, outputs), outputs, capsys)
    assert "_sweep.yaml" in error and fragment in error, error
    assert main(["sweep", "--parameters", str(params), "--outputs", str(outputs)]) == 2
    assert fragment in capsys.readouterr().err


def test_the_repository_study_and_its_profiles_fit_a_small_machine(tmp_path):
    """The shipped plans pass on a 2-core machine with 16 GB of memory and 100 GB of disk (the GPU profile aside)."""
    roomy = Machine(memory_available=16 * GB, disk_free=100 * GB, cpu_count=2, cuda_devices=0, mps=False)
    params = tmp_path / "parameters"
    shutil.copytree(PARAMETERS, params)
    runs = [(path, load_run_config(path)) for path in discover_parameter_files(params)]
    assert check_plan(runs, tmp_path / "outputs", machine=roomy).peak_memory() < 8 * GB
    for profile in ("default", "full"):
        sweep = load_sweep(params, profile)
        plan = check_plan([(arm.parameter_file, arm.config) for arm in sweep.arms], tmp_path / "outputs", sweep=sweep, machine=roomy)
        assert plan.disk_total < roomy.disk_free
    # the gemma-2-2b profile's devices, on a machine without a GPU
    on_gpu = load_run_config(params / "baseline_plain_l1.yaml", {"model": {"device": "cuda"}, "training": {"device": "cuda"}})
    with pytest.raises(PlanError, match="field 'model.device': 'cuda' is not on this machine"):
        check_plan([(params / "baseline_plain_l1.yaml", on_gpu)], tmp_path / "outputs", machine=roomy)


def test_the_sweep_command_says_what_the_plan_needs_of_this_machine(study, machine, capsys):  # noqa: F811
    params, outputs, _ = study
    (params / "_sweep.yaml").write_text("l0_targets: [2]\nseeds: [0, 1]\n")
    assert main(["sweep", "--parameters", str(params), "--outputs", str(outputs)]) == 0
    out = capsys.readouterr().out
    assert "peak memory: at least" in out and "of 8.00 GB available" in out, out
    assert f"under {outputs}, 50.00 GB free (evaluation inputs" in out and "run folders" in out, out  # both caches exist already
