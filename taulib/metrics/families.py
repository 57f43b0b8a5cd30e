"""The metric families, one class each: which model a family needs, what it prepares once per model
and layer, how it evaluates a chunk of checkpoints, and what that costs.

`FAMILIES` is the one list. The config's `evaluation.families` takes its names (taulib.config), the
evaluation driver runs them in its order (taulib.metrics.evaluate: core first, whose alive latents
orthogonality reads), the extraction step prepares their inputs, and the wall-time estimate prices
them (taulib.study.cost). A new family is a metric module, a class here in `FAMILIES`, and its test
(docs/metrics.md, "Adding a metric family").

The metric modules are imported inside the methods: taulib.config reads this module, and the metric
modules read taulib.config.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from taulib.timing import once, timed

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

# which model a family can be computed on: any, a language model (to splice into, prompt or probe), or
# the synthetic model (whose true dictionary is known); on the other kind it is recorded as not applicable
Needs = Literal["any", "language_model", "known_dictionary"]
CE_SEQUENCES_FILE, CE_REFERENCE_FILE = "ce_sequences.safetensors", "ce_reference.safetensors"
COSINE_HISTOGRAM_EDGES = np.linspace(-0.2, 1.0, 61)
# checkpoints evaluated together: one pass over the held-out, probing and CE data for all; also the resume granularity
DOWNSTREAM_CHUNK = 8
ABSORPTION_WORDS_CAP = 260  # the absorption metric is timed on at most this many words, then scaled
PROBING_EXAMPLES_CAP = 10  # examples per class for the timed sparse probing


class Costs(Protocol):
    """This machine's costs per unit, as a family's cost estimate reads them (taulib.study.cost.Costs is one)."""

    def measured(self, name: str, measure: Callable[[], float]) -> float: ...

    def model(self, config: RunConfig, name: str) -> float: ...

    def core(self, config: RunConfig, d_model: int) -> float: ...

    def probing_texts(self, tasks: tuple[str, ...]) -> float: ...


@dataclass
class RunInputs:
    """What a run's evaluation reads once and every family may use."""

    config: RunConfig
    outputs_root: Path
    layer: int
    data_folder: Path  # the SAE-independent inputs of this model and layer (taulib.metrics.evaluate.evaluation_data_folder)
    heldout_folder: Path  # the held-out activation cache
    heldout: torch.Tensor  # its first evaluation.core_tokens activations, float32
    model: LoadedModel | None = None  # the caller's language model, if it has one loaded
    show_progress: bool = True


@dataclass
class Chunk:
    """Checkpoints evaluated together, and what the families have found so far (in FAMILIES order)."""

    steps: list[int]
    final_step: int  # the run's last checkpoint
    scalars: list[dict[str, Any]]
    details: list[dict[str, Any]]
    alive: list[np.ndarray | None] = field(default_factory=list)  # per SAE: latents firing on the held-out tokens (core)


class Family:
    """A metric family; the defaults are those of a family that needs no prepared input."""

    name: ClassVar[str]
    needs: ClassVar[Needs] = "any"

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        """The settings its prepared inputs depend on (part of the inputs folder's name)."""
        return {}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        """Files in the inputs folder that say its inputs are prepared."""
        return ()

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool) -> None:
        """Compute its SAE-independent inputs into `folder`, once per model and layer (the extraction step)."""

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        """The estimated seconds of `prepare`."""
        return 0.0

    def load(self, run: RunInputs) -> Any:
        """What its evaluation of a run reads once (its prepared inputs)."""
        return None

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        """Add its scalars and details to every checkpoint of the chunk."""
        raise NotImplementedError

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        """The estimated seconds of one checkpoint's evaluation (evaluated in chunks)."""
        raise NotImplementedError

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        """The estimated seconds of a run's evaluation of `checkpoints` checkpoints."""
        return checkpoints * self.checkpoint_seconds(costs, config, d_model)

    def finish(self, run_dir: Path, records_folder: Path, steps: list[int], by_step: dict[int, dict[str, Any]], config: RunConfig) -> None:
        """Write any per-run table, once every checkpoint is evaluated."""


def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(np.clip(values, COSINE_HISTOGRAM_EDGES[0], COSINE_HISTOGRAM_EDGES[-1]), bins=COSINE_HISTOGRAM_EDGES)[0].astype(int).tolist()


