"""Plotly figures of a study (built from taulib.analysis tables) and saving them as HTML and PNG.

style         one colour and dash per arm, shared by every figure
training      metrics against tokens seen, time to 90% of final, absorption-reduction speed
orthogonality max-cosine histograms, near duplicates, the lower-bound ablation, τ trajectory vs outcome
state         one checkpoint's state (first-letter latents, density, probing latents), redrawn in place
save          standalone HTML and PNG under outputs/figures/, written atomically
"""
