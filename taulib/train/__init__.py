"""Training an SAE: the annealed trainer, its hand-written step and kernels, the reference loss."""
