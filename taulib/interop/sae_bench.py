"""Running SAE Bench 0.6.0's own absorption and core code on taulib's model, SAE and data.

Used by the cross-check tests and the absorption speed benchmark (needs the `saebench` extra, see
docs/metrics.md). Nothing here is used by the study itself.

- The model: a TransformerLens HookedTransformer built from the same transformers model object
  (SAE Bench's code expects one), whose `run_with_cache` stops after the requested block.
- Absorption: taulib's vocabulary, prompts, residuals and ground-truth probe are written in SAE
  Bench's probe-folder layout, so its k-sparse probing and absorption experiment run on exactly
  these; its absorption calculator reads the model on the same absorption prompts.
- Core: its `get_recons_loss` and `get_sparsity_and_variance_metrics` on the same token batches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from taulib.activations.models import LoadedModel
from taulib.metrics.absorption.metric import LETTERS, AbsorptionData, first_letter_answer

SAE_BENCH_MODEL_NAME = "google/gemma-3-270m"  # the TransformerLens name of the embedded model


def hooked_transformer(loaded: LoadedModel, model_name: str = SAE_BENCH_MODEL_NAME) -> Any:
    """A HookedTransformer over the same weights; a single resid_post request stops after its block."""
    from transformer_lens import HookedTransformer

    if hasattr(loaded.model.config, "quantization_config"):
        delattr(loaded.model.config, "quantization_config")  # TransformerLens refuses "quantized" checkpoints
    model = HookedTransformer.from_pretrained_no_processing(model_name, hf_model=loaded.model, tokenizer=loaded.tokenizer, device="cpu", dtype=torch.float32)
    model.eval()
    original = model.run_with_cache

    def run_with_cache(*args: Any, **kwargs: Any) -> Any:
        names = kwargs.get("names_filter")
        if "stop_at_layer" not in kwargs and isinstance(names, list | tuple) and len(names) == 1:
            match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", names[0])
            if match:  # the later blocks cannot change this hook's value
                kwargs["stop_at_layer"] = int(match.group(1)) + 1
        return original(*args, **kwargs)

    model.run_with_cache = run_with_cache
    return model


def write_probe_folder(data: AbsorptionData, probes_dir: Path, model_name: str, layer: int) -> Path:
    """taulib's absorption data in SAE Bench's layout: probe.pth, data.npz, train_df.csv, test_df.csv."""
    from sae_bench.evals.absorption.probing import LinearProbe

    folder = Path(probes_dir) / model_name / f"layer_{layer}"
    folder.mkdir(parents=True, exist_ok=True)
    probe = LinearProbe(data.probe_weight.shape[1], num_outputs=len(LETTERS))
    with torch.no_grad():
        probe.fc.weight.copy_(data.probe_weight)
        probe.fc.bias.copy_(data.probe_bias)
    torch.save(probe, folder / "probe.pth")
    np.savez(
        folder / "data.npz",
        X_train=data.train_acts.numpy(),
        X_test=data.test_acts.numpy(),
        y_train=data.train_labels.numpy(),
        y_test=data.test_labels.numpy(),
    )
    hook = f"blocks.{layer}.hook_resid_post"
    for split, words, prompts, labels in (
        ("train", data.train_words, data.train_prompts, data.train_labels),
        ("test", data.test_words, data.test_prompts, data.test_labels),
    ):
        frame = pd.DataFrame(
            {"prompt": prompts, "HOOK_POINT": hook, "answer": [first_letter_answer(w) for w in words], "answer_class": labels.numpy(), "token": words}
        )
        frame.index.name = "index"
        frame.to_csv(folder / f"{split}_df.csv", index=True)
    return folder


def run_sae_bench_absorption(
    model: Any, sae: Any, data: AbsorptionData, layer: int, workdir: Path, llm_batch_size: int = 32
) -> tuple[dict[str, float], pd.DataFrame]:
    """SAE Bench's k-sparse probing, absorption experiment and aggregation (as in its run_eval)."""
    from sae_bench.evals.absorption import feature_absorption_calculator as calculator_module
    from sae_bench.evals.absorption.feature_absorption import run_feature_absortion_experiment
    from sae_bench.evals.absorption.k_sparse_probing import run_k_sparse_probing_experiment
    from sae_bench.evals.absorption.main import _aggregate_results_df
    from sae_bench.evals.absorption.prompting import SpellingPrompt

    workdir = Path(workdir)
    probes_dir, sparse_dir, absorption_dir = workdir / "probes", workdir / "k_sparse_probing", workdir / "feature_absorption"
    model_name = model.cfg.model_name
    write_probe_folder(data, probes_dir, model_name, layer)
    settings = data.settings
    common = {"model": model, "sae": sae, "layer": layer, "sae_name": "taulib", "max_k_value": settings.max_k, "prompt_template": settings.prompt_template}
    torch.manual_seed(settings.seed)  # the L1 probe's random stream, as taulib's (see train_linear_probe)
    metrics_df = run_k_sparse_probing_experiment(
        **common,
        prompt_token_pos=settings.word_position,
        device="cpu",
        experiment_dir=sparse_dir,
        probes_dir=probes_dir,
        f1_jump_threshold=settings.f1_jump_threshold,
        k_sparse_probe_l1_decay=settings.k_sparse_l1_decay,
        k_sparse_probe_batch_size=settings.k_sparse_batch_size,
        k_sparse_probe_num_epochs=settings.k_sparse_epochs,
        precalc_k_sparse_probe_sae_acts=True,
        verbose=False,
    )
    # the absorption prompts: taulib's, not a fresh random draw, so both read the same residuals
    prompt_of = {}
    for word, prompt in zip(data.test_words, data.absorption_prompts, strict=True):
        spelled = SpellingPrompt(base=prompt, answer=first_letter_answer(word), word=word)
        prompt_of[word] = spelled
        prompt_of[model.tokenizer.convert_tokens_to_string([word])] = spelled
    original_build = calculator_module.FeatureAbsorptionCalculator._build_prompts
    calculator_module.FeatureAbsorptionCalculator._build_prompts = lambda self, words: [prompt_of[w] for w in words]
    try:
        raw = run_feature_absortion_experiment(
            **common,
            prompt_token_pos=settings.word_position,
            device="cpu",
            experiment_dir=absorption_dir,
            sparse_probing_experiment_dir=sparse_dir,
            probes_dir=probes_dir,
            feature_split_f1_jump_threshold=settings.f1_jump_threshold,
            batch_size=llm_batch_size,
        )
    finally:
        calculator_module.FeatureAbsorptionCalculator._build_prompts = original_build
    aggregated = _aggregate_results_df(raw)
    kept = set(metrics_df.loc[metrics_df["f1_probe"] > settings.min_probe_f1, "letter"])
    aggregated = aggregated[aggregated["letter"].isin(kept)]
    summary = {
        "absorption_fraction": float(aggregated["mean_absorption_fraction"].mean()),
        "full_absorption_rate": float(aggregated["full_absorption_rate"].mean()),
        "mean_split_latents": float(aggregated["num_split_feats"].mean()),
        "k1_f1": float(metrics_df.loc[metrics_df["letter"].isin(kept), "f1_sparse_sae_1"].mean()),
        "letters_evaluated": len(aggregated),
    }
    return summary, aggregated


