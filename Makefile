# Two commands do everything on a fresh machine with only Python 3.10+:
#   make demo   - create .venv, install minimal_ep, run the main job (configs/quickstart.toml)
#   make test   - create .venv, install minimal_ep[test,docs], run the test suite (the docs build included)
#   make docs   - install minimal_ep[docs], build the course site (executed tutorials) in build/course
#   make table2-laptop - the laptop-scale Table II campaign, in the background (docs/RESULTS.md)
#   make table2-midscale - the mid-scale Table II campaign (issue #28), in the background
#   make bench  - the benchmarks (2 BLAS threads, A/B against fbe01e1): results/benchmarks/summary.md;
#                 ARGS=--quick for a smoke run in seconds (results/benchmarks/quick/)
#   make manifest - rewrite results/MANIFEST.sha256 after the committed results changed
#   make gpu-check - on a CUDA machine with CuPy: tests, benchmarks and a short training on the GPU
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

.PHONY: demo test bench gpu-check figures checkpoints checkpoints-recipe2 data docs clean table2-laptop table2-midscale table2-report manifest

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $@

# The course site: Sphinx + MyST-NB execute the six tutorials (normal mode, about a minute);
# QUICK=1 runs them in their quick mode (small sizes). Open build/course/index.html.
DOCS_OUT ?= build/course
QUICK    ?= 0

docs: $(VENV)/.installed
	MINIMAL_EP_QUICK=$(QUICK) OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/sphinx-build -q -b html docs/course $(DOCS_OUT)
	@echo "course site: $(DOCS_OUT)/index.html"

# The exercises' grader: make grade DIR=path/to/answers (a copy of tutorials/exercises/ with the
# stubs filled in) prints one line per check and exits 0 only when every check passed.
.PHONY: grade
grade: $(VENV)/.installed
	@test -n "$(DIR)" || { echo "usage: make grade DIR=path/to/answers (a copy of tutorials/exercises/)"; exit 2; }
	$(BIN)/python tutorials/exercises/grader.py $(DIR)

demo: $(VENV)/.installed
	$(BIN)/minimal-ep train --config configs/quickstart.toml $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

# Needs CuPy in the venv (.venv/bin/pip install -e ".[gpu]"); without a GPU it exits 2 with one line.
gpu-check: $(VENV)/.installed
	$(BIN)/python scripts/gpu_check.py $(ARGS)

# The figures from results/figures/checkpoints/: each script writes its PNG/PDF and every number it
# prints to results/figures/NAME.json (its measurement cache to results/figures/.cache, git-ignored); a
# script runs again when a checkpoint, a stage or figures/*.py changed. JOBS=2 runs two at a time (fig3
# reads fig2's cached measurements, so it waits for fig2).
FIGURE_OUT  := results/figures
FIGURE_JSON := $(patsubst figures/%.py,$(FIGURE_OUT)/%.json,$(wildcard figures/fig*.py)) $(FIGURE_OUT)/diagnose.json

figures: $(VENV)/.installed
	$(MAKE) -j$(JOBS) $(FIGURE_JSON)

$(FIGURE_OUT)/fig3_activation_stats.json: $(FIGURE_OUT)/fig2_activation_sums.json
$(FIGURE_OUT)/diagnose.json: ARGS += --history
$(FIGURE_OUT)/diagnose.json: $(wildcard results/figures/checkpoints/*/stages/epoch_*.npz)
$(FIGURE_OUT)/%.json: figures/%.py $(wildcard figures/*.py) $(wildcard results/figures/checkpoints/*/checkpoint.npz)
	$(BIN)/python -m figures.$* --json $@ $(ARGS)

# MNIST as IDX files: the 10000-image training subset and the official test set (scripts/prepare_mnist_subset.py)
data: $(DATA_DIR)/train-images-idx3-ubyte

$(DATA_DIR)/train-images-idx3-ubyte: | $(VENV)/.installed
	$(BIN)/python scripts/prepare_mnist_subset.py --out $(DATA_DIR)

