"""Working with other tools: exporting SAEs, and running SAE Bench's own code on taulib's data."""
