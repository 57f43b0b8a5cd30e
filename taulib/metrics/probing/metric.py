"""SAE Bench's sparse probing on labelled text tasks, with the model-side work done once per model/layer.

For each task (see `taulib.corpus.probing_tasks`), every class becomes a balanced binary task (the class
against an equal number of examples drawn evenly from the other classes; a two-class task is one
binary task). Each text is read by the model up to `context_length` tokens; its residuals after
block `layer` are kept per token (BOS excluded). Per SAE, latents are mean-pooled over each text's
tokens, the k latents with the largest |mean(positive) − mean(negative)| on the training split are
selected, and an L2 logistic regression on them is scored on the held-out split, for k in `ks`.
The same procedure on the model's own mean-pooled residual dimensions is the LLM baseline (plus
a probe on all dimensions), computed once with the data. Accuracies are averaged over a task's
binary tasks, then over tasks, as SAE Bench does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.extraction import residuals_per_sequence
from taulib.corpus.probing_tasks import balanced_examples
from taulib.metrics.logistic import fit_logistic_regressions
from taulib.metrics.probing.settings import ProbingParameters
from taulib.sae import SparseAutoencoder


@dataclass(frozen=True)
class ProbingSettings:
    # the evaluation.probing parameters' defaults (taulib/metrics/probing/settings.py)
    tasks: tuple[str, ...] = ProbingParameters.model_fields["tasks"].default
    examples_per_class: int = ProbingParameters.model_fields["examples_per_class"].default
    test_fraction: float = ProbingParameters.model_fields["test_fraction"].default
    context_length: int = ProbingParameters.model_fields["context_length"].default  # tokens read per text, BOS included
    ks: tuple[int, ...] = ProbingParameters.model_fields["ks"].default
    seed: int = ProbingParameters.model_fields["seed"].default
    disjoint_from_training: bool = True  # texts sharing a paragraph with the corpus's training split are left out

    def data_key(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "ks"}


@dataclass
class BinaryTask:
    task: str
    positive: str  # the class, against the others
    train: np.ndarray  # example indices into the task's examples
    train_labels: np.ndarray  # 1 = positive
    test: np.ndarray
    test_labels: np.ndarray


@dataclass
class TaskData:
    name: str
    labels: list[str]  # per example
    token_acts: torch.Tensor  # (total tokens, d) residuals of all examples, BOS excluded
    offsets: torch.Tensor  # (n_examples + 1,) example i owns token_acts[offsets[i]:offsets[i+1]]
    is_test: np.ndarray  # per example
    binary_tasks: list[BinaryTask] = field(default_factory=list)

    def mean_pooled(self, encode: Any = None, batch_tokens: int = 16384) -> torch.Tensor:
        """(n_examples, width) mean over each example's tokens of `encode(residuals)` (identity: residuals)."""
        return self.mean_pooled_many([encode if encode is not None else (lambda chunk: chunk)], batch_tokens)[0]

    def mean_pooled_many(self, encoders: Sequence[Any], batch_tokens: int = 16384) -> list[torch.Tensor]:
        """`mean_pooled` of each encoder, in one pass over the residuals (each chunk read and converted once)."""
        n = len(self.offsets) - 1
        owner = torch.repeat_interleave(torch.arange(n), self.offsets[1:] - self.offsets[:-1])
        pooled: list[torch.Tensor | None] = [None] * len(encoders)
        for start in range(0, len(self.token_acts), batch_tokens):
            chunk = self.token_acts[start : start + batch_tokens].float()
            owners = owner[start : start + batch_tokens]
            for index, encode in enumerate(encoders):
                values = encode(chunk)
                if pooled[index] is None:
                    pooled[index] = torch.zeros(n, values.shape[1])
                pooled[index].index_add_(0, owners, values.float())
        counts = (self.offsets[1:] - self.offsets[:-1]).clamp_min(1)[:, None].float()
        return [p / counts for p in pooled]  # type: ignore[operator]


