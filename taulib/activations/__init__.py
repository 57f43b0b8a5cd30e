"""The language model and its activations: loading, extraction with nnsight, the on-disk cache."""