class _TokenBatches:
    """The one method of SAELens's ActivationsStore that SAE Bench's core metrics call."""

    def __init__(self, sequences: torch.Tensor) -> None:
        self.sequences, self.position = sequences, 0

    def get_batch_tokens(self, batch_size: int) -> torch.Tensor:
        batch = self.sequences[self.position : self.position + batch_size]
        self.position += batch_size
        return batch


def run_sae_bench_core(model: Any, sae: Any, sequences: torch.Tensor, bos_token_id: int, batch_size: int = 2) -> dict[str, float]:
    """SAE Bench's reconstruction and downstream metrics on `sequences`, BOS excluded as in taulib."""
    from sae_bench.evals.core.main import get_downstream_reconstruction_metrics, get_sparsity_and_variance_metrics

    n_batches = -(-len(sequences) // batch_size)
    ignore = {bos_token_id}
    downstream = get_downstream_reconstruction_metrics(
        sae,
        model,
        _TokenBatches(sequences),
        compute_kl=True,
        compute_ce_loss=True,
        n_batches=n_batches,
        eval_batch_size_prompts=batch_size,
        ignore_tokens=ignore,
        exclude_special_tokens_from_reconstruction=True,
    )
    sparsity, _ = get_sparsity_and_variance_metrics(
        sae,
        model,
        _TokenBatches(sequences),
        n_batches=n_batches,
        compute_l2_norms=False,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        eval_batch_size_prompts=batch_size,
        model_kwargs={},
        ignore_tokens=ignore,
    )
    return {**downstream, **sparsity}
