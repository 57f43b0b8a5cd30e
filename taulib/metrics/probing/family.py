"""The probing family's work: SAE Bench's sparse probing on labelled texts whose residuals are prepared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from taulib.activations.extraction import ResidualReader
from taulib.corpus.probing_tasks import PROBING_TASKS, load_task, training_paragraphs
from taulib.metrics.family import DOWNSTREAM_CHUNK, Chunk, Costs, Family, RunInputs, timing_sae
from taulib.metrics.probing.metric import ProbingData, ProbingSettings, TaskData, _binary_tasks, evaluate_sparse_probing_many, prepare_probing_data
from taulib.metrics.probing.settings import DECLARATION
from taulib.precision import resolve_compute_dtype
from taulib.progress import progress_bar
from taulib.timing import once

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

PROBING_EXAMPLES_CAP = 10  # examples per class for the timed sparse probing
MANIFEST = "probing_manifest.json"


class Probing(Family):
    declaration = DECLARATION

    def settings(self, config: RunConfig) -> ProbingSettings:
        p = self.parameters(config)
        return ProbingSettings(
            tasks=p.tasks, examples_per_class=p.examples_per_class, test_fraction=p.test_fraction, context_length=p.context_length, ks=p.ks, seed=p.seed
        )

    @staticmethod
    def bfloat16(config: RunConfig) -> bool:
        """The latents are encoded as the SAE was trained: bfloat16 matmuls where its compute dtype resolves to them on a CPU."""
        return resolve_compute_dtype(config.training.compute_dtype, "cpu") == "bfloat16"

    def texts(self, config: RunConfig) -> int:
        """The probing texts read: every class of every task."""
        p = self.parameters(config)
        return p.examples_per_class * sum(PROBING_TASKS[task].n_classes for task in p.tasks)

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"probing": self.settings(config).data_key()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return (MANIFEST,)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool, inputs_key: dict[str, Any]) -> None:
        bar = progress_bar(desc="probing-task residuals", unit="tok", unit_scale=True, disable=not show_progress)
        reader = ResidualReader(loaded, config.model.autocast)
        prepare_probing_data(reader, loaded.tokenizer, self.settings(config), progress=bar).save(folder, {"key": inputs_key})
        bar.close()

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        p = self.parameters(config)
        # reading the tasks' sources (the texts shared with training left out), then their residuals
        # (reading the sources is a fixed cost, whatever the number of texts)
        texts = costs.measured(f"probing_texts|{','.join(sorted(p.tasks))}", lambda: probing_texts_seconds(p.tasks))
        return texts + self.texts(config) * p.context_length * costs.model(config, "truncated_per_token")

    def load(self, run: RunInputs) -> Any:
        return ProbingData.load(run.data_folder, self.settings(run.config))

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        for index, (summary, tasks) in enumerate(evaluate_sparse_probing_many(saes, state, autocast=self.bfloat16(run.config))):
            chunk.scalars[index] |= {key.replace("/", "."): value for key, value in summary.items()}  # per-task keys become "metric.task" columns
            chunk.details[index]["probing_tasks"] = tasks.to_dict(orient="records")

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        p, width, bf16 = self.parameters(config), config.sae.width, self.bfloat16(config)
        key = f"probing_chunk|d{d_model}|w{width}|ctx{p.context_length}|{','.join(p.tasks)}|k{','.join(map(str, p.ks))}|{'bf16' if bf16 else 'f32'}"
        per_example = costs.measured(key, lambda: probing_seconds_per_example(d_model, width, p.tasks, p.examples_per_class, p.context_length, p.ks, bf16))
        return per_example * self.texts(config)

    def input_bytes(self, config: RunConfig, d_model: int) -> int:
        return self.texts(config) * self.parameters(config).context_length * d_model * 2  # float16 token residuals

    def plan_problems(self, config: RunConfig, source: str) -> list[str]:
        ks = self.parameters(config).ks
        if max(ks) <= config.sae.width:
            return []
        return [
            f"{source}: fields 'evaluation.probing.ks' (up to {max(ks)}) and 'sae.width' ({config.sae.width}): "
            f"sparse probing cannot select more latents than the SAE has; keep probing.ks <= {config.sae.width}"
        ]


def probing_seconds_per_example(
    d_model: int, width: int, tasks: tuple[str, ...], examples_per_class: int, context_length: int, ks: tuple[int, ...], autocast: bool
) -> float:
    """Sparse probing of one checkpoint (encode, pool, top-k logistic fits per binary task) on random residuals,
    in a chunk of checkpoints as the evaluation does (bfloat16 encoding when `autocast`)."""
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


def probing_texts_seconds(tasks: tuple[str, ...]) -> float:
    """Loading the probing tasks' texts and the corpus's training paragraphs, from cold (once)."""
    return once(lambda: ([load_task(task) for task in tasks], training_paragraphs()))


FAMILY = Probing()
