"""The plan check: every run's whole configuration, checked against the others and against this machine, before any work.

Field validation (taulib.config) judges one value at a time. What it cannot see is refused here, before
a model is loaded or a file written:

- devices the machine does not have (`model.device`, `training.device`);
- sizes that cannot fit: memory of each stage (extraction, training, evaluation) against the memory
  available, the GPU's for what lives there, and the disk the caches and run folders will take against
  the free space under the outputs folder;
- sizes inconsistent with each other: an evaluation reading more held-out tokens than are extracted,
  training shorter than one batch, a batch larger than the cache, more checkpoints than steps, probing
  more latents than the SAE has, an L0 target the SAE's width cannot reach, more threads than cores;
- derived quantities that are not finite or absurd: the effective penalty λ/τ at its largest;
- for the synthetic model (taulib.activations.synthetic): an SAE narrower than its true dictionary, a device
  other than the CPU for its generation, and the generation's memory instead of a language model's.

Every problem is reported at once, each naming the parameter file, the fields and what would work.
The estimates are deliberately lower bounds (the big tensors only), so a refusal is never a false alarm.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taulib.activations.cache import SPLITS, STORAGE_DTYPES, activation_spec, cache_folder, is_complete
from taulib.activations.models import ModelFootprint, model_footprint, resolve_layer
from taulib.activations.synthetic import GENERATION_ROWS
from taulib.config import ConfigError, RunConfig
from taulib.metrics.families import evaluated
from taulib.sweep.spec import Sweep
from taulib.train.trainer import training_checkpoint_steps

STAGES = ("extract", "train", "evaluate")
FLOAT32_MAX = 3.4028234663852886e38
# With the activations scaled to a mean squared norm of d_model (taulib.train.trainer), a latent of activation a
# lowers the squared error by at most 2a‖x‖; even a token this many times the mean norm cannot pay a penalty
# λ/τ above 2·OUTLIER_NORM·√d_model per unit activation, so every latent would be dead.
OUTLIER_NORM = 100
MODEL_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
RECONSTRUCTION_BATCH = 8192  # taulib.metrics.core.reconstruction_metrics' batch
GB = 1e9


class PlanError(ConfigError):
    """A plan that cannot work on this machine or contradicts itself; every problem found, one per line."""


# ----------------------------------------------------------------------------- the machine
def _cuda_free_bytes(index: int) -> int:
    import torch

    return int(torch.cuda.mem_get_info(index)[0])


@dataclass(frozen=True)
class Machine:
    memory_available: int  # bytes the system can give without swapping
    disk_free: int  # bytes free under the outputs folder
    cpu_count: int
    cuda_devices: int
    mps: bool
    cuda_free: Callable[[int], int] = _cuda_free_bytes  # free bytes of one CUDA device (read only when one is used)


def _memory_available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_machine(outputs_root: Path) -> Machine:
    """This machine, as the plan check sees it (a test replaces this function by a fixed machine)."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return Machine(_memory_available(), shutil.disk_usage(_existing_parent(outputs_root)).free, cpus, cuda, mps)


