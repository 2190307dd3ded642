# Two commands do everything on a fresh machine with only Python 3.10+:
#   make demo   - create .venv, install minimal_ep, run the main job (configs/quickstart.toml)
#   make test   - create .venv, install minimal_ep[test], run the test suite
#   make docs   - install minimal_ep[docs], build the course site (executed tutorials) in build/course
#   make bench  - the benchmarks (2 BLAS threads, A/B against fbe01e1): benchmarks/results/summary.md;
#                 ARGS=--quick for a smoke run in seconds (benchmarks/results/quick/)
#   make gpu-check - on a CUDA machine with CuPy: tests, benchmarks and a short training on the GPU
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: demo test bench gpu-check figures docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The course site: Sphinx + MyST-NB execute the six tutorials (normal mode, about a minute);
# FAST=1 runs them in their fast mode. Open build/course/index.html.
DOCS_OUT ?= build/course
FAST     ?= 0

$(VENV)/.installed-docs: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $@

docs: $(VENV)/.installed-docs
	MINIMAL_EP_FAST=$(FAST) OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/sphinx-build -q -b html docs/course $(DOCS_OUT)
	@echo "course site: $(DOCS_OUT)/index.html"

demo: $(VENV)/.installed
	$(BIN)/minimal-ep train --config configs/quickstart.toml $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

# Needs CuPy in the venv (.venv/bin/pip install -e ".[gpu]"); without a GPU it exits 2 with one line.
gpu-check: $(VENV)/.installed
	$(BIN)/python scripts/gpu_check.py $(ARGS)

figures: $(VENV)/.installed
	for f in figures/fig*.py; do $(BIN)/python $$f $(ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/course/tutorials