# Train the four figure nets (SEEDS for the SNNs, CRNN_SEEDS for the CRNNs) into results/figures/checkpoints/
# with the shared campaign runner: one epoch per child (--until: the learning-rate schedule stays the
# configs' train.epochs), JOBS at a time, resumable (run it again to continue). EPOCHS (default: the
# configs' train.epochs) says where to stop. Each run keeps stages/epoch_NNN.npz (init, epochs 1, 2, 4, ...
# and the last). Progress: make checkpoints ARGS=--status. Tiny nets: make checkpoints ARGS="--quick --out-dir /tmp/ckpt"
checkpoints: $(VENV)/.installed
	test -n "$(findstring --quick,$(ARGS))$(findstring --status,$(ARGS))$(findstring --dry-run,$(ARGS))" || $(MAKE) data
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m figures.make_checkpoints --data-dir $(DATA_DIR) \
		--seeds "$(SEEDS)" --crnn-seeds "$(CRNN_SEEDS)" --jobs $(JOBS) $(if $(EPOCHS),--epochs $(EPOCHS)) $(ARGS)

# Issue #27's campaign, the second recipe (configs/figures/recipe2/: the nudge long enough for eps 0.1,
# 12 epochs) into results/figures/recipe2/, with the same variables; the SNN seeds after the first stop
# after epoch 3 if still at chance. A session of fixed length: ARGS="--finish-by HH:MM" starts only the
# epochs expected to end by then. In progress: the figures still read results/figures/checkpoints/
# (docs/FIGURES.md, "Recipe 2").
checkpoints-recipe2:
	$(MAKE) checkpoints ARGS="--configs configs/figures/recipe2 --out-dir results/figures/recipe2 --chance-stop 3 $(ARGS)"

# Laptop-scale Table II: 18 runs of configs/laptop/ (about 10.5 CPU-hours projected), one after
# another at one BLAS thread, niced, in the background. Resumable: after a kill or a reboot run it
# again and it continues where it stopped. Data: FMNIST_DIR holds the official Fashion-MNIST files;
# MNIST is read from data/mnist-10k/ (python scripts/prepare_mnist_subset.py). TABLE2_ARGS: e.g.
# --cells fmnist_snn_ep_avg, --jobs 2. Progress: python -m table2.laptop --status; stop: kill PID.
FMNIST_DIR  ?=
TABLE2_ARGS ?=
NICE        ?= 10
TABLE2_DIR  := results/table2/laptop
TABLE2_RUN  := $(BIN)/python -m table2.laptop $(if $(FMNIST_DIR),--fashion-mnist-dir $(FMNIST_DIR)) $(TABLE2_ARGS)

# $(call background,COMMAND,FOLDER): what would run, then COMMAND niced in the background, logging to FOLDER.
define background
	$(1) --dry-run
	mkdir -p $(2)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 nohup nice -n $(NICE) $(1) --log $(2)/campaign.log \
		>> $(2)/campaign.log 2>&1 & \
		echo "$@: started process $$! (log: $(2)/campaign.log; stop: kill $$!)"
endef

table2-laptop: $(VENV)/.installed
	$(call background,$(TABLE2_RUN),$(TABLE2_DIR))

# Mid-scale Table II (issue #28): configs/midscale/, 3 seeds per cell, one epoch per child round-robin,
# SNN EP (max) ended after 3 epochs at chance, two runs at a time (one BLAS thread each). Resumable
# like table2-laptop; TABLE2_ARGS e.g. "--finish-by 17:30" (start only what ends by then).
MIDSCALE_DIR := results/table2/midscale
MIDSCALE_RUN := $(BIN)/python -m table2.laptop --config-dir configs/midscale --runs-dir $(MIDSCALE_DIR) --seeds 3 \
	--epochs-per-child 1 --chance-stop 3 --jobs 2 $(if $(FMNIST_DIR),--fashion-mnist-dir $(FMNIST_DIR)) $(TABLE2_ARGS)

table2-midscale: $(VENV)/.installed
	$(call background,$(MIDSCALE_RUN),$(MIDSCALE_DIR))

# docs/RESULTS.md and docs/table2_*.png from results/table2/laptop/ and results/table2/midscale/
# (works on partial results)
table2-report: $(VENV)/.installed
	$(BIN)/python -m table2.report $(ARGS)

manifest: $(VENV)/.installed
	$(BIN)/python scripts/manifest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/course/tutorials
