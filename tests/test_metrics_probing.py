"""Sparse probing on constructed tasks: a latent that encodes the class is found and gives accuracy 1."""

import numpy as np
import pytest
import torch

from taulib.metrics.probing.metric import (
    BinaryTask,
    ProbingData,
    ProbingSettings,
    TaskData,
    _binary_tasks,
    compute_llm_baseline,
    evaluate_sparse_probing,
    evaluate_sparse_probing_many,
)
from taulib.sae import SparseAutoencoder

CLASSES = ["red", "green", "blue"]


def _task(seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    labels = [c for c in CLASSES for _ in range(40)]
    is_test = np.zeros(len(labels), dtype=bool)
    for c in CLASSES:
        members = [i for i, label in enumerate(labels) if label == c]
        is_test[rng.choice(members, 8, replace=False)] = True
    per_example, lengths = [], []
    for label in labels:
        n_tokens = int(rng.integers(3, 9))
        acts = torch.from_numpy(rng.normal(0, 0.3, size=(n_tokens, 16))).float()
        acts[:, CLASSES.index(label)] += 2.0  # dims 0..2 carry the class on every token
        per_example.append(acts)
        lengths.append(n_tokens)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))
    return TaskData("colours", labels, torch.cat(per_example), offsets, is_test, _binary_tasks("colours", labels, is_test, seed))


def test_binary_tasks_are_balanced_and_keep_the_split():
    task = _task()
    assert [b.positive for b in task.binary_tasks] == sorted(CLASSES)
    for b in task.binary_tasks:
        assert b.train_labels.sum() * 2 == len(b.train_labels) and b.test_labels.sum() * 2 == len(b.test_labels)
        assert not task.is_test[b.train].any() and task.is_test[b.test].all()
        negatives = {task.labels[i] for i, y in zip(b.train, b.train_labels, strict=True) if y == 0}
        assert negatives == set(CLASSES) - {b.positive}  # drawn from every other class
        assert all(task.labels[i] == b.positive for i, y in zip(b.train, b.train_labels, strict=True) if y == 1)


def test_mean_pooling_matches_a_loop():
    task = _task()
    pooled = task.mean_pooled()
    for i in (0, 17, 119):
        assert torch.allclose(pooled[i], task.token_acts[task.offsets[i] : task.offsets[i + 1]].float().mean(0), atol=1e-6)


def test_the_bfloat16_encoder_pools_exactly_what_sae_encode_under_autocast_gives(monkeypatch):
    # the probing encoder inlines sae.encode under bfloat16 autocast (for speed): the same numbers, bit for bit
    task = _task()
    generator = torch.Generator().manual_seed(3)
    saes = [SparseAutoencoder(16, 32) for _ in range(2)]
    for sae in saes:
        sae.initialise(generator, data_mean=task.token_acts.float().mean(0))
        with torch.no_grad():
            sae.b_enc.uniform_(-0.5, 0.5, generator=generator)

    def autocast_encode(sae):
        def encode(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return sae.encode(x)

        return encode

    expected = task.mean_pooled_many([autocast_encode(sae) for sae in saes])
    data = ProbingData([task], ProbingSettings(tasks=("colours",), ks=(1, 2)))
    seen = []
    original = TaskData.mean_pooled_many

    def recording(self, encoders, batch_tokens=16384):
        pooled = original(self, encoders, batch_tokens)
        seen.extend(pooled)
        return pooled

    monkeypatch.setattr(TaskData, "mean_pooled_many", recording)
    evaluate_sparse_probing_many(saes, data, autocast=True)
    assert len(seen) == 2
    for got, want in zip(seen, expected, strict=True):
        assert torch.equal(got, want)


# each known-answer case in float32 and with the study's bfloat16 encoder, so that this machine's bf16 kernel runs it
PRECISIONS = pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16"])


@PRECISIONS
def test_class_latents_are_selected_and_separate_perfectly(autocast):
    task = _task()
    data = ProbingData([task], ProbingSettings(tasks=("colours",), ks=(1, 2)))
    sae = SparseAutoencoder(16, 32)  # latents 0..15 read dims 0..15, latents 16..31 never fire
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:, :16] = torch.eye(16)
        sae.W_dec.copy_(torch.eye(16).repeat(2, 1))
        sae.b_enc.copy_(torch.cat([torch.full((16,), -1.0), torch.full((16,), -100.0)]))
        sae.b_dec.zero_()
    summary, table = evaluate_sparse_probing(sae, data, autocast=autocast)
    assert summary["sae_top_1_accuracy"] == 1.0
    assert [row["top_latents"][0] for _, row in table.iterrows()] == [CLASSES.index(c) for c in sorted(CLASSES)]
    baseline = compute_llm_baseline(data)
    assert baseline["llm_top_1_accuracy"] == 1.0 and baseline["llm_all_dims_accuracy"] == 1.0


@PRECISIONS
def test_an_uninformative_sae_is_near_chance(autocast):
    task = _task(seed=3)
    data = ProbingData([task], ProbingSettings(tasks=("colours",), ks=(1,)))
    sae = SparseAutoencoder(16, 8)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[5:13, :] = torch.eye(8)  # reads only the noise dimensions
        sae.W_dec.copy_(torch.eye(16)[5:13])
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    summary, table = evaluate_sparse_probing(sae, data, autocast=autocast)
    assert summary["sae_top_1_accuracy"] < 0.8
    assert isinstance(data.tasks[0].binary_tasks[0], BinaryTask)
    # each binary task's per-example record is its accuracy, over its own test set
    for (_, row), binary in zip(table.iterrows(), data.tasks[0].binary_tasks, strict=True):
        assert len(row["top_1_correct"]) == len(binary.test) and np.mean(row["top_1_correct"]) == row["top_1_accuracy"]
    assert 0 < np.mean([np.mean(c) for c in table["top_1_correct"]]) == pytest.approx(summary["sae_top_1_accuracy"])


def test_the_default_study_scores_each_binary_task_on_at_least_100_test_texts(repo_root):
    """Accuracy on n test texts moves in steps of 1/n: the default study's settings give every binary
    task (each class against as many others) at least 100, steps of at most 0.01."""
    from taulib.config import discover_parameter_files, load_run_config
    from taulib.corpus.probing_tasks import PROBING_TASKS
    from taulib.metrics.probing.family import Probing
    from taulib.metrics.probing.metric import stratified_test_mask

    settings = Probing().settings(load_run_config(discover_parameter_files(repo_root / "parameters")[0]))
    for task in settings.tasks:
        labels = [f"class{c}" for c in range(PROBING_TASKS[task].n_classes) for _ in range(settings.examples_per_class)]
        is_test = stratified_test_mask(labels, settings.test_fraction, settings.seed)
        sizes = [len(binary.test) for binary in _binary_tasks(task, labels, is_test, settings.seed)]
        assert min(sizes) >= 100, (task, sizes)
