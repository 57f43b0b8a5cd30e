"""The decoder-drift metric family: how far each latent's decoder row moved from its initialisation (metric.py), registered in taulib/metrics/catalogue.py."""
