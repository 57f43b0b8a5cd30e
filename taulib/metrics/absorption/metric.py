"""SAE Bench's first-letter feature-absorption metric, with the model-side work done once per model/layer.

The procedure is SAE Bench 0.6.0's (Chanin et al., "A is for Absorption"), step for step:

1. Vocabulary: single-token alphabetic words of the tokenizer (a stratified subset here, equal
   per first letter; the full vocabulary costs hours on a CPU). 80% train, 20% test.
2. Prompts: ten in-context examples "{word} has the first letter: W", then "{word} has the first
   letter:"; the residual stream after block `layer` is read at the word's position (−6).
3. Ground truth: a 26-way one-vs-rest logistic probe on those residuals (Adam, 50 epochs).
4. Per SAE: an L1-penalised probe on the SAE latents ranks latents per letter; for k = 1..10, a
   logistic regression on the top-k latents. k grows while F1 improves by more than 0.03: the
   latents kept are the letter's "split" latents.
5. For each test word the probe gets right, on a fresh prompt: how much of the probe projection
   the split latents miss and other probe-aligned latents supply (absorption fraction), and
   whether one other latent supplies it all while the split latents are silent (full absorption).
6. Averages over letters whose probe F1 exceeds 0.6.

Steps 1–3 and the residuals of step 5's prompts do not depend on the SAE: `prepare_absorption_data`
computes them once and every checkpoint reuses them, so evaluating an SAE never runs the model.
The absorption fraction is reported under SAE Bench's current (0.6.0) definition and its older
(≤ 0.3) unthresholded one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from taulib import atomic
from taulib.activations.extraction import residuals_per_sequence
from taulib.metrics.absorption.settings import AbsorptionParameters
from taulib.metrics.logistic import fit_logistic_regressions
from taulib.sae import SparseAutoencoder

LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ASCII_LETTERS = set(LETTERS + LETTERS.upper())
EPS = 1e-8  # SAE Bench: a split latent with activation below this counts as silent

# SAE Bench 0.6.0 thresholds (feature_absorption.py)
FULL_ABSORPTION_PROBE_COS_THRESHOLD = 0.025
ABSORPTION_FRACTION_PROBE_COS_THRESHOLD = 0.1
PROBE_PROJECTION_PROPORTION_THRESHOLD = 0.4
MAX_ABSORBING_LATENTS = 3
TOP_PROJECTION_LATENTS = 10


@dataclass(frozen=True)
class AbsorptionSettings:
    vocab_size: int = AbsorptionParameters.model_fields["vocab_size"].default  # stratified subset of the alphabetic single-token words
    seed: int = AbsorptionParameters.model_fields["seed"].default
    prompt_template: str = "{word} has the first letter:"
    word_position: int = -6  # the word's token, counted from the end of the prompt
    max_icl_examples: int = 10
    train_fraction: float = 0.8
    max_k: int = 10
    f1_jump_threshold: float = 0.03
    min_probe_f1: float = 0.6
    k_sparse_l1_decay: float = 0.01
    k_sparse_epochs: int = 50
    # SAE Bench uses 4096 with its full vocabulary (~100 k words: ~1,000 Adam steps); on a subset of a
    # few thousand words that would be 50 steps, too few to move the L1 probe from its random start,
    # so the batch shrinks to keep the number of steps comparable.
    k_sparse_batch_size: int = 128
    probe_epochs: int = 50
    probe_batch_size: int = 64
    probe_lr: float = 1e-2
    probe_weight_decay: float = 1e-4

    def data_key(self) -> dict[str, Any]:
        """The settings that shape the SAE-independent data (vocabulary, prompts, probe)."""
        keys = ("vocab_size", "seed", "prompt_template", "word_position", "max_icl_examples", "train_fraction")
        keys += ("probe_epochs", "probe_batch_size", "probe_lr", "probe_weight_decay")
        return {key: getattr(self, key) for key in keys}


# ----------------------------------------------------------------------------- vocabulary and prompts
def alphabetic_tokens(tokenizer: Any) -> list[str]:
    """SAE Bench's `get_alpha_tokens`: vocabulary entries that read as letters only (one leading space allowed)."""
    words = set()
    for token in tokenizer.get_vocab():
        text = tokenizer.convert_tokens_to_string([token])
        if token.startswith("▁") and not text.startswith(" "):  # SentencePiece tokenizers drop the space
            text = " " + text
        core = text[1:] if text.startswith(" ") else text
        if core and all(ch in _ASCII_LETTERS for ch in core):
            words.add(text)
    return sorted(words)


