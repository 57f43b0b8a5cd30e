"""The τ playground (notebooks/07_tau_playground): one schedule at a time, trained while the user watches.

`world_runs` trains a schedule on the ground-truth world exactly as the ground-truth track trains its arms
(λ given, or calibrated to a target L0) and keeps every checkpoint's view; `comparison` finds the track's own
runs of the same world at the nearest L0; `keep` writes a schedule as a parameter file the study accepts;
`language_model` trains a short run on the study's cached language-model activations; `ui` is the widgets.
"""
