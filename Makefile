# The two entry points: `make study` runs the whole default study, `make test` runs the tests.
# Both create the environment (.venv) first when it is missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup study test test-fast saebench-check bench clean-outputs

setup:
	PYTHON=$(PYTHON) bash scripts/install.sh

# PROFILE=full runs the sweep's complete profile (parameters/_sweep.yaml) into outputs/full
PROFILE ?= default
STUDY_OUTPUTS := $(if $(filter default,$(PROFILE)),outputs,outputs/$(PROFILE))
# the default study runs the ground-truth track first (taulib.groundtruth, minutes: two one-thread runs at
# once), so that its verdicts on formation and absorption speed lead outputs/REPORT.md
study: setup
	$(BIN)/python -m taulib study --parameters parameters --outputs $(STUDY_OUTPUTS) --profile $(PROFILE) $(if $(filter default,$(PROFILE)),--ground-truth outputs/ground_truth)

# two pytest workers, each file on one of them (its module fixtures built once): much of the suite
# waits on single-threaded work (imports, notebook kernels, plotting), which the other worker fills.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# the edit-test loop: the suite without the real language model and the notebooks
test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not model and not notebook"

# taulib's absorption and core metrics against SAE Bench's own code (its own environment, ~2.8 GB more)
saebench-check: setup
	PYTHON=$(PYTHON) bash scripts/install_saebench.sh
	.venv-saebench/bin/python -m pytest -p no:cacheprovider tests/test_sae_bench_crosscheck.py

# The benchmarks (benchmarks/RESULTS.md), on the study's activation caches (`make study` first):
# the reference trainers in their own environment (.venv-bench, ~2.4 GB), then each script
# under a lock, so that two timed runs on the same machine never share its cores
BENCH_LOCK ?= /tmp/taulib-cpu.lock
bench: setup
	PYTHON=$(PYTHON) bash scripts/install_bench.sh
	for script in training_speed extraction_speed scaling sparse_latents matmul_kernels latent_formation_cost ceilings ground_truth_track playground; do flock $(BENCH_LOCK) .venv-bench/bin/python benchmarks/$$script.py || exit 1; done
	[ ! -f outputs/study_summary.json ] || $(BIN)/python benchmarks/study_stages.py outputs