def isolated_words(tokenizer: Any, words: list[str], settings: AbsorptionSettings) -> list[str]:
    """The words the template reads as exactly one token at `word_position` (a few merge with neighbours)."""
    lines = ["\n" + settings.prompt_template.format(word=word) for word in words]
    encoded = tokenizer(lines, add_special_tokens=False)["input_ids"]
    return [
        word
        for word, ids in zip(words, encoded, strict=True)
        if len(ids) >= -settings.word_position and tokenizer.decode([ids[settings.word_position]]) == word
    ]


def first_letter_class(word: str) -> int:
    return LETTERS.index(next(ch for ch in word if ch.isalpha()).lower())


def stratified_vocabulary(words: list[str], size: int, seed: int) -> list[str]:
    """`size` words, as equal across first letters as the vocabulary allows (letters like x run short)."""
    by_letter: dict[int, list[str]] = {}
    for word in sorted(words):
        by_letter.setdefault(first_letter_class(word), []).append(word)
    rng = random.Random(seed)
    for group in by_letter.values():
        rng.shuffle(group)
    chosen: list[str] = []
    depth = 0
    while len(chosen) < size and any(depth < len(group) for group in by_letter.values()):
        for letter in sorted(by_letter):
            if depth < len(by_letter[letter]) and len(chosen) < size:
                chosen.append(by_letter[letter][depth])
        depth += 1
    rng.shuffle(chosen)
    return chosen


def first_letter_answer(word: str) -> str:
    return " " + next(ch for ch in word.strip() if ch.isalpha()).upper()


def icl_prompt(word: str, examples: list[str], rng: random.Random, settings: AbsorptionSettings) -> str:
    """SAE Bench's `create_icl_prompt` with a separator before the first example."""
    while True:
        shown = rng.sample(examples, settings.max_icl_examples)
        if word not in shown:
            break
    lines = [settings.prompt_template.format(word=example) + first_letter_answer(example) for example in shown]
    return "\n" + "\n".join(lines) + "\n" + settings.prompt_template.format(word=word)


# ----------------------------------------------------------------------------- probes
def train_linear_probe(
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    l1_decay: float = 0.0,
    end_lr: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAE Bench's `train_multi_probe`: 26 one-vs-rest logistic probes, BCE with positive-class weights,
    Adam with an exponential lr decay to `end_lr`, optional L1 on the weights (its k-sparse probe).

    The random stream is SAE Bench's too (the probe's initialisation, then a shuffling DataLoader,
    both drawing from torch's global generator seeded with `seed`), so given the same seed both
    produce the same probe; the caller's global random state is restored afterwards.
    """
    weight, bias = train_linear_probes(x[None], labels, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, l1_decay=l1_decay, end_lr=end_lr)
    return weight[0], bias[0]


def train_linear_probes(
    xs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    l1_decay: float = 0.0,
    end_lr: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`train_linear_probe` on each of `xs` (c, n, d): c independent probes trained at once, each as it
    would be alone. With one seed every probe draws the same initialisation and the same batch order
    (the stream depends on n only), and Adam, its weight decay and the L1 term act per probe, so
    stacking them changes only floating-point rounding (tests/test_metrics_absorption.py). Returns
    (c, 26, d) weights and (c, 26) biases."""
    count = xs.shape[0]
    targets = torch.nn.functional.one_hot(labels, len(LETTERS)).float()
    positives = targets.sum(dim=0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(len(targets) - positives) / positives, reduction="none")
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(seed)
        # the shuffling loader draws as SAE Bench's over (x, targets) does: its stream depends on the length alone
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(len(labels))), batch_size=batch_size, shuffle=True)
        first = torch.nn.Linear(xs.shape[2], len(LETTERS))
        weight = torch.nn.Parameter(first.weight.detach().expand(count, -1, -1).clone())
        bias = torch.nn.Parameter(first.bias.detach().expand(count, -1).clone())
        optimiser = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=float(np.exp(np.log(end_lr / lr) / epochs)))
        for _ in range(epochs):
            for (rows,) in loader:
                optimiser.zero_grad()
                logits = torch.baddbmm(bias[:, None, :], xs[:, rows], weight.transpose(1, 2))
                loss = loss_fn(logits, targets[rows].expand(count, -1, -1)).mean(dim=(1, 2))  # each probe's own mean
                if l1_decay:
                    loss = loss + l1_decay * weight.abs().sum(dim=-1).mean(dim=-1)
                loss.sum().backward()  # probes share no parameter: each gets its own gradient
                optimiser.step()
            scheduler.step()
    return weight.detach().clone(), bias.detach().clone()


