"""SAE metrics, one module per family, and the driver that evaluates every checkpoint of a run.

Every metric function takes an SAE in raw units (`sae.in_raw_units`).
"""
