# The two entry points: `make study` runs the whole default study, `make test` runs the tests.
# Both create the environment (.venv) first when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup study test clean-outputs

setup:
	PYTHON=$(PYTHON) bash scripts/install.sh

study: setup
	$(BIN)/python -m taulib study --parameters parameters --outputs outputs

test: setup
	$(BIN)/python -m pytest