def probe_f1_per_letter(scores: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """F1 of `score > 0` per letter (SAE Bench's `f1_probe`), vectorised: sklearn per letter costs
    more than the rest of an evaluation. Zero when a letter has neither predictions nor members."""
    predicted = scores.numpy() > 0
    truth = labels.numpy()[:, None] == np.arange(len(LETTERS))[None, :]
    true_pos = (predicted & truth).sum(axis=0)
    denominator = 2 * true_pos + (predicted & ~truth).sum(axis=0) + (~predicted & truth).sum(axis=0)
    return np.divide(2 * true_pos, denominator, out=np.zeros(len(LETTERS)), where=denominator > 0)


# ----------------------------------------------------------------------------- SAE-independent data
@dataclass
class AbsorptionData:
    """Everything the metric needs that does not depend on the SAE."""

    train_words: list[str]
    test_words: list[str]
    train_labels: torch.Tensor  # letter index per word
    test_labels: torch.Tensor
    train_acts: torch.Tensor  # (n_train, d) residuals at the word position
    test_acts: torch.Tensor
    absorption_acts: torch.Tensor  # (n_test, d) the test words on a second, independent prompt
    train_prompts: list[str]
    test_prompts: list[str]
    absorption_prompts: list[str]
    probe_weight: torch.Tensor  # (26, d)
    probe_bias: torch.Tensor  # (26,)
    settings: AbsorptionSettings

    def probe_scores(self, acts: torch.Tensor) -> torch.Tensor:
        return acts.float() @ self.probe_weight.T + self.probe_bias

    def probe_f1(self) -> np.ndarray:
        return probe_f1_per_letter(self.probe_scores(self.test_acts), self.test_labels)

    def save(self, folder: Path, extra: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "train_acts": self.train_acts,
            "test_acts": self.test_acts,
            "absorption_acts": self.absorption_acts,
            "train_labels": self.train_labels,
            "test_labels": self.test_labels,
            "probe_weight": self.probe_weight,
            "probe_bias": self.probe_bias,
        }
        with atomic.atomic_path(folder / "absorption.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        words = {
            "train_words": self.train_words,
            "test_words": self.test_words,
            "train_prompts": self.train_prompts,
            "test_prompts": self.test_prompts,
            "absorption_prompts": self.absorption_prompts,
        }
        atomic.write_json(folder / "absorption_words.json", words)
        f1 = self.probe_f1()
        # written last: its presence marks the data complete
        atomic.write_json(
            folder / "absorption_manifest.json",
            {"settings": asdict(self.settings), "probe_f1": dict(zip(LETTERS, f1.tolist(), strict=True)), **extra},
        )

    @classmethod
    def load(cls, folder: Path, settings: AbsorptionSettings) -> AbsorptionData:
        manifest_path = folder / "absorption_manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder}: no absorption data (run the extraction step, `python -m taulib extract`)")
        manifest = atomic.read_json(manifest_path)
        saved = AbsorptionSettings(**manifest["settings"])
        if saved.data_key() != settings.data_key():
            raise ValueError(f"{folder}: absorption data were prepared with other settings {saved.data_key()} than {settings.data_key()}")
        tensors = load_file(str(folder / "absorption.safetensors"))
        words = atomic.read_json(folder / "absorption_words.json")
        return cls(settings=settings, **words, **tensors)


def _residuals_at(reader: Any, encoded: list[torch.Tensor], position: int, batch_size: int, progress: Any = None) -> tuple[torch.Tensor, list[int]]:
    """Residuals at `position` of each encoded prompt, and the token id found there."""
    residuals = residuals_per_sequence(reader, encoded, batch_size, progress)
    return torch.stack([acts[position] for acts in residuals]), [int(ids[position]) for ids in encoded]


