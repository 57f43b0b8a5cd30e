"""Reading a finished study and the numbers the analysis notebooks draw (no plotting here).

study_data         the arms of a study: configuration, training log, per-checkpoint evaluation
formation          early concept formation: time to 90% of final, absorption-reduction speed
orthogonality      near duplicates over training, the lower-bound ablation, τ trajectory vs outcome
checkpoint_state   one checkpoint's details as tidy tables (letters, density, probing latents, cosines)
"""
