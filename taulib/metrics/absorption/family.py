"""The absorption family's work: SAE Bench's first-letter feature absorption on prompts prepared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from taulib.activations.extraction import ResidualReader
from taulib.metrics.absorption.metric import AbsorptionData, AbsorptionSettings, evaluate_absorption_many, prepare_absorption_data
from taulib.metrics.absorption.settings import DECLARATION
from taulib.metrics.family import DOWNSTREAM_CHUNK, Chunk, Costs, Family, RunInputs, timing_sae
from taulib.progress import progress_bar
from taulib.timing import timed

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

ABSORPTION_WORDS_CAP = 260  # the absorption metric is timed on at most this many words, then scaled
MANIFEST = "absorption_manifest.json"


class Absorption(Family):
    declaration = DECLARATION

    def settings(self, config: RunConfig) -> AbsorptionSettings:
        """The metric's full settings: the parameters, with SAE Bench's fixed choices."""
        parameters = self.parameters(config)
        return AbsorptionSettings(vocab_size=parameters.vocab_size, seed=parameters.seed)

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"absorption": self.settings(config).data_key()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return (MANIFEST,)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool, inputs_key: dict[str, Any]) -> None:
        # minutes of forward passes on a CPU: a bar with an ETA, once per model and layer
        bar = progress_bar(desc="absorption prompts", unit="tok", unit_scale=True, disable=not show_progress)
        reader = ResidualReader(loaded, config.model.autocast)
        prepare_absorption_data(reader, loaded.tokenizer, self.settings(config), progress=bar).save(folder, {"key": inputs_key})
        bar.close()

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        # train and test prompts, and a second prompt per test word, through the forward up to the layer
        tokens = self.parameters(config).vocab_size * 1.2 * costs.model(config, "absorption_prompt_tokens")
        return tokens * costs.model(config, "truncated_per_token")

    def load(self, run: RunInputs) -> Any:
        return AbsorptionData.load(run.data_folder, self.settings(run.config))

    def evaluate(self, saes: list[SparseAutoencoder], state: Any, run: RunInputs, chunk: Chunk) -> None:
        every = self.parameters(run.config).checkpoints == "all"
        chosen = [index for index, step in enumerate(chunk.steps) if every or step == chunk.final_step]
        if not chosen:
            return  # absorption.checkpoints "final", and the final checkpoint is in another chunk
        # the chunk's k-sparse probes are trained together (taulib.metrics.absorption.metric.train_linear_probes)
        for index, (metrics, letters) in zip(chosen, evaluate_absorption_many([saes[index] for index in chosen], state), strict=True):
            chunk.scalars[index] |= metrics.as_dict()
            chunk.details[index]["absorption_letters"] = letters.to_dict(orient="records")

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        words, width = self.parameters(config).vocab_size, config.sae.width
        return words * costs.measured(f"absorption_chunk|d{d_model}|w{width}", lambda: absorption_seconds_per_word(d_model, width, words))

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        evaluated = checkpoints if self.parameters(config).checkpoints == "all" else min(checkpoints, 1)
        return evaluated * self.checkpoint_seconds(costs, config, d_model)

    def plan_problems(self, config: RunConfig, source: str) -> list[str]:
        if config.sae.width >= AbsorptionSettings.max_k:
            return []
        return [
            f"{source}: fields 'evaluation.families' (absorption) and 'sae.width' ({config.sae.width}): the absorption metric's k-sparse "
            f"probes select up to {AbsorptionSettings.max_k} latents per letter; set sae.width >= {AbsorptionSettings.max_k} or leave absorption out of the families"
        ]


def absorption_seconds_per_word(d_model: int, width: int, words: int) -> float:
    """The absorption metric of one checkpoint (k-sparse probes, absorption per letter) on random residuals,
    per word, evaluated in a chunk of checkpoints as the evaluation does."""
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


FAMILY = Absorption()
