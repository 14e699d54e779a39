# brain-go-brr: every target creates .venv and installs what it needs when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A CPU machine must keep this exact torch: an unpinned one pulls several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast lint format demo bench docs docs-serve gpu-check clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e ".[accel,dev,bench,docs]"
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project with dev extras

test: $(STAMP) ## run the whole test suite (slow tests included)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: $(STAMP) ## synthetic corpus -> cache -> train v3_tiny on CPU -> evaluate
	$(PY) -m brain_go_brr.demo

docs: $(STAMP) ## build the documentation site into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP) ## preview the documentation site at http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(STAMP) ## run every benchmark and update BENCHMARKS.md
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# On the lent GPU machine (no network): make gpu-check GPU_PY=python3, with the carried
# wheels on PYTHONPATH (benchmarks/gpu_wheels.sh, benchmarks/gpu_check.py).
GPU_PY ?=
gpu-check: ## the GPU acceptance check (says so and exits 0 without CUDA)
	$(if $(GPU_PY),,$(MAKE) setup && )$(or $(GPU_PY),$(PY)) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache outputs multirun wandb lightning_logs site
