"""The downstream family's work: CE loss and KL with the reconstruction spliced into the language model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.models import load_language_model
from taulib.corpus import iter_documents, token_sequences
from taulib.corpus.stream import sequence_documents, stream_documents
from taulib.metrics.downstream.metric import SplicedModel, SpliceReference, downstream_metrics, splice_reference
from taulib.metrics.downstream.settings import DECLARATION
from taulib.metrics.family import Chunk, Costs, Family, MemoryPart, RunInputs
from taulib.progress import progress_bar

if TYPE_CHECKING:
    from taulib.activations.models import LoadedModel
    from taulib.config import RunConfig
    from taulib.sae import SparseAutoencoder

CE_SEQUENCES_FILE, CE_DOCUMENTS_FILE, CE_REFERENCE_FILE = "ce_sequences.safetensors", "ce_documents.safetensors", "ce_reference.safetensors"


class Downstream(Family):
    declaration = DECLARATION

    def data_key(self, config: RunConfig) -> dict[str, Any]:
        return {"ce_sequences": self.parameters(config).sequences_needed()}

    def prepared_files(self, config: RunConfig) -> tuple[str, ...]:
        return (CE_SEQUENCES_FILE, CE_DOCUMENTS_FILE, CE_REFERENCE_FILE)

    def prepare(self, config: RunConfig, loaded: LoadedModel, folder: Path, show_progress: bool, inputs_key: dict[str, Any]) -> None:
        if not (folder / CE_SEQUENCES_FILE).is_file():
            count, context_length = self.parameters(config).sequences_needed(), config.activations.context_length
            cap = config.activations.max_document_tokens
            stream = token_sequences(iter_documents("heldout", seed=0), loaded.tokenizer, context_length, count, max_document_tokens=cap)
            with atomic.atomic_path(folder / CE_SEQUENCES_FILE) as tmp:
                save_file({"input_ids": torch.stack(list(stream))}, str(tmp))
        self.reference(config, SplicedModel(loaded, config.model.autocast), folder, show_progress)

    def documents(self, config: RunConfig, tokenizer: Any, folder: Path) -> torch.Tensor:
        """Each CE position's document, the unit the text's sampling error is bootstrapped in: tokenised once (inputs
        prepared before it get it here)."""
        path = folder / CE_DOCUMENTS_FILE
        if not path.is_file():
            count, context_length = self.parameters(config).sequences_needed(), config.activations.context_length
            cap = config.activations.max_document_tokens
            stream = stream_documents(iter_documents("heldout", seed=0), tokenizer, count * (context_length - 1), max_document_tokens=cap)
            with atomic.atomic_path(path) as tmp:
                save_file({"documents": torch.from_numpy(sequence_documents(stream, context_length, count))}, str(tmp))
        return load_file(str(path))["documents"]

    def reference(self, config: RunConfig, spliced: Any, folder: Path, show_progress: bool) -> Any:
        """The CE sequences' residuals at the hooked layer, clean and zero-ablated losses (by document) and KL's
        share of the clean distribution: computed once, then read (computed again where it was kept without the
        sequences' documents)."""
        path = folder / CE_REFERENCE_FILE
        documents = self.documents(config, spliced.loaded.tokenizer, folder)
        if path.is_file() and (kept := SpliceReference.load(path)).documents is not None and torch.equal(kept.documents, documents):
            return kept
        sequences = load_file(str(folder / CE_SEQUENCES_FILE))["input_ids"]
        bar = progress_bar(total=len(sequences), desc="CE/KL reference (clean, zero-ablated)", unit="seq", disable=not show_progress)
        reference = splice_reference(spliced, sequences, self.parameters(config).batch_size, progress=bar.update, documents=documents)
        bar.close()
        reference.save(path)
        return reference

    def prepare_seconds(self, costs: Costs, config: RunConfig) -> float:
        # the CE sequences' residuals, then their clean and zero-ablated later blocks
        tokens = self.parameters(config).sequences_needed() * config.activations.context_length
        return tokens * (costs.model(config, "truncated_per_token") + 2 * costs.model(config, "after_layer_per_token"))

    def load(self, run: RunInputs) -> Any:
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
        p, steps, final = self.parameters(config), chunk.steps, chunk.final_step
        results: dict[int, Any] = {}
        if p.sequences:
            first = reference.rows(0, p.sequences)
            results = dict(zip(steps, downstream_metrics(spliced, first.input_ids, saes, p.batch_size, reference=first), strict=True))
        extra = p.sequences_needed() - p.sequences
        if extra and final in steps:
            rest = reference.rows(p.sequences, p.sequences + extra)
            (more,) = downstream_metrics(spliced, rest.input_ids, [saes[steps.index(final)]], p.batch_size, reference=rest)
            results[final] = results[final].per_sequence.concat(more.per_sequence).metrics() if final in results else more
        return results

    def checkpoint_seconds(self, costs: Costs, config: RunConfig, d_model: int) -> float:
        return self.parameters(config).sequences * config.activations.context_length * costs.model(config, "after_layer_per_token")

    def run_seconds(self, costs: Costs, config: RunConfig, d_model: int, checkpoints: int) -> float:
        # only the blocks after the hooked one run, spliced, from the residual cached with the inputs (with the
        # clean distribution's part of KL: taulib.metrics.downstream.metric): every checkpoint on ce_sequences, the
        # final one on its further sequences; the model is loaded once per run
        p = self.parameters(config)
        further = (p.sequences_needed() - p.sequences) * config.activations.context_length * costs.model(config, "after_layer_per_token")
        return costs.model(config, "load") + checkpoints * self.checkpoint_seconds(costs, config, d_model) + further

    def evaluation_memory(self, config: RunConfig, d_model: int, vocab_size: int) -> dict[str, MemoryPart]:
        # clean and spliced logits, their log-softmax and probabilities: vocabulary-wide, per sequence of the batch
        p = self.parameters(config)
        logits = min(p.batch_size, p.sequences_needed()) * config.activations.context_length * vocab_size * 4 * 4
        return {"CE/KL logits": MemoryPart(logits, "lower evaluation.downstream.batch_size", beside_model=True)}


FAMILY = Downstream()
