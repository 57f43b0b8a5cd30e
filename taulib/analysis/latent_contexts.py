"""What each latent fires on, at every checkpoint of a run: top-activating held-out contexts,
activation histogram and density, stored once per run so that a slider over checkpoints is instant.

Which latent at an earlier checkpoint is "the same" as a final latent? The one its final decoder
direction is matched to (`taulib.metrics.latent_formation.match_latents`, the matching
`run_formation` measures formation with), not the one with the same index: the matched cosine the
browser plots is that pair's cosine, so the contexts beside it must be that pair's contexts, and a
direction that the optimiser moved from one latent slot to another is followed. The store keeps
every checkpoint's facts under that checkpoint's own latent indices and, beside them, the matching
(final latent → partner at each checkpoint), so `follow="index"` (the latent's own parameters over
training) reads the same store.

Layout, under `<run>/latent_contexts/<key>/` (key: the run's configuration, its checkpoints, the
held-out cache and these settings; a change of any of them builds a new store):
  manifest.json        written last: settings, steps, tokens seen, formation steps; a store without it is incomplete
  tokens.npz           the held-out token ids read (the windows of context are slices of them)
  vocabulary.json      the text of every token id that occurs there (no tokenizer needed to show a store)
  matching.npz         partner index and matched cosine of every final latent at every checkpoint
  step_<step>.npz      per checkpoint, per latent: the top-k held-out positions and their activations,
                       the latent's activation over a window of context around each, its histogram
                       of positive activations (fixed log10 bins) and how many tokens it fires on
Every file is written atomically; a killed build keeps the checkpoints it finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from taulib import atomic
from taulib.activations.cache import ActivationSet, activation_spec, cache_folder, load_cache
from taulib.analysis.latent_formation import FormationSettings, run_formation
from taulib.analysis.study_data import Run, StudyData
from taulib.config import ModelConfig
from taulib.metrics.latent_formation import MatchMethod, formation_steps, match_latents
from taulib.progress import progress_bar
from taulib.sae import SparseAutoencoder, in_raw_units, load_sae

STORE_FORMAT = "taulib-latent-contexts-v1"
Follow = Literal["matched", "index"]


class ContextSettings(BaseModel):
    """What the context store keeps of each latent at each checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_k: int = Field(10, ge=1, le=100, description="top-activating held-out positions kept per latent and checkpoint")
    before: int = Field(10, ge=0, le=64, description="context tokens shown before each top position")
    after: int = Field(3, ge=0, le=64, description="context tokens shown after each top position")
    max_tokens: int | None = Field(None, gt=0, description="held-out tokens read (default: the whole held-out cache)")
    histogram_log10_min: float = Field(-2.0, description="lowest bin edge of the activation histogram, log10 (smaller positive values go in the first bin)")
    histogram_log10_max: float = Field(3.0, description="highest bin edge, log10 (larger values counted in the last bin)")
    histogram_bins: int = Field(50, ge=2, le=1000, description="log-spaced bins of the activation histogram, the same at every checkpoint")
    chunk_tokens: int = Field(4096, ge=1, description="held-out tokens encoded at once (memory: chunk × width floats)")
    method: MatchMethod = Field("hungarian", description="how final latents are matched to each checkpoint (as in FormationSettings)")

    @model_validator(mode="after")
    def _edges_increase(self) -> ContextSettings:
        if self.histogram_log10_max <= self.histogram_log10_min:
            raise ValueError(f"histogram_log10_max ({self.histogram_log10_max}) must exceed histogram_log10_min ({self.histogram_log10_min})")
        return self

    @property
    def window(self) -> int:
        return self.before + 1 + self.after

    def histogram_edges(self) -> np.ndarray:
        return np.logspace(self.histogram_log10_min, self.histogram_log10_max, self.histogram_bins + 1)


class ContextStoreError(RuntimeError):
    """A run whose context store cannot be built (no checkpoints, no held-out cache, mismatched shapes)."""


# ----------------------------------------------------------------------------- one checkpoint


