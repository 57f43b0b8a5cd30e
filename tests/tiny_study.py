"""The tiny study's sizes: the default study's parameter files, shrunk to run in minutes on a CPU."""

TINY = [
    "--set",
    "activations.n_tokens=6000",
    "--set",
    "activations.heldout_tokens=1000",
    "--set",
    "activations.shard_tokens=2540",
    "--set",
    "sae.width=128",
    "--set",
    "training.n_tokens=40000",
    "--set",
    "training.batch_size=256",
    "--set",
    "training.n_checkpoints=6",
    # evaluation sized for a test: a 260-word absorption vocabulary, 10 texts per probing class, and, as
    # the default study, the spliced CE/KL at the final checkpoint only, on two sequences (vocabulary-wide
    # logits are most of a tiny run's evaluation)
    "--set",
    "evaluation.core.tokens=1000",  # the whole held-out cache
    "--set",
    "evaluation.absorption.vocab_size=260",
    "--set",
    "evaluation.probing.examples_per_class=10",
    "--set",
    "evaluation.downstream.sequences=0",
    "--set",
    "evaluation.downstream.final_sequences=2",
    "--set",
    "evaluation.downstream.batch_size=1",
]
