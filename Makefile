# `make demo` sets up and runs the main job; `make test` sets up and runs every check (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch goes in first, on its own: a bare `torch` requirement would pull several GB of CUDA packages.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
LLAMA_CPP := $(shell grep '^llama-cpp-python==' constraints.txt)
# llama.cpp's AMX kernels crash at the first decode on AMX CPUs (ggml-org/llama.cpp#20824). On x86-64 they are
# compiled out; -march=native (AVX2, AVX-512, VNNI) and weight repacking stay. Extra CMAKE_ARGS (e.g.
# -DGGML_CUDA=on) are added after these.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8
endif
LLAMA_CMAKE_ARGS := $(strip $(NO_AMX) $(CMAKE_ARGS))

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	# llama-cpp-python has no wheel on PyPI: this builds it from source (about 5-10 min on 2 cores).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -c constraints.txt -e ".[dev,ray,spacy,hf,report]"
	# pip's wheel cache ignores CMAKE_ARGS and the CPU: a wheel built elsewhere or with other flags is reused
	# silently. Rebuild it here unless the installed build has no AMX kernels and uses exactly this CPU's
	# instructions; after that, only a build that would crash (AMX, or instructions this CPU lacks) fails.
	$(BIN)/llmaaa-local doctor --check-build --strict || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip \
		install --force-reinstall --no-deps --no-cache-dir "$(LLAMA_CPP)"
	$(BIN)/llmaaa-local doctor --check-build
	touch $(STAMP)

demo: setup
	$(BIN)/llmaaa-local demo

lint: setup
	$(BIN)/ruff check llmaaa_local tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -ra

clean-venv:
	rm -rf $(VENV)
