"""The absorption metric family: its parameters, columns and the computation (metric.py), registered in taulib/metrics/catalogue.py."""
