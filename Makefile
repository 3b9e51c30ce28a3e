# Quick start: `make run` (the digits sweep + its report) and `make test`.
# Each target creates .venv and installs the package first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run test smoke clean gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# PyTorch first, pinned to the builds on this disk (see README)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

## The main job: the embedded digits sweep through Ray Tune, then its tables and plots, into runs/digits.
run: $(STAMP)
	$(PY) sweeps/digits.py --results runs/digits

## The test suite, in TEST_WORKERS pytest-xdist workers: a test file stays on one worker (its module
## fixtures, e.g. a Ray cluster, start once), the longest files first (tests/conftest.py). 2 workers
## on 2 cores take ~2/3 of the serial time; 3 or 4 take longer (both cores are busy). TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## A tiny-budget run of the sweep entry point (2 classes, 2 variants, 1 epoch) through Ray Tune.
smoke: $(STAMP)
	$(PY) sweeps/digits.py --smoke-test --results runs/smoke

## The device check (bench/gpu_check.py): one JSON object, under 8 minutes on one GPU. It runs with
## the Python that is there (GPU_PYTHON: .venv's if built, else python3) and installs nothing.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	PYTHONPATH=. $(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

## Removes the environment and your own runs (runs/); the committed results/ stay.
clean:
	rm -rf $(VENV) runs