class Core(Family):
    """L0, explained variance, dead and dense latents, density (taulib.metrics.core)."""

    name = "core"

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        import torch

        from taulib.metrics.core import density_histogram, reconstruction_metrics_many

        # the one metric that scales with the held-out tokens runs where the SAE trained; the rest are small
        device = torch.device(run.config.training.device)
        on_device = saes if device.type == "cpu" else [copy.deepcopy(sae).to(device) for sae in saes]
        for index, (core, density) in enumerate(reconstruction_metrics_many(on_device, run.heldout, dense_threshold=run.config.evaluation.dense_threshold)):
            chunk.scalars[index] |= core.as_dict()
            chunk.details[index]["density_histogram"] = density_histogram(density)
            chunk.details[index]["latent_density"] = density.tolist()  # per latent: which are alive, for per-latent analyses
            chunk.alive[index] = density > 0

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        return costs.core(config, d_model)


class Orthogonality(Family):
    """Decoder max-cosine statistics over all and over alive latents, against random baselines (taulib.metrics.orthogonality)."""

    name = "orthogonality"

    def load(self, run: RunInputs) -> Any:
        from taulib.metrics.orthogonality import covariance_factor

        return covariance_factor(run.heldout)  # the baseline of random directions drawn from the activations' covariance

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        from taulib.metrics.orthogonality import orthogonality_metrics

        for index, sae in enumerate(saes):
            metrics, arrays = orthogonality_metrics(sae, run.config.evaluation.near_duplicate_threshold, alive=chunk.alive[index], activation_covariance_factor=state)
            chunk.scalars[index] |= metrics.as_dict()
            details = chunk.details[index]
            details["cosine_histogram_edges"] = COSINE_HISTOGRAM_EDGES.tolist()
            details["max_cosine_histogram"] = _histogram(arrays["max_cosine"])
            details["random_max_cosine_histogram"] = _histogram(arrays["random_max_cosine"])
            details["encoder_decoder_cosine_histogram"] = _histogram(arrays["encoder_decoder_cosine"])

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        width = config.sae.width
        return costs.measured(f"orthogonality|d{d_model}|w{width}", lambda: orthogonality_seconds(d_model, width))


class Absorption(Family):
    """SAE Bench's first-letter feature absorption (taulib.metrics.absorption)."""

    name = "absorption"
    needs = "language_model"

    @staticmethod
    def settings(config: RunConfig) -> Any:
        from taulib.metrics.absorption import AbsorptionSettings

        return AbsorptionSettings(vocab_size=config.evaluation.absorption_vocab_size, seed=config.evaluation.absorption_seed)

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"absorption": self.settings(config).data_key()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return ("absorption_manifest.json",)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool) -> None:
        from taulib.activations.extraction import ResidualReader
        from taulib.metrics.absorption import prepare_absorption_data
        from taulib.progress import progress_bar

        # minutes of forward passes on a CPU: a bar with an ETA, once per model and layer
        bar = progress_bar(desc="absorption prompts", unit="tok", unit_scale=True, disable=not show_progress)
        reader = ResidualReader(loaded, config.model.autocast)
        prepare_absorption_data(reader, loaded.tokenizer, self.settings(config), progress=bar).save(folder, {"key": inputs_key(config, loaded.layer)})
        bar.close()

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        # train and test prompts, and a second prompt per test word, through the forward up to the layer
        tokens = config.evaluation.absorption_vocab_size * 1.2 * costs.model(config, "absorption_prompt_tokens")
        return tokens * costs.model(config, "truncated_per_token")

    def load(self, run: RunInputs) -> Any:
        from taulib.metrics.absorption import AbsorptionData

        return AbsorptionData.load(run.data_folder, self.settings(run.config))

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        from taulib.metrics.absorption import evaluate_absorption_many

        every = run.config.evaluation.absorption_checkpoints == "all"
        chosen = [index for index, step in enumerate(chunk.steps) if every or step == chunk.final_step]
        if not chosen:
            return  # absorption_checkpoints "final", and the final checkpoint is in another chunk
        # the chunk's k-sparse probes are trained together (taulib.metrics.absorption.train_linear_probes)
        for index, (metrics, letters) in zip(chosen, evaluate_absorption_many([saes[index] for index in chosen], state), strict=True):
            chunk.scalars[index] |= metrics.as_dict()
            chunk.details[index]["absorption_letters"] = letters.to_dict(orient="records")

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        words, width = config.evaluation.absorption_vocab_size, config.sae.width
        return words * costs.measured(f"absorption_chunk|d{d_model}|w{width}", lambda: absorption_seconds_per_word(d_model, width, words))

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        evaluated = checkpoints if config.evaluation.absorption_checkpoints == "all" else min(checkpoints, 1)
        return evaluated * self.checkpoint_seconds(costs, config, d_model)


