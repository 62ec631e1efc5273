# The PEBench book: set-up, world, run, book, test. Nothing clever.
#
#   make book                 # set up .venv, run every chapter (tiny profile), build the book
#   make test                 # set up .venv, run the test suite (what CI runs), one process per core
#   make lint                 # ruff (lint + format check) over the code, tests, benchmarks; mypy
#   make run PROFILE=smoke SEED=3
#
# PROFILE is a profile name (tiny, smoke, paper) or a YAML file; SEED an integer.

PROFILE ?= tiny
SEED ?= 0
PYTHON ?= python3
TORCH ?= torch==2.13.0

VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := runs/$(basename $(notdir $(PROFILE)))-s$(SEED)

# Everything runs offline and deterministically.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0
# No display for the command-line stages. NOT exported for `book`/`test`: a kernel
# started with MPLBACKEND=Agg silently drops every inline figure from the executed
# chapters (matplotlib then prints "<Figure size ...>" instead of the image).
world run: export MPLBACKEND := Agg

.PHONY: venv world run book test lint clean

venv: $(VENV)/.stamp

# torch is pinned: an unpinned torch pulls gigabytes of CUDA. Where pip's find-links hold
# the CPU wheel of the pin (PIP_FIND_LINKS, as on this project's machines), uv installs that
# very file with everything else, in one resolution (12 s less than pip installing torch);
# elsewhere pip installs torch first, from wherever its own configuration finds it. The rest
# is installed by uv under a constraints file that keeps that torch: the same packages as pip
# resolves, in about half the time. Both compile the bytecode up front: where
# PYTHONDONTWRITEBYTECODE is set (as on CI), a module not compiled at install is compiled
# again by every process that imports it (measured: a chapter's imports 12 s instead of 5 s).
# Re-runs only when pyproject.toml changes.
UV ?= uv==0.13.9
TORCH_WHEEL ?= $(firstword $(wildcard $(addsuffix /$(subst ==,-,$(TORCH))[+-]*.whl,$(subst :, ,$(PIP_FIND_LINKS)))))

$(VENV)/.stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(UV)" $(if $(TORCH_WHEEL),,"$(TORCH)")
	echo "$(TORCH)" > $(VENV)/constraints.txt
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c $(VENV)/constraints.txt $(TORCH_WHEEL) -e ".[book,dev,embed]"
	touch $@

world: venv
	$(BIN)/pebench world --profile $(PROFILE) --seed $(SEED) --out $(RUN_DIR)/world

run: venv
	$(BIN)/pebench run --profile $(PROFILE) --seed $(SEED) --out $(RUN_DIR)

book: venv
	$(BIN)/pebench book --profile $(PROFILE) --seed $(SEED)

# One test process per core the machine lets us use, each on one thread (tests/conftest.py);
# a module goes to one process as a whole, so its fixtures (the executed book) are built once.
# (--dist loadfile: loadgroup's marks do nothing under pytest 9.2, which names a test by its _id.)
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)

test: venv
	$(BIN)/python -m pytest -q --durations=12 -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(BIN)/ruff check pebench_core tests benchmarks
	$(BIN)/ruff format --check pebench_core tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf _build book/chapters runs