def stratified_test_mask(labels: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """Which examples are test examples: `test_fraction` of each class, drawn with the seed."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels)):
        members = np.flatnonzero(np.array(labels) == label)
        is_test[rng.choice(members, int(round(len(members) * test_fraction)), replace=False)] = True
    return is_test


def _binary_tasks(name: str, labels: list[str], is_test: np.ndarray, seed: int) -> list[BinaryTask]:
    """SAE Bench's `prepare_probe_data`: each class against as many negatives, drawn evenly from the others."""
    classes = sorted(set(labels))
    positives_of = classes[:1] if len(classes) == 2 else classes
    rng = random.Random(seed)
    tasks = []
    for positive in positives_of:
        split_indices = {}
        for split, in_split in (("train", ~is_test), ("test", is_test)):
            members = [i for i, label in enumerate(labels) if in_split[i]]
            pos = [i for i in members if labels[i] == positive]
            others = [c for c in classes if c != positive]
            per_class = -(-len(pos) // len(others))
            pool = [i for c in others for i in rng.sample([j for j in members if labels[j] == c], min(per_class, sum(labels[j] == c for j in members)))]
            neg = rng.sample(pool, len(pos))
            order = pos + neg
            y = [1] * len(pos) + [0] * len(neg)
            shuffled = rng.sample(range(len(order)), len(order))
            split_indices[split] = (np.array([order[i] for i in shuffled]), np.array([y[i] for i in shuffled]))
        tasks.append(BinaryTask(name, positive, *split_indices["train"], *split_indices["test"]))
    return tasks


@dataclass
class ProbingData:
    tasks: list[TaskData]
    settings: ProbingSettings
    llm_baseline: dict[str, float] = field(default_factory=dict)  # filled by `compute_llm_baseline`

    def save(self, folder: Path, extra: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for task in self.tasks:
            with atomic.atomic_path(folder / f"probing_{task.name}.safetensors") as tmp:
                save_file({"token_acts": task.token_acts.half().contiguous(), "offsets": task.offsets.contiguous()}, str(tmp))
            atomic.write_json(
                folder / f"probing_{task.name}.json",
                {
                    "labels": task.labels,
                    "is_test": task.is_test.tolist(),
                    "binary_tasks": [
                        {
                            "positive": b.positive,
                            "train": b.train.tolist(),
                            "train_labels": b.train_labels.tolist(),
                            "test": b.test.tolist(),
                            "test_labels": b.test_labels.tolist(),
                        }
                        for b in task.binary_tasks
                    ],
                },
            )
        atomic.write_json(folder / "probing_manifest.json", {"settings": asdict(self.settings), "llm_baseline": self.llm_baseline, **extra})

    @classmethod
    def load(cls, folder: Path, settings: ProbingSettings) -> ProbingData:
        manifest_path = folder / "probing_manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder}: no sparse-probing data (run the extraction step, `python -m taulib extract`)")
        manifest = atomic.read_json(manifest_path)
        saved = ProbingSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["settings"].items()})
        if saved.data_key() != settings.data_key():
            raise ValueError(f"{folder}: sparse-probing data were prepared with other settings {saved.data_key()} than {settings.data_key()}")
        tasks = []
        for name in settings.tasks:
            tensors = load_file(str(folder / f"probing_{name}.safetensors"))
            meta = atomic.read_json(folder / f"probing_{name}.json")
            binary = [
                BinaryTask(name, b["positive"], np.array(b["train"]), np.array(b["train_labels"]), np.array(b["test"]), np.array(b["test_labels"]))
                for b in meta["binary_tasks"]
            ]
            tasks.append(TaskData(name, meta["labels"], tensors["token_acts"], tensors["offsets"], np.array(meta["is_test"]), binary))
        return cls(tasks, settings, manifest["llm_baseline"])


@torch.no_grad()
def prepare_probing_data(reader: Any, tokenizer: Any, settings: ProbingSettings, batch_size: int = 32, progress: Any = None) -> ProbingData:
    """Residuals of every example of every task, the binary tasks, and the LLM baseline.

    `progress`, a tqdm-like bar, gets every task's token count as its total and advances per batch."""
    bos = tokenizer.bos_token_id
    examples_of = {name: balanced_examples(name, settings.examples_per_class, settings.seed, disjoint_from_training=settings.disjoint_from_training) for name in settings.tasks}
    encoded_of = {
        name: [tokenizer(text, truncation=True, max_length=settings.context_length, return_tensors="pt").input_ids[0] for text, _ in examples]
        for name, examples in examples_of.items()
    }
    if progress is not None:  # the forward passes are the slow part: count their tokens, for an ETA
        progress.total = sum(len(ids) for encoded in encoded_of.values() for ids in encoded)
        progress.refresh()
    tasks = []
    for name in settings.tasks:
        examples, encoded = examples_of[name], encoded_of[name]
        labels = [label for _, label in examples]
        is_test = stratified_test_mask(labels, settings.test_fraction, settings.seed)
        residuals = residuals_per_sequence(reader, encoded, batch_size, progress.update if progress is not None else None)
        per_example = [acts[ids != bos] for acts, ids in zip(residuals, encoded, strict=True)]
        lengths = torch.tensor([len(acts) for acts in per_example])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        token_acts = torch.cat(per_example).half()
        tasks.append(TaskData(name, labels, token_acts, offsets, is_test, _binary_tasks(name, labels, is_test, settings.seed)))
    data = ProbingData(tasks, settings)
    data.llm_baseline = compute_llm_baseline(data)
    return data


