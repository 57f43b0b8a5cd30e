"""Typed run configuration, loaded from one YAML parameter file per run.

A parameter file may name a shared base file with `inherit: <file>` (resolved beside it); the
arm's own keys are deep-merged over the base. Every field is validated before any work starts:
an unknown key, a wrong type, a non-finite number or an impossible value raises `ConfigError`
naming the file and the field.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taulib.metrics.catalogue import DECLARATIONS, FAMILY_NAMES, FAMILY_NEEDS
from taulib.precision import AUTO, resolve_autocast, resolve_compute_dtype
from taulib.schedules import ScheduleError, ScheduleKindSpec, TauSchedule, kind_spec, schedule_kinds
from taulib.strict_model import StrictModel
from taulib.versions import TRAINING_VERSION, versioned

EMBEDDED_MODEL = "embedded:gemma-3-270m"
# not a language model: activations drawn from a known sparse dictionary (taulib.activations.synthetic), the
# ground-truth track of the study; configured by model.synthetic
SYNTHETIC_MODEL = "synthetic"
RESERVED_RUN_NAMES = frozenset({"activations", "analysis", "figures", "ground_truth", "study", "sweeps", "synthetic"})  # the ground-truth track and the flat synthetic study
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
DEVICE_PATTERN = re.compile(r"cpu|mps|cuda(:\d+)?")
# Where and by which kernels a run executes, not what it computes: left out of its fingerprint, so a
# run started on one machine resumes on another, and a configuration means the same study on a CPU
# and on a GPU (their results differ by floating-point summation order only).
PLACEMENT_KEYS = (("training", "device"), ("training", "activation_storage"), ("training", "sparse_step_max_density"))


class ConfigError(ValueError):
    """A parameter file that cannot be used, with the file and field it concerns."""


class SyntheticConfig(StrictModel):
    """A synthetic residual stream of known sparse features (taulib.activations.synthetic): every sample is
    x = Σ_i a_i·m_i·u_i + ε over the features i that fire, with unit directions u_i (the true dictionary)."""

    d_model: int = Field(64, ge=2, description="dimension of the synthetic residual stream")
    n_features: int = Field(256, ge=1, description="true features (dictionary size); more than d_model puts them in superposition")
    max_coherence: float = Field(
        0.3,
        gt=0,
        le=1,
        description="mutual coherence bound: the largest |cosine| between two true directions (1 = random unit directions, "
        "no bound); must exceed the Welch bound √((n−d)/(d(n−1))) that no set of n unit vectors in d dimensions can beat",
    )
    mean_active_features: float = Field(4.0, gt=0, description="expected number of true features firing per sample (the data's true L0)")
    frequency_exponent: float = Field(
        1.0, ge=0, description="firing probabilities fall as a power law, p_i ∝ (i+1)^−exponent (0: every feature equally frequent)"
    )
    magnitude_log_std: float = Field(
        0.5, ge=0, description="a firing feature's magnitude is exp(σ·z), z ~ N(0, 1): log-normal and heavy-tailed (0: every magnitude 1)"
    )
    noise_std: float = Field(0.01, ge=0, description="standard deviation of the dense Gaussian noise added to every coordinate")
    seed: int = Field(0, ge=0, description="seed of the dictionary, the frequencies and every sample (the training seed is separate)")

    # field validators, not a model validator, so that an error names the field to change; each reads the fields declared before it
    @field_validator("max_coherence")
    @classmethod
    def _above_the_welch_bound(cls, value: float, info: ValidationInfo) -> float:
        n, d = info.data.get("n_features"), info.data.get("d_model")
        if n is None or d is None or value >= 1:
            return value
        welch = math.sqrt((n - d) / (d * (n - 1))) if n > d else 0.0
        # the generator pushes the directions apart by gradient steps; it needs some room above the bound
        if value < 1.25 * welch:
            raise ValueError(
                f"{value:g} is unreachable for {n} features in {d} dimensions: the Welch bound is {welch:.3f}; "
                f"set max_coherence >= {1.25 * welch:.3f} (or 1 for no bound), fewer n_features or a larger d_model"
            )
        return value

    @field_validator("mean_active_features")
    @classmethod
    def _at_most_every_feature(cls, value: float, info: ValidationInfo) -> float:
        n = info.data.get("n_features")
        if n is not None and value > n:
            raise ValueError(f"{value:g} features cannot fire per sample when there are {n} (n_features)")
        return value

    @field_validator("frequency_exponent")
    @classmethod
    def _probabilities_at_most_one(cls, value: float, info: ValidationInfo) -> float:
        n, mean = info.data.get("n_features"), info.data.get("mean_active_features")
        if n is not None and mean is not None:
            top = _power_law(n, value, mean)[0]
            if top > 1:
                raise ValueError(
                    f"with mean_active_features {mean:g}, exponent {value:g} makes the most frequent feature fire with probability "
                    f"{top:.2f} > 1; lower frequency_exponent or mean_active_features"
                )
        return value

    def firing_probabilities(self) -> list[float]:
        """Each feature's probability of firing on a sample: a power law scaled to mean_active_features firing per sample."""
        return _power_law(self.n_features, self.frequency_exponent, self.mean_active_features)


