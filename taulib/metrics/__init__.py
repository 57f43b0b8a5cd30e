"""SAE metrics, one module per family; every function takes an SAE in raw units (`sae.in_raw_units`).

- core: reconstruction (L0, MSE, explained variance, cosine, dead/dense latents, density histogram)
- downstream: cross-entropy and KL with the reconstruction spliced into the model (nnsight)
- orthogonality: decoder max-cosine statistics against random unit vectors, encoder–decoder cosine
- absorption: SAE Bench's first-letter feature absorption
- probing: SAE Bench's sparse probing on labelled text tasks
"""