def _top_k_accuracies(
    pooled: torch.Tensor, binary: list[BinaryTask], ks: tuple[int, ...]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, list[np.ndarray]]]:
    """Per k: test accuracy of each binary task, the selected features (tasks × k), and per binary
    task whether each test example was classified correctly (what a bootstrap over the test set resamples)."""
    accuracies, selected, correct = {}, {}, {}
    diffs = torch.stack([(pooled[b.train[b.train_labels == 1]].mean(0) - pooled[b.train[b.train_labels == 0]].mean(0)).abs() for b in binary])
    for k in ks:
        k_eff = min(k, pooled.shape[1])
        ids = diffs.argsort(dim=1, descending=True)[:, :k_eff]  # (tasks, k)
        n_train = min(len(b.train) for b in binary)
        same_size = all(len(b.train) == n_train for b in binary)
        if same_size:
            x = torch.stack([pooled[b.train][:, ids[t]] for t, b in enumerate(binary)])
            y = torch.stack([torch.from_numpy(b.train_labels) for b in binary])
            w, c = fit_logistic_regressions(x, y, balanced=False)
        else:  # tasks of different sizes are fitted one at a time
            fits = [
                fit_logistic_regressions(pooled[b.train][:, ids[t]][None], torch.from_numpy(b.train_labels)[None], balanced=False) for t, b in enumerate(binary)
            ]
            w, c = torch.cat([f[0] for f in fits]), torch.cat([f[1] for f in fits])
        correct[k] = [((pooled[b.test][:, ids[t]] @ w[t] + c[t]) > 0).numpy().astype(int) == b.test_labels for t, b in enumerate(binary)]
        accuracies[k] = np.array([float(hits.mean()) for hits in correct[k]])
        selected[k] = ids.numpy()
    return accuracies, selected, correct


def compute_llm_baseline(data: ProbingData) -> dict[str, float]:
    """The same probes on the model's mean-pooled residual dimensions, and on all of them."""
    result: dict[str, list[float]] = {}
    for task in data.tasks:
        pooled = task.mean_pooled()
        ks = (*data.settings.ks, pooled.shape[1])
        accuracies, _, _ = _top_k_accuracies(pooled, task.binary_tasks, ks)
        for k in ks:
            key = "llm_all_dims_accuracy" if k == pooled.shape[1] else f"llm_top_{k}_accuracy"
            result.setdefault(key, []).append(float(accuracies[k].mean()))
            result.setdefault(f"{key}/{task.name}", []).append(float(accuracies[k].mean()))
    return {key: float(np.mean(values)) for key, values in result.items()}


@torch.no_grad()
def evaluate_sparse_probing(sae: SparseAutoencoder, data: ProbingData, autocast: bool = True) -> tuple[dict[str, float], pd.DataFrame]:
    """Mean top-k accuracies of an SAE (raw units) over tasks, and a per-binary-task table with the chosen latents.

    `autocast` encodes with bfloat16 matmuls (for an SAE trained with them); the pooled latents differ by ~0.3%.
    """
    return evaluate_sparse_probing_many([sae], data, autocast)[0]


@torch.no_grad()
def evaluate_sparse_probing_many(saes: Sequence[SparseAutoencoder], data: ProbingData, autocast: bool = True) -> list[tuple[dict[str, float], pd.DataFrame]]:
    """`evaluate_sparse_probing` of several SAEs (e.g. a run's checkpoints), each task's residuals read once for all."""

    def encoder(sae: SparseAutoencoder) -> Any:
        if not autocast:
            return sae.encode
        weight = sae.W_enc.detach().bfloat16()  # cast once per SAE, not once per chunk of tokens

        def encode(x: torch.Tensor) -> torch.Tensor:
            # sae.encode under bfloat16 autocast, step for step (a bf16 matmul of the centred input, the bias
            # added in float32), without autocast's float32 ReLU on a temporary (benchmarks/RESULTS.md, the default study)
            return ((x - sae.b_dec).bfloat16() @ weight).float().add_(sae.b_enc).relu_()

        return encode

    per_task: list[dict[str, list[float]]] = [{} for _ in saes]
    rows: list[list[dict[str, Any]]] = [[] for _ in saes]
    for task in data.tasks:
        for index, pooled in enumerate(task.mean_pooled_many([encoder(sae) for sae in saes])):
            accuracies, selected, correct = _top_k_accuracies(pooled, task.binary_tasks, data.settings.ks)
            for position, binary in enumerate(task.binary_tasks):
                row: dict[str, Any] = {"task": task.name, "positive_class": binary.positive, "n_train": len(binary.train), "n_test": len(binary.test)}
                for k in data.settings.ks:
                    row[f"top_{k}_accuracy"] = float(accuracies[k][position])
                row["top_latents"] = selected[max(data.settings.ks)][position][:10].tolist()
                if 1 in correct:  # the test examples of sae_top_1_accuracy, in the task's fixed order: what a test-set bootstrap resamples
                    row["top_1_correct"] = correct[1][position].astype(int).tolist()
                rows[index].append(row)
            for k in data.settings.ks:
                per_task[index].setdefault(f"sae_top_{k}_accuracy", []).append(float(accuracies[k].mean()))
                per_task[index][f"sae_top_{k}_accuracy/{task.name}"] = [float(accuracies[k].mean())]
    return [({key: float(np.mean(values)) for key, values in own.items()}, pd.DataFrame(own_rows)) for own, own_rows in zip(per_task, rows, strict=True)]
