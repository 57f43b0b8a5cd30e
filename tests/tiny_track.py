"""The ground-truth track's tiny design (seconds, not minutes: 24 features in 16 dimensions, budgets of 32 and 64
steps), shared by the track's tests and the playground's."""

TINY = {
    "world": {"d_model": 16, "n_features": 24, "n_parents": 2, "children_per_parent": 3, "n_rare": 2, "mean_active_features": 3.0},
    "world_seeds": [0, 1],
    "training_seeds": [0, 1, 2],
    "budgets": [4096, 8192],
    "batch_size": 128,
    "n_checkpoints": 5,
    "heldout_samples": 2048,
    "l0_targets": [3.0, 4.5],
    "workers": 2,
}
# one replicate and the arm files only (the families' members are arms already): what the playground compares with
ONE_REPLICATE = TINY | {"world_seeds": [0], "training_seeds": [0], "tau_initial_family": [0.3], "tau_final_family": [0.05]}