@torch.no_grad()
def checkpoint_contexts(
    sae: SparseAutoencoder, activations: ActivationSet | torch.Tensor, sequence_length: int, settings: ContextSettings, n_tokens: int | None = None
) -> dict[str, np.ndarray]:
    """One SAE (in raw units) over held-out activation rows, rows grouped in sequences of
    `sequence_length` tokens: per latent, the top-k rows and values, the latent's activation over a
    window of context around each (NaN outside the row's sequence), its histogram of positive
    activations and its firing count."""
    rows = activations.activations if isinstance(activations, ActivationSet) else activations
    n = min(int(rows.shape[0]), n_tokens or int(rows.shape[0]))
    if int(rows.shape[1]) != sae.d_in:
        raise ContextStoreError(f"activations of width {rows.shape[1]} for an SAE reading {sae.d_in}")
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be positive, got {sequence_length}")
    width, k, bins = sae.d_sae, min(settings.top_k, n), settings.histogram_bins
    top_values = torch.full((k, width), -1.0)
    top_rows = torch.zeros((k, width), dtype=torch.long)
    histogram = torch.zeros(width * bins, dtype=torch.long)
    firing = torch.zeros(width, dtype=torch.long)
    step = (settings.histogram_log10_max - settings.histogram_log10_min) / bins
    for start in range(0, n, settings.chunk_tokens):
        stop = min(start + settings.chunk_tokens, n)
        f = sae.encode(rows[start:stop].float())
        values, where = torch.topk(f, min(k, stop - start), dim=0)
        merged_values = torch.cat([top_values, values])
        merged_rows = torch.cat([top_rows, where + start])
        # a stable sort keeps the earlier row first among equal activations
        order = torch.sort(merged_values, dim=0, descending=True, stable=True).indices[:k]
        top_values, top_rows = merged_values.gather(0, order), merged_rows.gather(0, order)
        token, latent = torch.nonzero(f > 0, as_tuple=True)
        positive = f[token, latent]
        firing += torch.bincount(latent, minlength=width)
        bin_of = ((torch.log10(positive) - settings.histogram_log10_min) / step).floor().clamp(0, bins - 1).long()
        histogram += torch.bincount(latent * bins + bin_of, minlength=width * bins)
    fired = top_values > 0
    top_rows = torch.where(fired, top_rows, -1).T.contiguous()  # (width, k): -1 where the latent fired on fewer than k tokens
    top_values = torch.where(fired, top_values, 0.0).T.contiguous()
    windows = window_activations(sae, rows, top_rows, sequence_length, settings, n)
    return {
        "top_rows": top_rows.numpy().astype(np.int32),
        "top_values": top_values.numpy().astype(np.float32),
        "window_values": windows.astype(np.float16),
        "histogram": histogram.view(width, bins).numpy().astype(np.int32),
        "firing": firing.numpy().astype(np.int64),
    }