# ----------------------------------------------------------------------------- what the plan needs
@dataclass
class Need:
    """Bytes one stage of one run needs in one place, by part (largest first when shown)."""

    source: Path
    stage: str
    place: str  # "memory", "cuda:N" or "disk"
    parts: dict[str, int] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)  # what would lower a part, where its owner says (a metric family)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def described(self) -> str:
        parts = sorted(self.parts.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {_gb(size)}" for name, size in parts if size >= 0.005 * GB)


def _gb(size: float) -> str:
    return f"{size / GB:,.2f} GB"


def sae_parameters(d_model: int, width: int) -> int:
    return 2 * d_model * width + width + d_model


def _place(device: str) -> str:
    if device.startswith("cuda"):
        return device if ":" in device else "cuda:0"
    return "memory"  # cpu; mps shares the system memory


def _run_needs(path: Path, config: RunConfig, model: ModelFootprint, stages: Collection[str]) -> list[Need]:
    """Memory of each stage of one run, where it lives; the big tensors only."""
    acts, training = config.activations, config.training
    d, width = model.d_model, config.sae.width
    storage = STORAGE_DTYPES[acts.storage_dtype].itemsize
    weights = model.n_parameters * MODEL_DTYPE_BYTES[config.model.dtype]
    needs: list[Need] = []
    if "extract" in stages and config.model.synthetic is not None:
        n_features = config.model.synthetic.n_features
        generation = {
            "true dictionary and its Gram matrix (float64)": 8 * n_features * (d + n_features),
            "one generated shard (float32)": acts.shard_tokens * d * 4,
            "firing magnitudes of one block of samples": 3 * GENERATION_ROWS * n_features * 4,
        }
        needs.append(Need(path, "extract", "memory", generation))
    elif "extract" in stages:
        model_place = _place(config.model.device)
        forward = Need(path, "extract", model_place, {"language model weights": weights, "forward pass": acts.batch_size * acts.context_length * d * 4 * 4})
        shard = {"one shard of activations (float32, gathered and concatenated)": 2 * acts.shard_tokens * d * 4}
        needs += [forward] if model_place != "memory" else []
        needs.append(Need(path, "extract", "memory", (forward.parts if model_place == "memory" else {}) | shard))
    if "train" in stages:
        train_place = _place(training.device)
        cache = acts.n_tokens * (d * storage + 4)
        on_host = {"activation cache (read, then concatenated)": 2 * cache} if training.activation_storage in ("host", "device") else {}
        state = {
            "SAE weights, gradients and Adam moments (float32)": 4 * 4 * sae_parameters(d, width),
            "batch (latents and their gradients, inputs and reconstructions)": training.batch_size * (3 * width + 4 * d) * 4,
        }
        if training.activation_storage == "device":
            state["activation cache on the device"] = acts.n_tokens * d * storage
        if train_place == "memory":
            needs.append(Need(path, "train", "memory", on_host | state))
        else:
            needs += [Need(path, "train", "memory", on_host), Need(path, "train", train_place, state)]
    if "evaluate" in stages:
        model_place = _place(config.model.device)
        parts = {name: part for family in evaluated(config) for name, part in family.evaluation_memory(config, d, model.vocab_size).items()}
        beside_model = {name: part.bytes for name, part in parts.items() if part.beside_model}
        model_side = {"language model weights": weights} | beside_model if beside_model else {}
        host = {
            "held-out cache": acts.heldout_tokens * d * storage,
            "SAE and one reconstruction batch": 4 * sae_parameters(d, width) + RECONSTRUCTION_BATCH * (width + 2 * d) * 4,
        } | {name: part.bytes for name, part in parts.items() if not part.beside_model}
        hints = {name: part.hint for name, part in parts.items()}
        if model_place == "memory":
            needs.append(Need(path, "evaluate", "memory", model_side | host, hints))
        else:
            needs += [Need(path, "evaluate", "memory", host, hints), Need(path, "evaluate", model_place, model_side, hints)]
    return needs


def _cache_bytes(config: RunConfig, d_model: int, split: str) -> int:
    acts = config.activations
    tokens = acts.n_tokens if split == "train" else acts.heldout_tokens
    return tokens * (d_model * STORAGE_DTYPES[acts.storage_dtype].itemsize + 4)


def _evaluation_input_bytes(config: RunConfig, d_model: int) -> int:
    return sum(family.input_bytes(config, d_model) for family in evaluated(config))


def _run_folder_bytes(config: RunConfig, d_model: int) -> int:
    """Checkpoints, the final SAE and the resumable trainer state (SAE and Adam moments), float32."""
    sae = 4 * sae_parameters(d_model, config.sae.width)
    checkpoints = len(training_checkpoint_steps(config.training))
    return (checkpoints + 1) * sae + 3 * sae


# ----------------------------------------------------------------------------- the checks
def _device_problems(path: Path, config: RunConfig, machine: Machine) -> list[str]:
    problems = []
    for name, device in (("model.device", config.model.device), ("training.device", config.training.device)):
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            if machine.cuda_devices == 0:
                problems.append(f"{path}: field '{name}': {device!r} is not on this machine (torch sees no CUDA device); use 'cpu'")
            elif index >= machine.cuda_devices:
                problems.append(
                    f"{path}: field '{name}': {device!r} is not on this machine (CUDA devices: "
                    f"{', '.join(f'cuda:{i}' for i in range(machine.cuda_devices))}); use one of them"
                )
        elif device == "mps" and not machine.mps:
            problems.append(f"{path}: field '{name}': 'mps' is not available on this machine (torch.backends.mps); use 'cpu'")
    return problems


def max_effective_coefficient(d_model: int) -> float:
    return 2 * OUTLIER_NORM * math.sqrt(d_model)


def _consistency_problems(path: Path, config: RunConfig, model: ModelFootprint, machine: Machine, calibrated: bool) -> list[str]:
    acts, training = config.activations, config.training
    problems = []
    if training.n_tokens < training.batch_size:
        problems.append(
            f"{path}: fields 'training.n_tokens' ({training.n_tokens:,}) and 'training.batch_size' ({training.batch_size:,}): "
            f"training is shorter than one batch; set training.n_tokens >= {training.batch_size:,} or training.batch_size <= {training.n_tokens:,}"
        )
    if training.batch_size > acts.n_tokens:
        problems.append(
            f"{path}: fields 'training.batch_size' ({training.batch_size:,}) and 'activations.n_tokens' ({acts.n_tokens:,}): "
            f"one batch is larger than the whole activation cache (every batch would repeat activations); "
            f"set training.batch_size <= {acts.n_tokens:,} or activations.n_tokens >= {training.batch_size:,}"
        )
    steps = training.total_steps()
    if training.n_checkpoints > steps + 1:
        problems.append(
            f"{path}: fields 'training.n_checkpoints' ({training.n_checkpoints}) and 'training.n_tokens' / 'training.batch_size': "
            f"the run has {steps:,} steps (ceil({training.n_tokens:,} / {training.batch_size:,})), so at most {steps + 1} checkpoints "
            f"(the initial one included); set training.n_checkpoints <= {steps + 1} or train for more tokens"
        )
    problems += [problem for family in evaluated(config) for problem in family.plan_problems(config, str(path))]
    synthetic = config.model.synthetic
    if synthetic is not None and config.sae.width < synthetic.n_features:
        problems.append(
            f"{path}: fields 'sae.width' ({config.sae.width}) and 'model.synthetic.n_features' ({synthetic.n_features}): the SAE has "
            f"fewer latents than the synthetic model has true features, so at most {config.sae.width / synthetic.n_features:.0%} of them "
            f"can be recovered; set sae.width >= {synthetic.n_features} or model.synthetic.n_features <= {config.sae.width}"
        )
    if synthetic is not None and config.model.device != "cpu":
        problems.append(f"{path}: field 'model.device' ({config.model.device!r}): the synthetic model is generated on the CPU; set model.device: cpu")
    if training.threads is not None and training.threads > machine.cpu_count:
        problems.append(
            f"{path}: field 'training.threads' ({training.threads}): this machine has {machine.cpu_count} CPU cores; "
            f"set training.threads <= {machine.cpu_count} (or leave it out)"
        )
    if not calibrated:  # a sweep's λ is calibrated: the arm's own value is never trained
        problems += _coefficient_problems(path, config, model)
    return problems


TAU_GRID = 1000  # points of training progress at which the plan check reads τ


def _coefficient_problems(path: Path, config: RunConfig, model: ModelFootprint) -> list[str]:
    schedule = config.schedule
    tau = schedule.to_schedule()
    tau_min = min(tau.tau(i / TAU_GRID) for i in range(TAU_GRID + 1))  # the largest penalty λ/τ over training, whatever the kind's shape
    effective = config.training.l1_coefficient / tau_min if tau_min > 0 else math.inf
    bound = max_effective_coefficient(model.d_model)
    fields = "fields 'training.l1_coefficient' and 'schedule.tau_final'" if "tau_final" in schedule.spec.uses else "field 'training.l1_coefficient'"
    if not (math.isfinite(effective) and effective <= FLOAT32_MAX):
        return [
            f"{path}: {fields}: the effective penalty λ/τ = {config.training.l1_coefficient:g} / {tau_min:g} is not a finite float32; {_coefficient_hint(bound)}"
        ]
    if effective > bound:
        return [
            f"{path}: {fields}: the effective penalty λ/τ reaches {effective:.3g}, above {bound:,.0f} = 2·{OUTLIER_NORM}·√d_model "
            f"(d_model {model.d_model}): no latent could pay its penalty, every one would be dead; {_coefficient_hint(bound)}"
        ]
    return []


def _coefficient_hint(bound: float) -> str:
    return f"keep λ/τ_final well below {bound:,.0f} (the study's arms end between 0.04 and 1)"


def _sweep_problems(sweep: Sweep, models: dict[Path, ModelFootprint]) -> list[str]:
    problems = []
    for arm in sweep.arms:
        width = arm.config.sae.width
        unreachable = [target for target in sweep.l0_targets if target >= width]
        if unreachable:
            problems.append(
                f"{sweep.source}: field 'l0_targets' ({', '.join(f'{t:g}' for t in unreachable)}) and {arm.parameter_file}: field 'sae.width' ({width}): "
                f"an L0 target must be below the SAE's width (L0 counts active latents); use targets < {width} or a wider SAE"
            )
        bound = max_effective_coefficient(models[arm.parameter_file].d_model)
        if sweep.calibration.initial_effective_coefficient > bound:
            problems.append(
                f"{sweep.source}: field 'calibration.initial_effective_coefficient' ({sweep.calibration.initial_effective_coefficient:g}): "
                f"above {bound:,.0f} every latent would be dead; {_coefficient_hint(bound)}"
            )
    return problems


def _memory_problems(needs: list[Need], machine: Machine) -> list[str]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for need in sorted(needs, key=lambda n: -n.total):
        if need.place == "disk" or (need.stage, need.place) in seen:
            continue
        available = machine.memory_available if need.place == "memory" else machine.cuda_free(int(need.place.partition(":")[2]))
        if need.total > available:
            seen.add((need.stage, need.place))
            where = "memory" if need.place == "memory" else f"memory on {need.place}"
            problems.append(
                f"{need.source}: the {need.stage} stage needs at least {_gb(need.total)} of {where} ({need.described()}); "
                f"{_gb(available)} is available; {_memory_hint(need)}"
            )
    return problems


def _memory_hint(need: Need) -> str:
    largest = max(need.parts, key=lambda name: need.parts[name])
    hints = {
        "activation cache (read, then concatenated)": "set training.activation_storage: mmap (batches read from the shards on disk) or lower activations.n_tokens",
        "activation cache on the device": "set training.activation_storage: host or mmap, or lower activations.n_tokens",
        "SAE weights, gradients and Adam moments (float32)": "lower sae.width",
        "batch (latents and their gradients, inputs and reconstructions)": "lower training.batch_size",
        "language model weights": "set model.dtype: bfloat16 or use a smaller model",
        "forward pass": "lower activations.batch_size",
        "one shard of activations (float32, gathered and concatenated)": "lower activations.shard_tokens",
        "held-out cache": "lower activations.heldout_tokens",
    }
    return f"what would work: {(hints | need.hints).get(largest, 'smaller sizes')}"


@dataclass
class Plan:
    """What the checked plan will need: memory per stage and place, and the disk it will fill."""

    needs: list[Need]
    disk: dict[str, int]  # "activation caches", "evaluation inputs", "run folders" → bytes still to be written
    machine: Machine

    @property
    def disk_total(self) -> int:
        return sum(self.disk.values())

    def peak_memory(self) -> int:
        return max((need.total for need in self.needs if need.place == "memory"), default=0)

    def describe(self, outputs_root: Path) -> str:
        """What the plan needs of this machine, for the start of a study and `python -m taulib sweep`."""
        lines = []
        for place in sorted({need.place for need in self.needs}, key=lambda place: place != "memory"):
            peak = max((need for need in self.needs if need.place == place), key=lambda need: need.total)
            available = self.machine.memory_available if place == "memory" else None
            room = f" of {_gb(available)} available" if available is not None else ""
            where = "memory" if place == "memory" else f"memory on {place}"
            lines.append(f"peak {where}: at least {_gb(peak.total)}{room} ({peak.stage} stage: {peak.described()})")
        parts = ", ".join(f"{name} {_gb(size)}" for name, size in self.disk.items() if size) or "nothing new"
        lines.append(f"disk: at least {_gb(self.disk_total)} under {outputs_root}, {_gb(self.machine.disk_free)} free ({parts})")
        return "\n".join(lines)


def check_plan(
    runs: Sequence[tuple[Path, RunConfig]],
    outputs_root: Path,
    stages: Collection[str] = STAGES,
    sweep: Sweep | None = None,
    machine: Machine | None = None,
) -> Plan:
    """Refuse (PlanError, every problem at once) what cannot work; otherwise return what the plan needs.

    `runs` are the parameter files with their loaded configurations (a sweep's arms with `sweep`: each
    stands for its targets × seeds runs and the calibration probes). `stages` are the steps about to run."""
    outputs_root = Path(outputs_root)
    machine = machine or probe_machine(outputs_root)
    problems: list[str] = []
    models: dict[Path, ModelFootprint] = {}
    needs: list[Need] = []
    disk = {"activation caches": 0, "evaluation inputs": 0, "run folders": 0}
    counted_caches: set[Path] = set()
    disk_by_file: dict[Path, int] = {}
    # a sweep's arm stands for its runs (targets × seeds; the probes that miss come on top, how many is not known)
    runs_of_file = {} if sweep is None else {arm.parameter_file: sweep.runs_of(arm) for arm in sweep.arms}
    for path, config in runs:
        try:
            models[path] = model = model_footprint(config.model)
            layer = resolve_layer(config.model, model.n_layers)
        except Exception as error:  # an unknown model or a layer beyond its depth
            raise PlanError(f"{path}: {error}") from None
        problems += _device_problems(path, config, machine)
        problems += _consistency_problems(path, config, model, machine, calibrated=sweep is not None)
        needs += _run_needs(path, config, model, stages)
        if "extract" in stages:
            for split in SPLITS:
                spec = activation_spec(config, split, layer)
                folder = cache_folder(outputs_root, spec)
                if folder not in counted_caches and not is_complete(folder, spec):
                    counted_caches.add(folder)
                    disk["activation caches"] += _cache_bytes(config, model.d_model, split)
                    disk_by_file[path] = disk_by_file.get(path, 0) + _cache_bytes(config, model.d_model, split)
            disk["evaluation inputs"] = max(disk["evaluation inputs"], _evaluation_input_bytes(config, model.d_model))
        finished = sweep is None and (outputs_root / config.run_name / "summary.json").is_file()
        if "train" in stages and not finished:
            runs_per_file = runs_of_file.get(path, 1)
            disk["run folders"] += runs_per_file * _run_folder_bytes(config, model.d_model)
            disk_by_file[path] = disk_by_file.get(path, 0) + runs_per_file * _run_folder_bytes(config, model.d_model)
    if sweep is not None:
        problems += _sweep_problems(sweep, models)
    if not any("is not on this machine" in problem or "is not available on this machine" in problem for problem in problems):
        problems += _memory_problems(needs, machine)  # a device's memory can be read only if the device exists
        total = sum(disk.values())
        if total > machine.disk_free:
            parts = ", ".join(f"{name} {_gb(size)}" for name, size in disk.items() if size)
            # the files to shrink first; evaluation inputs alone name every file
            largest = [path for path in sorted(disk_by_file, key=lambda path: -disk_by_file[path]) if disk_by_file[path] >= 0.01 * total][:3]
            largest = largest or [path for path, _ in runs]
            problems.append(
                f"{', '.join(f'{path} ({_gb(disk_by_file.get(path, 0))})' for path in largest)}: "
                f"the plan writes at least {_gb(total)} under {outputs_root} ({parts}); "
                f"{_gb(machine.disk_free)} is free there; what would work: lower activations.n_tokens, activations.storage_dtype: "
                "bfloat16 (half of float32), fewer training.n_checkpoints or a narrower sae.width, or --outputs on a larger disk"
            )
    if problems:
        raise PlanError("\n".join(problems))
    return Plan(needs, disk, machine)
