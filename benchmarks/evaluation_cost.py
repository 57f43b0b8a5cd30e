"""Per-checkpoint evaluation cost, by metric family, on a trained run of the default study.

    .venv/bin/python benchmarks/evaluation_cost.py [run folder] [outputs]

Needs the run trained and the evaluation inputs prepared (`make study`, or `python -m taulib
extract`). Times each family on the run's final SAE (best of 3; the CE/KL line is the marginal
cost of one more checkpoint in a pass, the clean and zero-ablated forwards being shared).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from taulib import atomic
from taulib.activations.cache import activation_spec, cache_folder, load_cache
from taulib.activations.models import load_language_model
from taulib.config import RunConfig
from taulib.metrics.absorption import AbsorptionData, evaluate_absorption
from taulib.metrics.core import reconstruction_metrics
from taulib.metrics.downstream import SplicedModel, downstream_metrics
from taulib.metrics.evaluate import absorption_settings, evaluation_data_folder, probing_settings
from taulib.metrics.orthogonality import orthogonality_metrics
from taulib.metrics.probing import ProbingData, evaluate_sparse_probing
from taulib.sae import in_raw_units, load_sae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of  # noqa: E402

REPEATS = 3


def main(run_dir: Path, outputs: Path) -> None:
    torch.set_num_threads(2)
    config = RunConfig.model_validate(atomic.read_json(run_dir / "config.json")["config"])
    sae, metadata = load_sae(run_dir / "final")
    raw = in_raw_units(sae, metadata)
    folder = evaluation_data_folder(outputs, config, metadata.layer)
    spec = activation_spec(config, "heldout", metadata.layer)
    heldout = load_cache(cache_folder(outputs, spec), spec).activations[: config.evaluation.core_tokens].float()
    absorption = AbsorptionData.load(folder, absorption_settings(config))
    probing = ProbingData.load(folder, probing_settings(config))
    sequences = load_file(str(folder / "ce_sequences.safetensors"))["input_ids"]
    spliced = SplicedModel(load_language_model(config.model.model_copy(update={"layer": metadata.layer})), config.model.autocast)
    downstream_metrics(spliced, sequences[:1], [raw], 1)  # warm-up
    one = best_of(lambda: downstream_metrics(spliced, sequences, [raw], config.evaluation.ce_batch_size), 2)
    three = best_of(lambda: downstream_metrics(spliced, sequences, [raw, raw, raw], config.evaluation.ce_batch_size), 2)
    marginal = (three - one) / 2
    costs = {
        f"core ({len(heldout)} held-out tokens)": best_of(lambda: reconstruction_metrics(raw, heldout), REPEATS),
        "orthogonality": best_of(lambda: orthogonality_metrics(raw), REPEATS),
        f"absorption ({len(absorption.train_words) + len(absorption.test_words)} words)": best_of(lambda: evaluate_absorption(raw, absorption), REPEATS),
        f"sparse probing ({sum(len(t.token_acts) for t in probing.tasks)} tokens, {sum(len(t.binary_tasks) for t in probing.tasks)} binary tasks)": best_of(
            lambda: evaluate_sparse_probing(raw, probing, autocast=config.training.compute_dtype == "bfloat16"), REPEATS
        ),
        f"CE/KL, one more checkpoint ({sequences.numel()} tokens)": marginal,
    }
    print(
        f"{run_dir.name}: {metadata.d_sae} latents; the shared clean + zero-ablated CE/KL forwards cost {one - marginal:.1f} s per pass (up to 8 checkpoints)"
    )
    for family, seconds in costs.items():
        print(f"  {family:70s} {seconds:6.2f} s")
    print(f"  {'total per checkpoint':70s} {sum(costs.values()):6.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs/cosine_0.3_to_0.05_tightened"), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("outputs"))