def window_rows(top_rows: np.ndarray | torch.Tensor, sequence_length: int, before: int, after: int, n_tokens: int) -> torch.Tensor:
    """The held-out row of every window position around every top row (…, before + 1 + after); -1
    where the position falls outside the top row's sequence (or the rows read) or there is no top row."""
    top = torch.as_tensor(np.asarray(top_rows), dtype=torch.long)
    offsets = torch.arange(-before, after + 1)
    positions = top.unsqueeze(-1) + offsets
    same_sequence = (positions >= 0) & (positions < n_tokens) & (positions // sequence_length == (top // sequence_length).unsqueeze(-1))
    return torch.where(same_sequence & (top >= 0).unsqueeze(-1), positions, -1)


@torch.no_grad()
def window_activations(sae: SparseAutoencoder, rows: Any, top_rows: torch.Tensor, sequence_length: int, settings: ContextSettings, n: int) -> np.ndarray:
    """Each latent's own activation at the positions of its windows (NaN where there is no position)."""
    positions = window_rows(top_rows, sequence_length, settings.before, settings.after, n)  # (width, k, window)
    out = torch.full(positions.shape, float("nan"))
    latents_per_chunk = max(1, settings.chunk_tokens // max(1, positions.shape[1] * positions.shape[2]))
    for first in range(0, sae.d_sae, latents_per_chunk):
        latents = torch.arange(first, min(first + latents_per_chunk, sae.d_sae))
        where = positions[latents]
        valid = where >= 0
        x = rows[where.clamp(min=0).reshape(-1)].float().view(*where.shape, -1)  # (latents, k, window, d)
        # the latent's own pre-activation, as sae.encode computes it, for its column only
        pre = torch.einsum("lkwd,dl->lkw", x - sae.b_dec, sae.W_enc[:, latents]) + sae.b_enc[latents].view(-1, 1, 1)
        out[latents] = torch.where(valid, torch.relu(pre), float("nan"))
    return out.numpy()


# ----------------------------------------------------------------------------- the store of a run


def _checkpoint_folder(run: Run, step: int) -> Path:
    return run.run_dir / "checkpoints" / f"step_{step:07d}"


def _heldout(run: Run, outputs_root: Path, layer: int) -> tuple[ActivationSet, Any]:
    spec = activation_spec(run.config, "heldout", layer)
    folder = cache_folder(outputs_root, spec)
    return load_cache(folder, spec, verify_checksums=False), spec


def store_folder(run: Run, settings: ContextSettings, heldout_key: str) -> Path:
    payload = {"format": STORE_FORMAT, "run": run.config.fingerprint(), "steps": sorted(run.steps), "heldout": heldout_key, "settings": settings.model_dump()}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return run.run_dir / "latent_contexts" / key


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def token_strings_from_tokenizer(tokenizer: Any) -> Callable[[list[int]], list[str]]:
    """Each token id's own text, as the tokenizer decodes it alone (leading spaces kept)."""
    return lambda ids: tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)


def synthetic_token_strings(ids: list[int]) -> list[str]:
    """The synthetic model's "token": the sample's largest firing true feature (taulib.activations.synthetic)."""
    return ["no feature" if i < 0 else f"feature {i}" for i in ids]


def model_token_strings(run: Run) -> Callable[[list[int]], list[str]]:
    """The run's tokenizer (only the tokenizer: no model weights are loaded); the synthetic model's feature names."""
    return token_strings_of(run.config.model)


def token_strings_of(model: ModelConfig) -> Callable[[list[int]], list[str]]:
    """The model's tokenizer (only the tokenizer: no weights are loaded); the synthetic model's feature names."""
    from taulib.activations.models import load_tokenizer

    if model.is_synthetic:
        return synthetic_token_strings
    return token_strings_from_tokenizer(load_tokenizer(model))


def build_contexts(
    run: Run,
    outputs_root: str | Path,
    settings: ContextSettings | None = None,
    token_strings: Callable[[list[int]], list[str]] | None = None,
    formation: FormationSettings | None = None,
    show_progress: bool = True,
) -> Path:
    """The run's context store (built if missing or made for another configuration); its folder.

    `token_strings` maps token ids to their text (default: the run's tokenizer)."""
    settings = settings or ContextSettings()
    formation = formation or FormationSettings(method=settings.method)
    if formation.method != settings.method:
        raise ValueError(f"the store matches latents with {settings.method!r} but formation was measured with {formation.method!r}")
    steps = sorted(run.steps)
    missing = [step for step in steps if not (_checkpoint_folder(run, step) / "sae.safetensors").is_file()]
    if missing:
        raise ContextStoreError(f"{run.run_dir}: no saved SAE for checkpoint(s) {missing[:5]}; the context store needs every evaluated checkpoint")
    final_sae, final_meta = load_sae(_checkpoint_folder(run, steps[-1]))
    heldout, spec = _heldout(run, Path(outputs_root), final_meta.layer)
    folder = store_folder(run, settings, spec.key())
    if (folder / "manifest.json").is_file():
        return folder
    if heldout.d_model != final_meta.d_in:
        raise ContextStoreError(f"{run.run_dir}: held-out activations of width {heldout.d_model}, the SAE reads {final_meta.d_in}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temporaries(folder)
    n = min(heldout.n_tokens, settings.max_tokens or heldout.n_tokens)
    # the cache drops each sequence's BOS; the synthetic model's samples are independent: no context around them
    sequence_length = 1 if run.config.model.is_synthetic else spec.context_length - 1
    token_ids = heldout.token_ids[:n].numpy().astype(np.int32)
    if not (folder / "vocabulary.json").is_file():
        unique = sorted(set(token_ids.tolist()))
        strings = (token_strings or model_token_strings(run))(unique)
        atomic.write_json(folder / "vocabulary.json", dict(zip(map(str, unique), strings, strict=True)))
    _write_npz(folder / "tokens.npz", {"token_ids": token_ids})

    partners, cosines, own = [], [], []
    bar = progress_bar(total=len(steps), desc=f"latent contexts {run.name}", unit="checkpoint", disable=not show_progress)
    for step in steps:
        sae, meta = (final_sae, final_meta) if step == steps[-1] else load_sae(_checkpoint_folder(run, step))
        partner, cosine = match_latents(final_sae.W_dec, sae.W_dec, settings.method)
        partners.append(partner)
        cosines.append(cosine)
        own.append(torch.nn.functional.cosine_similarity(final_sae.W_dec.detach(), sae.W_dec.detach(), dim=1).numpy())
        path = folder / f"step_{step:07d}.npz"
        if not path.is_file():  # a killed build resumes from its last whole checkpoint
            _write_npz(path, checkpoint_contexts(in_raw_units(sae, meta), heldout, sequence_length, settings, n))
        bar.update(1)
    bar.close()
    matched = np.stack(cosines, axis=1)
    _write_npz(
        folder / "matching.npz",
        {
            "partner": np.stack(partners, axis=1).astype(np.int32),
            "matched_cosine": matched.astype(np.float32),
            "index_cosine": np.stack(own, axis=1).astype(np.float32),
        },
    )
    record = run_formation(run, formation)
    tokens = dict(zip(run.evaluation["step"].astype(int), run.evaluation["tokens"].astype(float), strict=True))
    manifest = {
        "format": STORE_FORMAT,
        "run": run.name,
        "settings": settings.model_dump(),
        "formation_threshold": formation.threshold,
        "steps": steps,
        "tokens": [tokens[step] for step in steps],
        "n_tokens": n,
        "sequence_length": sequence_length,
        "width": final_sae.d_sae,
        "heldout_cache": spec.key(),
        "formation_step": formation_steps(matched, steps, formation.threshold).tolist(),
        "alive_at_end": record["alive_at_end"] if record else [True] * final_sae.d_sae,
        "moved_from_initialisation": (matched[:, 0] < formation.threshold).tolist(),
    }
    atomic.write_json(folder / "manifest.json", manifest)
    return folder


# ----------------------------------------------------------------------------- reading a store
def latent_contexts(
    data: dict[str, np.ndarray], latent: int, token_ids: np.ndarray, vocabulary: dict[int, str], sequence_length: int, before: int, after: int
) -> list[Context]:
    """One latent's top contexts from a checkpoint's arrays (`checkpoint_contexts`), best first, each with its
    window of tokens (their text from `vocabulary`, `<id>` for an id it lacks) and the latent's activation there."""
    windows = window_rows(data["top_rows"][latent], sequence_length, before, after, len(token_ids)).numpy()
    contexts = []
    for rank, row in enumerate(data["top_rows"][latent]):
        if row < 0:
            break
        kept = windows[rank] >= 0
        contexts.append(
            Context(
                tokens=[vocabulary.get(int(token_ids[r]), f"<{int(token_ids[r])}>") for r in windows[rank][kept]],
                values=[float(v) for v in data["window_values"][latent, rank][kept]],
                centre=int(np.flatnonzero(windows[rank][kept] == row)[0]),
                value=float(data["top_values"][latent, rank]),
                row=int(row),
            )
        )
    return contexts




@dataclass(frozen=True)
class Context:
    """One top-activating held-out position with its window of context."""

    tokens: list[str]
    values: list[float]  # the latent's activation at each window token (NaN: none there)
    centre: int  # index of the top position in `tokens`
    value: float  # the activation there
    row: int  # the held-out row


@dataclass(frozen=True)
class LatentView:
    """One final latent as seen at one checkpoint."""

    latent: int  # index in the final SAE
    step: int
    shown: int  # the latent shown at this checkpoint (its matched partner, or the same index)
    matched_cosine: float  # cosine of the shown latent's decoder to the final latent's
    contexts: list[Context]
    histogram: np.ndarray  # counts of positive activations per log10 bin
    edges: np.ndarray
    density: float  # share of held-out tokens on which the shown latent fires


class LatentContexts:
    """A built store, read lazily: each checkpoint's file is loaded once and kept."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.is_file():
            raise ContextStoreError(f"{self.folder}: no complete context store here (build it with build_contexts)")
        self.manifest = atomic.read_json(manifest_path)
        if self.manifest.get("format") != STORE_FORMAT:
            raise ContextStoreError(f"{manifest_path}: not a {STORE_FORMAT} store")
        self.settings = ContextSettings(**self.manifest["settings"])
        self.steps: list[int] = self.manifest["steps"]
        self.token_ids = np.load(self.folder / "tokens.npz")["token_ids"]
        self.vocabulary = {int(i): text for i, text in atomic.read_json(self.folder / "vocabulary.json").items()}
        with np.load(self.folder / "matching.npz") as matching:
            self.partner, self.matched_cosine, self.index_cosine = matching["partner"], matching["matched_cosine"], matching["index_cosine"]
        self.formation_step = np.asarray(self.manifest["formation_step"])
        self.edges = self.settings.histogram_edges()
        self._checkpoint = lru_cache(maxsize=None)(self._load_checkpoint)

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    def _load_checkpoint(self, step: int) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"step_{step:07d}.npz") as data:
            return {name: data[name] for name in data.files}

    def preload(self) -> LatentContexts:
        """Read every checkpoint now, so that sliding never waits on the disk."""
        for step in self.steps:
            self._checkpoint(step)
        return self

    def latent(self, latent: int, step: int, follow: Follow = "matched") -> LatentView:
        if not 0 <= latent < self.width:
            raise IndexError(f"latent {latent} out of range: the final SAE has {self.width} latents")
        if step not in self.steps:
            raise KeyError(f"no checkpoint at step {step}; steps: {self.steps}")
        if follow not in ("matched", "index"):
            raise ValueError(f"follow must be 'matched' or 'index', got {follow!r}")
        column = self.steps.index(step)
        shown = int(self.partner[latent, column]) if follow == "matched" else latent
        data = self._checkpoint(step)
        contexts = latent_contexts(
            data, shown, self.token_ids, self.vocabulary, self.manifest["sequence_length"], self.settings.before, self.settings.after
        )
        final_decoder_cosine = (self.matched_cosine if follow == "matched" else self.index_cosine)[latent, column]
        return LatentView(
            latent=latent,
            step=step,
            shown=shown,
            matched_cosine=float(final_decoder_cosine),
            contexts=contexts,
            histogram=data["histogram"][shown],
            edges=self.edges,
            density=float(data["firing"][shown] / self.manifest["n_tokens"]),
        )

    def cosines(self, latent: int, follow: Follow = "matched") -> np.ndarray:
        """The final latent's decoder cosine to the latent shown at every checkpoint."""
        return (self.matched_cosine if follow == "matched" else self.index_cosine)[latent]

    def latent_lists(self, n: int = 20) -> dict[str, list[int]]:
        """Final latents worth a look: formed earliest and latest (of those alive at the end and moved
        from their initialisation), and the most active."""
        considered = np.flatnonzero(np.asarray(self.manifest["alive_at_end"], dtype=bool) & np.asarray(self.manifest["moved_from_initialisation"], dtype=bool))
        order = considered[np.argsort(self.formation_step[considered], kind="stable")]
        final = self._checkpoint(self.steps[-1])
        return {
            "earliest formed": order[:n].tolist(),
            "latest formed": order[::-1][:n].tolist(),
            "most active": np.argsort(-final["firing"], kind="stable")[:n].tolist(),
        }


def matched_across_seeds(run: Run, others: list[Run], threshold: float = 0.9, method: MatchMethod = "hungarian") -> list[int]:
    """Final latents of `arm` whose decoder direction every other seed's final SAE also has (matched
    cosine ≥ threshold), most consistent first: the features the seeds agree on."""
    final = load_sae(_checkpoint_folder(run, max(run.steps)))[0].W_dec
    worst = np.ones(final.shape[0])
    for other in others:
        worst = np.minimum(worst, match_latents(final, load_sae(_checkpoint_folder(other, max(other.steps)))[0].W_dec, method)[1])
    kept = np.flatnonzero(worst >= threshold)
    return kept[np.argsort(-worst[kept], kind="stable")].tolist()


def other_seeds(full: StudyData, run: Run) -> list[Run]:
    """The runs of a sweep that differ from `arm` only in their seed (none outside a sweep)."""
    if run.l0_target is None:
        return []
    return [other for other in full.runs if other.arm == run.arm and other.l0_target == run.l0_target and other.seed != run.seed]


def study_contexts(
    study: StudyData, outputs_root: str | Path, settings: ContextSettings | None = None, full: StudyData | None = None, n: int = 20
) -> tuple[dict[str, LatentContexts], dict[str, dict[str, list[int]]], dict[str, str]]:
    """Every run's store (built where missing), the lists of latents matched across its seeds (from
    `full`, the whole sweep), and why a run has no store (its checkpoints are not on disk)."""
    stores, lists, skipped = {}, {}, {}
    for run in study.runs:
        try:
            stores[run.name] = LatentContexts(build_contexts(run, outputs_root, settings))
        except ContextStoreError as error:
            skipped[run.name] = str(error)
            continue
        seeds = other_seeds(full, run) if full is not None else []
        if seeds and all((_checkpoint_folder(other, max(other.steps)) / "sae.safetensors").is_file() for other in seeds):
            lists[run.name] = {"matched across seeds": matched_across_seeds(run, seeds, method=stores[run.name].settings.method)[:n]}
    return stores, lists, skipped


def sizes(folder: str | Path) -> dict[str, int]:
    """Bytes on disk of a store's files, by kind."""
    folder = Path(folder)
    total = {"checkpoints": 0, "other": 0}
    for path in folder.iterdir():
        total["checkpoints" if path.name.startswith("step_") else "other"] += path.stat().st_size
    return total