class Probing(Family):
    """SAE Bench's sparse probing on labelled texts (taulib.metrics.probing)."""

    name = "probing"
    needs = "language_model"

    @staticmethod
    def settings(config: RunConfig) -> Any:
        from taulib.metrics.probing import ProbingSettings

        e = config.evaluation
        return ProbingSettings(
            tasks=e.probing_tasks,
            examples_per_class=e.probing_examples_per_class,
            test_fraction=e.probing_test_fraction,
            context_length=e.probing_context_length,
            ks=e.probing_ks,
            seed=e.probing_seed,
        )

    @staticmethod
    def bfloat16(config: RunConfig) -> bool:
        """The latents are encoded as the SAE was trained: bfloat16 matmuls where its compute dtype resolves to them on a CPU."""
        from taulib.precision import resolve_compute_dtype

        return resolve_compute_dtype(config.training.compute_dtype, "cpu") == "bfloat16"

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"probing": self.settings(config).data_key()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return ("probing_manifest.json",)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool) -> None:
        from taulib.activations.extraction import ResidualReader
        from taulib.metrics.probing import prepare_probing_data
        from taulib.progress import progress_bar

        bar = progress_bar(desc="probing-task residuals", unit="tok", unit_scale=True, disable=not show_progress)
        reader = ResidualReader(loaded, config.model.autocast)
        prepare_probing_data(reader, loaded.tokenizer, self.settings(config), progress=bar).save(folder, {"key": inputs_key(config, loaded.layer)})
        bar.close()

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        from taulib.corpus.probing_tasks import PROBING_TASKS

        e = config.evaluation
        tokens = e.probing_examples_per_class * sum(PROBING_TASKS[task].n_classes for task in e.probing_tasks) * e.probing_context_length
        # reading the tasks' sources (the texts shared with training left out), then their residuals
        return costs.probing_texts(e.probing_tasks) + tokens * costs.model(config, "truncated_per_token")

    def load(self, run: RunInputs) -> Any:
        from taulib.metrics.probing import ProbingData

        return ProbingData.load(run.data_folder, self.settings(run.config))

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        from taulib.metrics.probing import evaluate_sparse_probing_many

        for index, (summary, tasks) in enumerate(evaluate_sparse_probing_many(saes, state, autocast=self.bfloat16(run.config))):
            chunk.scalars[index] |= {key.replace("/", "."): value for key, value in summary.items()}  # per-task keys become "metric.task" columns
            chunk.details[index]["probing_tasks"] = tasks.to_dict(orient="records")

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        from taulib.corpus.probing_tasks import PROBING_TASKS
        e, width, bf16 = config.evaluation, config.sae.width, self.bfloat16(config)
        key = f"probing_chunk|d{d_model}|w{width}|ctx{e.probing_context_length}|{','.join(e.probing_tasks)}|k{','.join(map(str, e.probing_ks))}|{'bf16' if bf16 else 'f32'}"
        per_example = costs.measured(
            key, lambda: probing_seconds_per_example(d_model, width, e.probing_tasks, e.probing_examples_per_class, e.probing_context_length, e.probing_ks, bf16)
        )
        return per_example * e.probing_examples_per_class * sum(PROBING_TASKS[task].n_classes for task in e.probing_tasks)


