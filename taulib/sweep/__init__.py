"""The matched-sparsity sweep: its specification, λ calibration per arm, and the run files it writes."""
