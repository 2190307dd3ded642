# Two commands do everything on a fresh machine with only Python 3.10+:
#   make demo   - create .venv, install minimal_ep, run the main job (configs/quickstart.toml)
#   make test   - create .venv, install minimal_ep[test,docs], run the test suite (the docs build included)
#   make docs   - install minimal_ep[docs], build the course site (executed tutorials) in build/course
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# make checkpoints: the figure nets (configs/figures/), see docs/FIGURES.md
DATA_DIR   ?= data/mnist-10k
SEEDS      ?= 0 1 2
CRNN_SEEDS ?= 0
JOBS       ?= 1
EPOCHS     ?=

.PHONY: demo test bench figures checkpoints data docs clean

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
	$(BIN)/python figures/diagnose.py --history --json figures/out/diagnose.json $(ARGS)

# MNIST as IDX files: the 10000-image training subset and the official test set (scripts/prepare_mnist_subset.py)
data: $(DATA_DIR)/train-images-idx3-ubyte

$(DATA_DIR)/train-images-idx3-ubyte: | $(VENV)/.installed
	$(BIN)/python scripts/prepare_mnist_subset.py --out $(DATA_DIR)

# Train the four figure nets (SEEDS for the SNNs, CRNN_SEEDS for the CRNNs) into figures/checkpoints/,
# epoch by epoch with --resume (run it again to continue); EPOCHS defaults to the configs' value.
# Quick check on tiny nets: make checkpoints ARGS="--quick --out-dir /tmp/ckpt"
checkpoints: $(VENV)/.installed
	test -n "$(findstring --quick,$(ARGS))" || $(MAKE) data
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python figures/make_checkpoints.py --data-dir $(DATA_DIR) \
		--seeds "$(SEEDS)" --crnn-seeds "$(CRNN_SEEDS)" --jobs $(JOBS) $(if $(EPOCHS),--epochs $(EPOCHS)) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/course/tutorials
