# The two entry points: `make study` runs the whole default study, `make test` runs the tests.
# Both create the environment (.venv) first when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup study test saebench-check clean-outputs

setup:
	PYTHON=$(PYTHON) bash scripts/install.sh

study: setup
	$(BIN)/python -m taulib study --parameters parameters --outputs outputs

test: setup
	$(BIN)/python -m pytest

# taulib's absorption and core metrics against SAE Bench's own code (its own environment, ~1.3 GB more)
saebench-check: setup
	PYTHON=$(PYTHON) bash scripts/install_saebench.sh
	.venv-saebench/bin/python -m pytest -p no:cacheprovider tests/test_sae_bench_crosscheck.py
