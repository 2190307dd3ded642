# Two commands do everything on a fresh machine with only Python 3.10+:
#   make demo   - create .venv, install minimal_ep, run the main job (configs/quickstart.toml)
#   make test   - create .venv, install minimal_ep[test,docs], run the test suite (the docs build included)
#   make docs   - install minimal_ep[docs], build the course site (executed tutorials) in build/course
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: demo test bench figures docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $@

# The course site: Sphinx + MyST-NB execute the six tutorials (normal mode, about a minute);
# FAST=1 runs them in their fast mode. Open build/course/index.html.
DOCS_OUT ?= build/course
FAST     ?= 0

docs: $(VENV)/.installed
	MINIMAL_EP_FAST=$(FAST) OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/sphinx-build -q -b html docs/course $(DOCS_OUT)
	@echo "course site: $(DOCS_OUT)/index.html"

demo: $(VENV)/.installed
	$(BIN)/minimal-ep train --config configs/quickstart.toml $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

figures: $(VENV)/.installed
	for f in figures/fig*.py; do $(BIN)/python $$f $(ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/course/tutorials