def _power_law(n: int, exponent: float, total: float) -> list[float]:
    weights = [(i + 1) ** -exponent for i in range(n)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


class ModelConfig(StrictModel):
    name: str = Field(
        EMBEDDED_MODEL,
        description="'embedded:gemma-3-270m', a transformers hub id, a local directory, or 'synthetic' (a known sparse dictionary, model.synthetic)",
    )
    device: str = Field("cpu", description="torch device for the language model: cpu, cuda, cuda:1, mps")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype of the model's weights")
    autocast: Literal["bfloat16", "float16", "auto"] | None = Field(
        None,
        description="autocast dtype for the forward pass; None = run in `dtype`; 'auto' = bfloat16 where the device has fast "
        "bfloat16 matmuls (CUDA, CPUs with AVX512-BF16 or AMX), else None (taulib.precision)",
    )
    layer: int | None = Field(None, ge=0, description="residual stream after this decoder block; None = the middle block")
    synthetic: SyntheticConfig | None = Field(
        None, description="the synthetic model's generator, read only with name 'synthetic' (its defaults when omitted there)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return _check_device(value)

    @model_validator(mode="before")
    @classmethod
    def _resolve_automatic_autocast(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") == SYNTHETIC_MODEL and data.get("autocast") == AUTO:
            # no forward pass to autocast: 'auto' (inherited from a language model's base file) means none
            return {**data, "autocast": None}
        return _resolve_auto(data, "autocast", resolve_autocast)

    @model_validator(mode="after")
    def _synthetic_block(self) -> ModelConfig:
        if self.name != SYNTHETIC_MODEL:
            if self.synthetic is not None:
                raise ValueError(f"field 'synthetic' configures the synthetic model; it is read only with name: {SYNTHETIC_MODEL} (got name {self.name!r})")
            return self
        if self.autocast is not None:
            raise ValueError("the synthetic model has no forward pass to autocast: omit autocast (or leave it 'auto')")
        if self.layer not in (None, 0):
            raise ValueError(f"the synthetic model has one layer, 0: set layer: 0 (got {self.layer})")
        if self.synthetic is None:
            object.__setattr__(self, "synthetic", SyntheticConfig())  # explicit in config.json and in the run's fingerprint
        return self

    @property
    def is_synthetic(self) -> bool:
        return self.name == SYNTHETIC_MODEL


def _check_device(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError("must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return value


def _resolve_auto(data: Any, field: str, resolve: Callable[[str, str], Any]) -> Any:
    """A section's `field: auto` made concrete for the section's own device, before validation: the run records,
    fingerprints and keys its caches by what this machine runs fast (taulib.precision). A malformed device is left
    for the device check to report."""
    if isinstance(data, dict) and data.get(field) == AUTO:
        device = data.get("device", "cpu")
        if isinstance(device, str) and DEVICE_PATTERN.fullmatch(device):
            return {**data, field: resolve(AUTO, device)}
    return data


class ActivationsConfig(StrictModel):
    corpus: Literal["default"] = Field("default", description="the packaged corpus mixture (see taulib.corpus)")
    n_tokens: int = Field(2_000_000, gt=0, description="training activations to extract (BOS excluded)")
    heldout_tokens: int = Field(131_072, gt=0, description="held-out activations for evaluation")
    context_length: int = Field(128, ge=2, le=65_536, description="tokens per sequence fed to the model, BOS included (its position is not extracted)")
    max_document_tokens: int | None = Field(
        None,
        ge=1,
        description="each corpus document contributes at most its first this many tokens to both splits (null: all of them), so that a "
        "sample of the packed stream spans many documents rather than a few long ones",
    )
    batch_size: int = Field(32, gt=0, description="sequences per forward pass")
    storage_dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="dtype of the activation cache on disk")
    shard_tokens: int = Field(262_144, gt=0, description="activations per shard file")


class SAEConfig(StrictModel):
    width: int = Field(4096, gt=0, description="number of latents (dictionary size)")


class ScheduleConfig(StrictModel):
    kind: str = Field(
        "none",
        description=f"how τ moves over training, one of the kinds taulib.schedules declares ({', '.join(schedule_kinds())}); 'l1_warmup' ramps λ linearly from 0",
    )
    tau_initial: float = Field(1.0, description="τ at the start of training; the τ of kind 'constant'")
    tau_final: float = Field(1.0, description="τ at the end of the anneal, held from then on")
    anneal_fraction: float = Field(
        1.0, description="fraction of training over which τ anneals, then holds tau_final; for 'l1_warmup', the length of λ's ramp from 0"
    )

    @field_validator("kind")
    @classmethod
    def _declared_kind(cls, value: str) -> str:
        kinds = schedule_kinds()
        if value not in kinds:
            expected = ", ".join(repr(k) for k in kinds[:-1]) + f" or {kinds[-1]!r}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    @model_validator(mode="before")
    @classmethod
    def _holds_initial(cls, data: Any) -> Any:
        # a kind that holds τ_initial (constant τ): its τ_final is τ_initial, so config.json shows the τ actually used
        if isinstance(data, dict) and "tau_final" not in data and "tau_initial" in data and data.get("kind") in schedule_kinds():
            if kind_spec(data["kind"]).tau_final_is_initial:
                data = {**data, "tau_final": data["tau_initial"]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleConfig:
        try:
            self.to_schedule()
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        refusal = kind_spec(self.kind).check(self.tau_initial, self.tau_final, self.anneal_fraction)  # the kind's own rule
        if refusal is not None:
            raise ValueError(refusal)
        return self

    @property
    def spec(self) -> ScheduleKindSpec:
        """What this schedule's kind is, as taulib.schedules declares it."""
        return kind_spec(self.kind)

    @property
    def label(self) -> str:
        return self.spec.label(self.tau_initial, self.tau_final, self.anneal_fraction)

    def to_schedule(self) -> TauSchedule:
        return TauSchedule(self.kind, self.tau_initial, self.tau_final, self.anneal_fraction)


class TrainingConfig(StrictModel):
    l1_coefficient: float = Field(0.04, ge=0, description="λ; the L1 term is (λ/τ(t))·‖f‖₁")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate after the warm-up")
    lr_warmup_fraction: float = Field(0.05, ge=0, lt=1, description="linear learning-rate warm-up, as a fraction of steps")
    lr_decay_fraction: float = Field(0.0, ge=0, lt=1, description="linear decay to 0 over this final fraction of steps")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam's β₁")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam's β₂")
    n_tokens: int = Field(8_000_000, gt=0, description="training tokens; the activation cache is cycled (reshuffled) as needed")
    batch_size: int = Field(4096, gt=0, description="activations per optimiser step")
    compute_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        description="autocast dtype of the SAE matmuls; weights and Adam state stay float32; 'auto' = bfloat16 where the training "
        "device has fast bfloat16 matmuls, else float32 (taulib.precision)",
    )
    log_every_steps: int = Field(10, gt=0, description="a row of the training log (the run's metrics.csv) every this many steps")
    n_checkpoints: int = Field(
        32, ge=1, description="analysis checkpoints: initialisation, then from the learning-rate warm-up's end to the final step about half evenly spaced, the rest log-spaced (dense just after the warm-up)"
    )
    resume_every_steps: int = Field(250, gt=0, description="how often resumable trainer state is saved")
    dead_window_tokens: int | None = Field(
        None,
        gt=0,
        description="the training log counts a latent dead if it has not fired in this many tokens (at most n_tokens); "
        "None: a fifth of the run",
    )
    threads: int | None = Field(None, gt=0, description="torch CPU threads; None leaves torch's default")
    device: str = Field("cpu", description="torch device the SAE trains on: cpu, cuda, cuda:N, mps (not part of the fingerprint)")
    activation_storage: Literal["host", "device", "mmap"] = Field(
        "host",
        description="where the training activations live: 'host' loads the cache into RAM and moves each batch; 'device' keeps "
        "the whole cache on the training device (it must fit); 'mmap' memory-maps the shards and reads each batch from them "
        "(caches larger than RAM). Not part of the fingerprint",
    )
    sparse_step_max_density: float | None = Field(
        None,
        ge=0,
        le=1,
        description="a step's latent side runs on sparse kernels when at most this fraction of the batch's (token, latent) "
        "activations is positive (0: always dense, 1: always sparse); None: on a CPU, the crossover this machine measures for "
        "the compute dtype and step shape (once, cached; taulib.train.sparse_switch), dense on other devices. Not part of "
        "the fingerprint",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return _check_device(value)

    @model_validator(mode="after")
    def _fractions_fit(self) -> TrainingConfig:
        if self.lr_warmup_fraction + self.lr_decay_fraction >= 1:
            raise ValueError("lr_warmup_fraction + lr_decay_fraction must be < 1")
        if self.dead_window_tokens is not None and self.dead_window_tokens > self.n_tokens:
            # a window longer than the run can never close: every latent would read as alive
            raise ValueError(f"dead_window_tokens ({self.dead_window_tokens:,}) must be at most n_tokens ({self.n_tokens:,}), or no latent can ever be dead")
        return self

    @model_validator(mode="before")
    @classmethod
    def _resolve_automatic_compute_dtype(cls, data: Any) -> Any:
        return _resolve_auto(data, "compute_dtype", resolve_compute_dtype)

    def total_steps(self) -> int:
        return max(1, math.ceil(self.n_tokens / self.batch_size))

    def dead_window(self) -> int:
        """The dead-latent window in tokens: as set, or a fifth of the run (never longer than the run)."""
        return self.dead_window_tokens if self.dead_window_tokens is not None else max(1, self.n_tokens // 5)


# the metric families' names, the model each needs and their parameters come from their declarations
# (taulib.metrics.catalogue): a family the run's model cannot have is recorded as not applicable, never computed as a NaN
MetricFamily = Literal[FAMILY_NAMES]  # type: ignore[valid-type]
EVALUATION_FAMILIES: tuple[str, ...] = FAMILY_NAMES
# the flat `evaluation.<key>` parameters before the families had sections: old key → (family, parameter)
OLD_EVALUATION_KEYS: dict[str, tuple[str, str]] = {old: (d.name, new) for d in DECLARATIONS for old, new in d.old_keys.items()}


def upgrade_old_evaluation_keys(evaluation: Any) -> tuple[Any, list[str]]:
    """An `evaluation:` mapping with its flat old keys moved into their families' sections, and one message per
    key moved (naming the new one). Read for one release, so that parameter files and finished runs' config.json
    written before the sections keep working; giving a parameter under both names is refused."""
    if not isinstance(evaluation, dict) or not any(key in OLD_EVALUATION_KEYS for key in evaluation):
        return evaluation, []
    upgraded, messages = dict(evaluation), []
    for old, (family, new) in OLD_EVALUATION_KEYS.items():
        if old not in upgraded:
            continue
        section = upgraded.get(family, {})
        if not isinstance(section, dict):
            break  # a malformed section: validation names it
        if new in section:
            raise ValueError(f"evaluation.{old} and evaluation.{family}.{new} are the same parameter (the first is its old name): give it once, as evaluation.{family}.{new}")
        upgraded[family] = section | {new: upgraded.pop(old)}
        messages.append(f"'evaluation.{old}' is now 'evaluation.{family}.{new}'; the old key is read until the next release")
    return upgraded, messages


class EvaluationSections(StrictModel):
    """What `taulib.metrics.evaluate` measures on every checkpoint: which families, which checkpoints, and one
    section of parameters per family (`evaluation.<family>`, declared in taulib/metrics/<family>/settings.py).
    Not part of a run's training fingerprint: changing it re-evaluates the saved checkpoints, it never retrains."""

    families: tuple[MetricFamily, ...] = Field(
        EVALUATION_FAMILIES,
        min_length=1,
        description="metric families to compute; those a model cannot have (spliced CE/KL, absorption and probing for the "
        "synthetic model, ground_truth for a language model) are recorded as not applicable",
    )
    checkpoints: Literal["all", "final"] = Field("all", description="evaluate every saved checkpoint, or the final SAE only")

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return upgrade_old_evaluation_keys(data)[0]  # silently: a parameter file's reader names them (read_yaml_mapping)

    @model_validator(mode="after")
    def _requested_families_can_run(self) -> EvaluationSections:
        for declaration in DECLARATIONS:
            if declaration.check_requested is not None and declaration.name in self.families:
                declaration.check_requested(self.section(declaration.name))
        return self

    def section(self, family: str) -> Any:
        """The parameters of one family (`evaluation.<family>`)."""
        return getattr(self, family)


EvaluationConfig = create_model(  # the families' sections composed from their declarations: the config names no family
    "EvaluationConfig",
    __base__=EvaluationSections,
    __module__=__name__,
    **{d.name: (d.parameters, Field(d.parameters(), description=d.summary)) for d in DECLARATIONS},  # type: ignore[call-overload]
)


class SweepLabel(StrictModel):
    """Where a run sits in a matched-sparsity sweep (taulib.sweep.spec). A label, not a setting: it is not
    part of the run's fingerprint, so a calibration probe can become the sweep's run unchanged."""

    arm: str = Field(description="the arm's parameter file (its stem) the run was generated from")
    l0_target: float = Field(gt=0, description="the final held-out L0 its λ was calibrated for")
    aa_of: str | None = Field(None, description="the A/A control's runs: the arm they repeat, calibrated a second time on their own")



class RunConfig(StrictModel):
    run_name: str = Field(description="the run and its folder outputs/<run_name>/; a parameter file may leave it out: its file name is used")
    description: str = Field("", description="what the arm is, in words (printed by the run notebook; a sweep appends its λ, L0 target and seed)")
    sweep: SweepLabel | None = Field(None, description="written by the sweep into the parameter files it generates: arm and L0 target")
    seed: int = Field(0, ge=0, description="seed of the SAE's initialisation and of the batch order")
    model: ModelConfig = ModelConfig()
    activations: ActivationsConfig = ActivationsConfig()
    sae: SAEConfig = SAEConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    @field_validator("run_name")
    @classmethod
    def _safe_run_name(cls, value: str) -> str:
        if not RUN_NAME_PATTERN.fullmatch(value):
            raise ValueError("must be 1-100 characters of letters, digits, '_', '.', '-', starting with a letter or digit")
        if value in RESERVED_RUN_NAMES:
            raise ValueError(f"{value!r} is reserved for a folder of outputs/; choose another run_name")
        return value

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["model"]["synthetic"] is None:  # a language model's config.json and fingerprint stay as they were before the synthetic model
            del data["model"]["synthetic"]
        return data

    def not_applicable_families(self) -> dict[str, str]:
        """The requested metric families this run's model cannot have, with the reason (recorded, not computed)."""
        if self.model.is_synthetic:
            missing, reason = "language_model", "the synthetic model has no language model to splice into, prompt or probe"
        else:
            missing, reason = "known_dictionary", "a language model has no known true dictionary"
        return {family: reason for family in self.evaluation.families if FAMILY_NEEDS[family] == missing}

    def evaluated_families(self) -> tuple[str, ...]:
        """The requested metric families that this run's model has."""
        skipped = self.not_applicable_families()
        return tuple(family for family in self.evaluation.families if family not in skipped)

    def fingerprint(self, *, exclude: tuple[str, ...] = ("description", "sweep", "evaluation")) -> str:
        """A stable hash of everything that determines this run's results (placement aside)."""
        data = versioned({k: v for k, v in self.result_defining_dict().items() if k not in exclude}, "training_version", TRAINING_VERSION)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def result_defining_dict(self) -> dict[str, Any]:
        """The configuration without the keys that only say where it runs (PLACEMENT_KEYS)."""
        data = self.to_dict()
        for section, key in PLACEMENT_KEYS:
            data[section].pop(key, None)
        return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Yaml12FloatLoader(yaml.SafeLoader):
    """SafeLoader that reads `3e-4` as a float (YAML 1.2), not as the string PyYAML 1.1 makes of it."""


_Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _refuse_duplicate_keys(node: yaml.Node, source: str, where: tuple[str, ...] = (), seen: set[int] | None = None) -> None:
    """A key given twice in one mapping: YAML keeps the last silently, so the file would mean less than it says."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias met again
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges by design; its keys may be overridden
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in lines:
                field = ".".join((*where, key))
                raise ConfigError(
                    f"{source}: key '{field}' is given twice (lines {lines[key]} and {key_node.start_mark.line + 1}); "
                    "YAML would silently keep only the last one: keep the one you mean and delete the other"
                )
            if key is not None:
                lines[key] = key_node.start_mark.line + 1
            _refuse_duplicate_keys(value_node, source, (*where, str(key)), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, source, (*where, str(index)), seen)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as data (YAML 1.2 floats), refusing malformed text and duplicate keys with ConfigError naming `source`."""
    loader = _Yaml12FloatLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it must be a mapping of parameters")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of parameters, got {type(data).__name__}")
    return with_upgraded_evaluation_keys(data, str(path))


def with_upgraded_evaluation_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` with its old flat evaluation keys moved into their sections, a FutureWarning naming each new key."""
    try:
        evaluation, messages = upgrade_old_evaluation_keys(data.get("evaluation"))
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    for message in messages:
        warnings.warn(f"{source}: {message}", FutureWarning, stacklevel=3)
    return data | {"evaluation": evaluation} if messages else data


def _resolve_inheritance(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{seen[0]}: 'inherit' forms a cycle: {chain}")
    data = read_yaml_mapping(path)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: field 'inherit' must be a file name (string), got {parent!r}")
    base_path = path.parent / parent
    if not base_path.is_file():
        raise ConfigError(f"{path}: field 'inherit': {base_path}: parameter file not found")
    base = _resolve_inheritance(base_path, (*seen, path))
    base.pop("run_name", None)  # a run name is never inherited
    return deep_merge(base, data)


def format_validation_error(source: str, error: ValidationError, root: type[BaseModel], what: str = "parameters") -> str:
    """One line per invalid field, naming the field, the problem, the value given and, for an unknown key, the keys allowed."""
    lines = [f"{source}: invalid {what}"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        allowed = _allowed_keys(root, item["loc"]) if item["type"] == "extra_forbidden" else ""
        given = item.get("input")
        given = list(given) if isinstance(given, tuple) else given  # as the file wrote it: YAML lists become tuples on reading
        shown = "" if item["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  - field '{field}': {message}{shown}{allowed}")
    return "\n".join(lines)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    model = root
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        # an optional section (`X | None`) is its model
        candidates = [info.annotation, *get_args(info.annotation)] if info is not None else []
        section = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if section is None:
            return ""
        model = section
    return "; allowed keys: " + ", ".join(model.model_fields)


def config_from_mapping(data: dict[str, Any], source: str = "<parameters>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(source, error, RunConfig)) from None


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate one parameter file (with its `inherit` chain) plus optional overrides.

    The run name defaults to the file's stem. `overrides` is deep-merged last (used by tests and
    by papermill callers for tiny runs).
    """
    path = Path(path)
    data = _resolve_inheritance(path)
    data.setdefault("run_name", path.stem)
    if overrides:
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: overrides must be a mapping, got {type(overrides).__name__}")
        data = deep_merge(data, with_upgraded_evaluation_keys(overrides, f"{path} (overrides)"))
    source = str(path) + (" (with overrides)" if overrides else "")
    return config_from_mapping(data, source)


def discover_parameter_files(directory: str | Path) -> list[Path]:
    """The run parameter files of a folder: every *.yaml / *.yml not starting with '_' (shared bases)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: parameter folder not found")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("_"))
    if not files:
        raise ConfigError(f"{directory}: no parameter files (*.yaml) found")
    return files


def load_study_configs(files: list[Path], overrides: dict[str, Any] | None = None) -> list[tuple[Path, RunConfig]]:
    """Load every parameter file and refuse two files that name the same run."""
    loaded = [(path, load_run_config(path, overrides)) for path in files]
    owners: dict[str, Path] = {}
    for path, config in loaded:
        if config.run_name in owners:
            raise ConfigError(
                f"{path}: run_name {config.run_name!r} is already used by {owners[config.run_name]}; each parameter file must name a distinct run"
            )
        owners[config.run_name] = path
    return loaded