class GroundTruth(Family):
    """Recovery of the synthetic model's known dictionary, per checkpoint and per true feature (taulib.metrics.ground_truth)."""

    name = "ground_truth"
    needs = "known_dictionary"
    RECOVERY_FILE: ClassVar[str] = "ground_truth_recovery.csv"

    def load(self, run: RunInputs) -> Any:
        from taulib.activations.synthetic import load_true_dictionary

        return load_true_dictionary(run.heldout_folder)[0]

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        from taulib.metrics.ground_truth import ground_truth_metrics

        for index, sae in enumerate(saes):
            truth, best = ground_truth_metrics(state, sae.W_dec, run.config.evaluation.recovery_threshold)
            chunk.scalars[index] |= truth.as_dict()
            chunk.details[index]["gt_max_cosine"] = best.tolist()  # per true feature: its recovery step over the checkpoints

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        if config.model.synthetic is None:
            return 0.0
        width, n_features = config.sae.width, config.model.synthetic.n_features
        return costs.measured(f"ground_truth|d{d_model}|w{width}|n{n_features}", lambda: ground_truth_seconds(d_model, width, n_features))

    def finish(self, run_dir: Path, records_folder: Path, steps: list[int], by_step: dict[int, dict[str, Any]], config: RunConfig) -> None:
        """Per true feature: its recovery step and tokens (first checkpoint from which it stays recovered; -1: not
        recovered at the last one) and its best decoder cosine at the last checkpoint."""
        import pandas as pd

        from taulib import atomic
        from taulib.metrics.ground_truth import recovery_steps

        steps = sorted(steps)
        cosines = np.array([atomic.read_json(records_folder / f"step_{step:07d}.json")["details"]["gt_max_cosine"] for step in steps])
        recovered_at = recovery_steps(steps, cosines, config.evaluation.recovery_threshold)
        tokens = {step: by_step[step]["tokens"] for step in steps}
        table = pd.DataFrame(
            {
                "feature": np.arange(cosines.shape[1]),
                "recovery_step": recovered_at,
                "recovery_tokens": [tokens[int(step)] if step >= 0 else -1 for step in recovered_at],
                "final_max_cosine": cosines[-1],
            }
        )
        atomic.write_bytes_if_changed(run_dir / "evaluation" / self.RECOVERY_FILE, table.to_csv(index=False).encode())


