# nas-repro: `make setup repro` runs the main job, `make test` the tests.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help setup lock repro test bench bench-gpu ui baseline
setup: $(VENV)/.installed  ## venv + every package pinned in requirements.lock (once; again when the lock changes)

$(VENV)/.installed: requirements.lock packages/nascore/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
	$(PY) -m pip install -q --no-deps -e packages/nascore
	touch $@

lock:                  ## regenerate requirements.lock from requirements.txt in a scratch venv
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -r requirements.txt
	{ sed -n '1,/^# Linux/p' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

repro: setup           ## the DAG of the profile in params/run.yaml (default: quick)
	dvc repro

test: setup            ## unit + integration (tiny dvc repro of the ci profile) + benchmarks as tests
	$(PY) -m pytest -q --benchmark-disable

bench: setup           ## CPU benchmarks (pytest-benchmark), compared side by side
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-group-by=func --benchmark-warmup=on \
	  --benchmark-columns=min,median,mean,rounds
	$(PY) bench/op_count.py --no-save
	$(PY) bench/activation_memory.py --device cpu --no-save

help:                  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /  make \1\t/' | expand -t 20

# GPU benchmarks (bench/README.md): the one-call session script, then its GPU lines into reports/.
# NO_SETUP=1 PY=python3: on a machine whose python3 has torch, timm and pyyaml already (no venv, no network).
GPU_OUT ?= /tmp/nascore-gpu-session
bench-gpu: $(if $(NO_SETUP),,setup)  ## GPU session script, then its GPU lines into reports/bench/
	OUT=$(GPU_OUT) PY=$(PY) bash bench/gpu_session.sh
	$(PY) bench/ingest.py $(GPU_OUT)/bench.jsonl

ui: setup              ## MLflow UI on the embedded store
	mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --port 5000

baseline: setup        ## refresh tests/baselines/ci_metrics.json from a fresh ci-profile run
	$(PY) tests/make_baseline.py
