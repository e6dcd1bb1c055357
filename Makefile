# `make demo` sets up and runs the main job; `make test` sets up and runs every check (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch goes in first, on its own: a bare `torch` requirement would pull several GB of CUDA packages.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	# llama-cpp-python has no wheel on PyPI: this builds it from source (about 5-10 min on 2 cores, cached by pip).
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/llmaaa-local demo

lint: setup
	$(BIN)/ruff check llmaaa_local tui tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -ra

clean-venv:
	rm -rf $(VENV)