def prepare_absorption_data(reader: Any, tokenizer: Any, settings: AbsorptionSettings, batch_size: int = 32, progress: Any = None) -> AbsorptionData:
    """Vocabulary, prompts, residuals and the ground-truth probe for one model and layer.

    `progress`, a tqdm-like bar, gets the prompts' token count as its total and advances per batch."""
    rng = random.Random(settings.seed)
    vocab = stratified_vocabulary(isolated_words(tokenizer, alphabetic_tokens(tokenizer), settings), settings.vocab_size, settings.seed)
    split = int(len(vocab) * settings.train_fraction)
    train_words, test_words = vocab[:split], vocab[split:]
    train_prompts = [icl_prompt(word, train_words, rng, settings) for word in train_words]
    test_prompts = [icl_prompt(word, test_words, rng, settings) for word in test_words]
    absorption_prompts = [icl_prompt(word, vocab, rng, settings) for word in test_words]  # SAE Bench draws these from the whole vocabulary
    encoded = {
        name: [tokenizer(prompt, return_tensors="pt").input_ids[0] for prompt in prompts]
        for name, prompts in (("train", train_prompts), ("test", test_prompts), ("absorption", absorption_prompts))
    }
    if progress is not None:  # the forward passes are the slow part: count their tokens, for an ETA
        progress.total = sum(len(ids) for prompts in encoded.values() for ids in prompts)
        progress.refresh()
    acts = {}
    for name in ("train", "test", "absorption"):
        acts[name], found = _residuals_at(reader, encoded[name], settings.word_position, batch_size, progress.update if progress is not None else None)
        words = train_words if name == "train" else test_words
        mismatched = [w for w, token in zip(words, found, strict=True) if tokenizer.decode([token]) != w]
        if mismatched:  # the template must put the word, as one token, at word_position
            raise ValueError(f"absorption prompt_template/word_position do not isolate the word for {len(mismatched)} words, e.g. {mismatched[:3]}")
    train_labels = torch.tensor([first_letter_class(w) for w in train_words])
    test_labels = torch.tensor([first_letter_class(w) for w in test_words])
    weight, bias = train_linear_probe(
        acts["train"],
        train_labels,
        epochs=settings.probe_epochs,
        batch_size=settings.probe_batch_size,
        lr=settings.probe_lr,
        weight_decay=settings.probe_weight_decay,
        seed=settings.seed,
    )
    return AbsorptionData(
        train_words=train_words,
        test_words=test_words,
        train_labels=train_labels,
        test_labels=test_labels,
        train_acts=acts["train"],
        test_acts=acts["test"],
        absorption_acts=acts["absorption"],
        train_prompts=train_prompts,
        test_prompts=test_prompts,
        absorption_prompts=absorption_prompts,
        probe_weight=weight,
        probe_bias=bias,
        settings=settings,
    )


# ----------------------------------------------------------------------------- per-SAE evaluation
@dataclass(frozen=True)
class AbsorptionMetrics:
    absorption_fraction: float  # SAE Bench 0.6.0 definition, mean over letters
    absorption_fraction_unthresholded: float  # SAE Bench ≤ 0.3 definition
    full_absorption_rate: float
    mean_split_latents: float  # latents per letter kept by the feature-split rule
    k1_f1: float  # F1 of the best single-latent probe, mean over letters
    letters_evaluated: int  # letters whose ground-truth probe F1 exceeds min_probe_f1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class KSparseProbes:
    latents: dict[int, torch.Tensor]  # k -> (26, k) latent ids per letter
    weights: dict[int, torch.Tensor]  # k -> (26, k)
    biases: dict[int, torch.Tensor]  # k -> (26,)


def train_k_sparse_probes(train_latents: torch.Tensor, labels: torch.Tensor, settings: AbsorptionSettings) -> KSparseProbes:
    """Rank latents with an L1-penalised probe, then fit a logistic regression on each letter's top k."""
    return train_k_sparse_probes_many(train_latents[None], labels, settings)[0]


