"""The probing-baseline metric family: sparse probing of a random SAE at each checkpoint's L0 (metric.py), registered in taulib/metrics/catalogue.py."""
