"""taulib: a τ-annealed sparse-autoencoder study.

Modules, one concept each:
  config       typed run configuration, loaded from YAML parameter files
  schedules    τ(t) schedules (none, constant, linear, cosine, exponential)
  sae          the ReLU sparse autoencoder and its safetensors format
  trainer      the annealed trainer (λ/τ(t) L1 penalty), checkpoints and resume
  corpus       the packaged English text corpus and its train/held-out split
  models       loading the language model (embedded Gemma 3 270M or any transformers model)
  extraction   residual-stream extraction with nnsight into a sharded activation cache
  activations  the on-disk activation cache: shards, manifest, checksums
  atomic       atomic file writes for everything under outputs/
  study        running the study: notebooks executed with papermill, one per parameter file
"""

__version__ = "0.1.0"