def train_k_sparse_probes_many(train_latents: torch.Tensor, labels: torch.Tensor, settings: AbsorptionSettings) -> list[KSparseProbes]:
    """`train_k_sparse_probes` for each of `train_latents` (c, n, d_sae): the L1 probes trained together,
    each k's logistic regressions of every SAE and letter fitted in one batch."""
    l1_weights, _ = train_linear_probes(
        train_latents,
        labels,
        epochs=settings.k_sparse_epochs,
        batch_size=settings.k_sparse_batch_size,
        lr=1e-2,
        weight_decay=1e-6,
        seed=settings.seed,
        l1_decay=settings.k_sparse_l1_decay,
    )
    count, letters = len(train_latents), len(LETTERS)
    is_letter = (labels[None, :] == torch.arange(letters)[:, None]).long().repeat(count, 1)  # (c·26, n)
    probes = [KSparseProbes({}, {}, {}) for _ in range(count)]
    for k in range(1, settings.max_k + 1):
        ids = l1_weights.topk(k, dim=2).indices  # (c, 26, k), signed: latents that predict the letter, not its absence
        features = torch.cat([latents.T[own].permute(0, 2, 1) for latents, own in zip(train_latents, ids, strict=True)])  # (c·26, n, k)
        weights, biases = fit_logistic_regressions(features, is_letter)
        for index, probe in enumerate(probes):
            rows = slice(index * letters, (index + 1) * letters)
            probe.latents[k], probe.weights[k], probe.biases[k] = ids[index], weights[rows], biases[rows]
    return probes


def _split_latents(f1_by_k: dict[int, np.ndarray], probes: KSparseProbes, threshold: float) -> list[list[int]]:
    """SAE Bench's feature-split rule: grow k while F1 rises by more than `threshold`."""
    result = []
    for letter in range(len(LETTERS)):
        best, chosen = -100.0, []
        for k in sorted(f1_by_k):
            if f1_by_k[k][letter] > best + threshold:
                best, chosen = f1_by_k[k][letter], probes.latents[k][letter].tolist()
            else:
                break
        result.append(chosen)
    return result