class Downstream(Family):
    """CE loss and KL with the reconstruction spliced into the language model (taulib.metrics.downstream)."""

    name = "downstream"
    needs = "language_model"

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"ce_sequences": config.evaluation.ce_sequences_needed()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return (CE_SEQUENCES_FILE, CE_REFERENCE_FILE)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool) -> None:
        from safetensors.torch import save_file

        from taulib import atomic
        from taulib.corpus import iter_documents, token_sequences
        from taulib.metrics.downstream import SplicedModel

        if not (folder / CE_SEQUENCES_FILE).is_file():
            import torch

            count = config.evaluation.ce_sequences_needed()
            stream = token_sequences(iter_documents("heldout", seed=0), loaded.tokenizer, config.activations.context_length, count)
            with atomic.atomic_path(folder / CE_SEQUENCES_FILE) as tmp:
                save_file({"input_ids": torch.stack(list(stream))}, str(tmp))
        self.reference(config, SplicedModel(loaded, config.model.autocast), folder, show_progress)

    @staticmethod
    def reference(config: RunConfig, spliced: Any, folder: Path, show_progress: bool) -> Any:
        """The CE sequences' residuals at the hooked layer, clean and zero-ablated losses and KL's share of the
        clean distribution: computed once, then read."""
        from safetensors.torch import load_file

        from taulib.metrics.downstream import SpliceReference, splice_reference
        from taulib.progress import progress_bar

        path = folder / CE_REFERENCE_FILE
        if path.is_file():
            return SpliceReference.load(path)
        sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"]
        bar = progress_bar(total=len(sequences), desc="CE/KL reference (clean, zero-ablated)", unit="seq", disable=not show_progress)
        reference = splice_reference(spliced, sequences, config.evaluation.ce_batch_size, progress=bar.update)
        bar.close()
        reference.save(path)
        return reference

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        # the CE sequences' residuals, then their clean and zero-ablated later blocks
        tokens = config.evaluation.ce_sequences_needed() * config.activations.context_length
        return tokens * (costs.model(config, "truncated_per_token") + 2 * costs.model(config, "after_layer_per_token"))

    def load(self, run: RunInputs) -> Any:
        from taulib.activations.models import load_language_model
        from taulib.metrics.downstream import SplicedModel

        sequences_path = run.data_folder / CE_SEQUENCES_FILE
        if not sequences_path.is_file():
            raise FileNotFoundError(f"{sequences_path}: no CE sequences (run the extraction step, `python -m taulib extract`)")
        model = run.model
        if model is None or model.layer != run.layer:
            model = load_language_model(run.config.model.model_copy(update={"layer": run.layer}))
        spliced = SplicedModel(model, run.config.model.autocast)
        return spliced, self.reference(run.config, spliced, run.data_folder, run.show_progress)  # inputs prepared before it existed get it here

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        spliced, reference = state
        results = self.by_step(spliced, reference, saes, chunk, run.config)
        for index, step in enumerate(chunk.steps):
            if (downstream := results.get(step)) is None:
                continue  # ce_sequences 0: only the final checkpoint is spliced
            chunk.scalars[index] |= {key: value for key, value in downstream.as_dict().items() if key != "n_tokens"}
            chunk.scalars[index] |= downstream.per_sequence.bootstrap_intervals(seed=step) | {"ce_tokens": downstream.n_tokens}
            chunk.details[index]["ce_per_sequence"] = downstream.per_sequence.to_lists()

    def by_step(self, spliced: Any, reference: Any, saes: list[SparseAutoencoder], chunk: Chunk, config: RunConfig) -> dict[int, Any]:
        """CE/KL by step: every checkpoint's on the first `ce_sequences` (one pass over their batches for all;
        none when 0); the final checkpoint's on `ce_final_sequences`, the rest evaluated for it alone and combined."""
        from taulib.metrics.downstream import downstream_metrics

        evaluation, steps, final = config.evaluation, chunk.steps, chunk.final_step
        results: dict[int, Any] = {}
        if evaluation.ce_sequences:
            first = reference.rows(0, evaluation.ce_sequences)
            results = dict(zip(steps, downstream_metrics(spliced, first.input_ids, saes, evaluation.ce_batch_size, reference=first), strict=True))
        extra = evaluation.ce_sequences_needed() - evaluation.ce_sequences
        if extra and final in steps:
            rest = reference.rows(evaluation.ce_sequences, evaluation.ce_sequences + extra)
            (more,) = downstream_metrics(spliced, rest.input_ids, [saes[steps.index(final)]], evaluation.ce_batch_size, reference=rest)
            results[final] = results[final].per_sequence.concat(more.per_sequence).metrics() if final in results else more
        return results

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        return config.evaluation.ce_sequences * config.activations.context_length * costs.model(config, "after_layer_per_token")

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        # only the blocks after the hooked one run, spliced, from the residual cached with the inputs (with the
        # clean distribution's part of KL: taulib.metrics.downstream): every checkpoint on ce_sequences, the
        # final one on its further sequences; the model is loaded once per run
        e = config.evaluation
        further = (e.ce_sequences_needed() - e.ce_sequences) * config.activations.context_length * costs.model(config, "after_layer_per_token")
        return costs.model(config, "load") + checkpoints * self.checkpoint_seconds(costs, config, d_model) + further


# evaluated in this order (core before orthogonality, which reads its alive latents); the default of evaluation.families
FAMILIES: tuple[Family, ...] = (Core(), Downstream(), Orthogonality(), Absorption(), Probing(), GroundTruth())
FAMILY_NAMES: tuple[str, ...] = tuple(family.name for family in FAMILIES)
FAMILY_NEEDS: dict[str, Needs] = {family.name: family.needs for family in FAMILIES}
BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}


def evaluated(config: RunConfig) -> list[Family]:
    """The families a run evaluates (requested, and possible for its model), in the order they run."""
    names = set(config.evaluated_families())
    return [family for family in FAMILIES if family.name in names]


def inputs_key(config: RunConfig, layer: int) -> dict[str, Any]:
    """What the SAE-independent inputs of this model and layer depend on: the model, and every family's settings."""
    key = {
        "model": config.model.name,
        "model_dtype": config.model.dtype,
        "autocast": config.model.autocast,
        "layer": layer,
        "corpus": config.activations.corpus,
        "context_length": config.activations.context_length,
    }
    for family in FAMILIES:
        key |= family.data_key(config)
    return key


# ----------------------------------------------------------------------------- each family's cost timing
def timing_sae(d_model: int, width: int) -> Any:
    """A random SAE of this shape, sparse-ish as the checkpoints after the first are: what the cost timings evaluate."""
    from taulib.sae import SparseAutoencoder

    sae = SparseAutoencoder(d_model, width)
    sae.initialise(torch.Generator().manual_seed(0))  # a fresh SAE's weights are uninitialised memory
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)  # a sparse-ish SAE, as the checkpoints after the first are
    return sae


