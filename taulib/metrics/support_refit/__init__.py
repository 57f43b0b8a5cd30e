"""The support-refit metric family: explained variance with each token's active latents refitted by least squares (metric.py), registered in taulib/metrics/catalogue.py."""