def _word_absorption(
    acts: torch.Tensor, latents: torch.Tensor, probe_unit: torch.Tensor, cosines: torch.Tensor, main: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per word: absorption fraction (0.6.0), absorption fraction (≤ 0.3), full absorption."""
    projection = (acts.float() @ probe_unit).numpy()  # the probe's reading of the residual
    contribution = latents * cosines  # each latent's share of it, (n_words, d_sae)
    main_ids = torch.tensor(main, dtype=torch.long)
    main_projection = contribution[:, main_ids].sum(dim=1).numpy()
    all_projection = contribution.sum(dim=1).numpy()
    candidates = contribution.clone()
    candidates[:, main_ids] = 0.0
    candidates[:, cosines < ABSORPTION_FRACTION_PROBE_COS_THRESHOLD] = 0.0
    candidates = candidates.clamp_min(0.0)  # only positive contributions can absorb
    top_absorbers = candidates.topk(min(MAX_ABSORBING_LATENTS, candidates.shape[1]), dim=1).values.sum(dim=1).numpy()

    with np.errstate(divide="ignore", invalid="ignore"):
        proportion = top_absorbers / projection
        absorbed = np.minimum(top_absorbers, projection - main_projection)  # what the absorbers supply of what the main latents miss
        partial = np.clip(absorbed / (absorbed + main_projection), 0.0, 1.0)
    fraction = np.where(
        (main_projection >= projection) | (proportion < PROBE_PROJECTION_PROPORTION_THRESHOLD),
        0.0,
        np.where(main_projection <= 0.0, 1.0, partial),
    )
    legacy = np.where(
        (main_projection >= projection) | (all_projection <= 0),
        0.0,
        np.clip((all_projection - main_projection) / np.where(all_projection > 0, all_projection, 1.0), 0.0, 1.0),
    )
    top = contribution.topk(min(TOP_PROJECTION_LATENTS, contribution.shape[1]), dim=1).indices[:, 0]
    top_contribution = contribution.gather(1, top[:, None]).squeeze(1).numpy()
    main_silent = (latents[:, main_ids] < EPS).all(dim=1).numpy()
    full = main_silent & (cosines[top].numpy() >= FULL_ABSORPTION_PROBE_COS_THRESHOLD) & (projection >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        full &= top_contribution / projection >= PROBE_PROJECTION_PROPORTION_THRESHOLD
    return fraction, legacy, full


@torch.no_grad()
def _encode(sae: SparseAutoencoder, acts: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    return torch.cat([sae.encode(acts[start : start + batch_size].float()) for start in range(0, len(acts), batch_size)])


@torch.no_grad()
def evaluate_absorption(sae: SparseAutoencoder, data: AbsorptionData) -> tuple[AbsorptionMetrics, pd.DataFrame]:
    """Absorption metrics of an SAE (in raw units) and the per-letter table behind them."""
    return evaluate_absorption_many([sae], data)[0]


@torch.no_grad()
def evaluate_absorption_many(saes: Sequence[SparseAutoencoder], data: AbsorptionData) -> list[tuple[AbsorptionMetrics, pd.DataFrame]]:
    """`evaluate_absorption` of several SAEs (a run's checkpoints), their k-sparse probes trained together."""
    encoded = [[_encode(sae, a) for a in (data.train_acts, data.test_acts, data.absorption_acts)] for sae in saes]
    probes = train_k_sparse_probes_many(torch.stack([train for train, _, _ in encoded]), data.train_labels, data.settings)
    test_scores = data.probe_scores(data.test_acts)
    probe_f1 = probe_f1_per_letter(test_scores, data.test_labels)
    return [
        _absorption_of(sae, data, own_probes, test_latents, absorption_latents, test_scores, probe_f1)
        for sae, (_, test_latents, absorption_latents), own_probes in zip(saes, encoded, probes, strict=True)
    ]


def _absorption_of(
    sae: SparseAutoencoder,
    data: AbsorptionData,
    probes: KSparseProbes,
    test_latents: torch.Tensor,
    absorption_latents: torch.Tensor,
    test_scores: torch.Tensor,
    probe_f1: np.ndarray,
) -> tuple[AbsorptionMetrics, pd.DataFrame]:
    """One SAE's absorption from its trained k-sparse probes and latents."""
    settings = data.settings
    f1_by_k = {}
    for k in probes.latents:
        picked = torch.gather(test_latents[:, None, :].expand(-1, len(LETTERS), -1), 2, probes.latents[k][None].expand(len(test_latents), -1, -1))
        sparse_scores = (picked * probes.weights[k][None]).sum(dim=2) + probes.biases[k]
        f1_by_k[k] = probe_f1_per_letter(sparse_scores, data.test_labels)
    splits = _split_latents(f1_by_k, probes, settings.f1_jump_threshold)

    decoder_unit = torch.nn.functional.normalize(sae.W_dec.float(), dim=1)
    rows = []
    for letter in range(len(LETTERS)):
        probe_unit = torch.nn.functional.normalize(data.probe_weight[letter].float(), dim=0)
        true_positive = (data.test_labels == letter) & (test_scores[:, letter] > 0)
        n_true_positive = int(true_positive.sum())
        row = {
            "letter": LETTERS[letter],
            "probe_f1": float(probe_f1[letter]),
            "k1_f1": float(f1_by_k[1][letter]),
            "k1_latent": int(probes.latents[1][letter, 0]),
            "split_latents": splits[letter],
            "n_split_latents": len(splits[letter]),
            "n_probe_true_positives": n_true_positive,
        }
        if n_true_positive:
            fraction, legacy, full = _word_absorption(
                data.absorption_acts[true_positive], absorption_latents[true_positive], probe_unit, decoder_unit @ probe_unit, splits[letter]
            )
            row |= {
                "absorption_fraction": float(fraction.mean()),
                "absorption_fraction_unthresholded": float(legacy.mean()),
                "full_absorption_rate": float(full.mean()),
            }
        rows.append(row)
    table = pd.DataFrame(rows)
    evaluated = table[(table["probe_f1"] > settings.min_probe_f1) & (table["n_probe_true_positives"] > 0)]
    metrics = AbsorptionMetrics(
        absorption_fraction=float(evaluated["absorption_fraction"].mean()) if len(evaluated) else float("nan"),
        absorption_fraction_unthresholded=float(evaluated["absorption_fraction_unthresholded"].mean()) if len(evaluated) else float("nan"),
        full_absorption_rate=float(evaluated["full_absorption_rate"].mean()) if len(evaluated) else float("nan"),
        mean_split_latents=float(evaluated["n_split_latents"].mean()) if len(evaluated) else float("nan"),
        k1_f1=float(evaluated["k1_f1"].mean()) if len(evaluated) else float("nan"),
        letters_evaluated=len(evaluated),
    )
    return metrics, table