def orthogonality_seconds(d_model: int, width: int) -> float:
    from taulib.metrics.orthogonality import covariance_factor, orthogonality_metrics

    sae, factor = timing_sae(d_model, width), covariance_factor(torch.randn(2 * d_model, d_model))
    return once(lambda: orthogonality_metrics(sae, activation_covariance_factor=factor))


def ground_truth_seconds(d_model: int, width: int, n_features: int) -> float:
    from taulib.metrics.ground_truth import ground_truth_metrics

    sae, true = timing_sae(d_model, width), torch.randn(n_features, d_model)
    return timed(lambda: ground_truth_metrics(true, sae.W_dec))


def absorption_seconds_per_word(d_model: int, width: int, words: int) -> float:
    """The absorption metric of one checkpoint (k-sparse probes, absorption per letter) on random residuals,
    per word, evaluated in a chunk of checkpoints as the evaluation does."""
    from taulib.metrics.absorption import AbsorptionData, AbsorptionSettings, evaluate_absorption_many

    n = min(words, ABSORPTION_WORDS_CAP)
    settings = AbsorptionSettings(vocab_size=max(n, 260))
    generator = torch.Generator().manual_seed(0)
    n_train = int(n * settings.train_fraction)
    n_test = n - n_train
    labels = torch.arange(n) % 26
    names = [f"w{i}" for i in range(n)]
    data = AbsorptionData(
        train_words=names[:n_train],
        test_words=names[n_train:],
        train_labels=labels[:n_train],
        test_labels=labels[n_train:],
        train_acts=torch.randn(n_train, d_model, generator=generator),
        test_acts=torch.randn(n_test, d_model, generator=generator),
        absorption_acts=torch.randn(n_test, d_model, generator=generator),
        train_prompts=[],
        test_prompts=[],
        absorption_prompts=[],
        probe_weight=torch.randn(26, d_model, generator=generator),
        probe_bias=torch.zeros(26),
        settings=settings,
    )
    sae = timing_sae(d_model, width)
    return timed(lambda: evaluate_absorption_many([sae] * DOWNSTREAM_CHUNK, data), max_repeats=2) / (n * DOWNSTREAM_CHUNK)


def probing_seconds_per_example(
    d_model: int, width: int, tasks: tuple[str, ...], examples_per_class: int, context_length: int, ks: tuple[int, ...], autocast: bool
) -> float:
    """Sparse probing of one checkpoint (encode, pool, top-k logistic fits per binary task) on random residuals,
    in a chunk of checkpoints as the evaluation does (bfloat16 encoding when `autocast`)."""
    import numpy as np

    from taulib.corpus.probing_tasks import PROBING_TASKS
    from taulib.metrics.probing import ProbingData, ProbingSettings, TaskData, _binary_tasks, evaluate_sparse_probing_many

    per_class = min(examples_per_class, PROBING_EXAMPLES_CAP)
    settings = ProbingSettings(tasks=tasks, examples_per_class=per_class, context_length=context_length, ks=ks)
    rng = np.random.default_rng(0)
    task_data, examples = [], 0
    for name in tasks:
        labels = [f"class{c}" for c in range(PROBING_TASKS[name].n_classes) for _ in range(per_class)]
        tokens = context_length - 1  # BOS excluded
        is_test = np.zeros(len(labels), dtype=bool)
        for c in range(PROBING_TASKS[name].n_classes):  # stratified, as the real split
            is_test[rng.choice(np.arange(c * per_class, (c + 1) * per_class), int(round(per_class * settings.test_fraction)), replace=False)] = True
        token_acts = torch.randn(len(labels) * tokens, d_model).half()
        offsets = torch.arange(len(labels) + 1) * tokens
        task_data.append(TaskData(name, labels, token_acts, offsets, is_test, _binary_tasks(name, labels, is_test, settings.seed)))
        examples += len(labels)
    data = ProbingData(task_data, settings)
    sae = timing_sae(d_model, width)
    with torch.no_grad():
        sae.b_enc.zero_()  # every latent alive: a dead one would leave the probes' top-k fits singular on random data
    return once(lambda: evaluate_sparse_probing_many([sae] * DOWNSTREAM_CHUNK, data, autocast)) / (examples * DOWNSTREAM_CHUNK)

