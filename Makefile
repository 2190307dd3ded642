# Two commands do everything on a fresh machine with only Python 3.10+:
#   make demo   - create .venv, install minimal_ep, run the main job (configs/quickstart.toml)
#   make test   - create .venv, install minimal_ep[test], run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: demo test bench figures clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/minimal-ep train --config configs/quickstart.toml $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

figures: $(VENV)/.installed
	for f in figures/fig*.py; do $(BIN)/python $$f $(ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
