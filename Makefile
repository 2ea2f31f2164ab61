# reid-book: every command sets up .venv on first use (requirements.txt + `pip install -e .`).
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
# Passed to the chapters by `make book` when set (e.g. SCALE=full DEVICE=cuda DATASET=market1501 DATA_ROOT=/data).
DATASET ?=
DATA_ROOT ?=
DEVICE ?=
BOOK_ARGS = --scale $(SCALE) $(if $(DATASET),--dataset $(DATASET)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) \
	$(if $(DEVICE),--device $(DEVICE))
MATHJAX := book/_static_vendor/mathjax/tex-mml-chtml.js
# Build (or reuse from .cache/pretrain) the pre-trained SynthReID trunks of a scale: $(call PRETRAIN,cpu).
PRETRAIN = $(PY) -m reidlib pretrain --scale $(1) $(if $(DEVICE),--device $(DEVICE))
# make reproduce writes into _build/reproduce only: its own trunk cache (so the trunks are trained again and
# their results files compared too), its own results root and its own run folders (weights, checkpoints).
REPRODUCE_ENV = REIDLIB_CACHE=$(CURDIR)/_build/reproduce/cache REIDLIB_RESULTS=$(CURDIR)/_build/reproduce/results \
	REIDLIB_RUNS=$(CURDIR)/_build/reproduce/runs
# The Jupyter kernel of the project's environment; the notebooks ask for it by this name.
KERNEL := reid-book
KERNEL_DISPLAY := Python (reid-book)
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json
LAB_ARGS ?=
export PYTHONHASHSEED := 0

.PHONY: setup test unit lint run clean book book-html mathjax nbtest browser-test reproduce kernel lab

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

## The project's kernel inside .venv (found by papermill, nbval and a JupyterLab started from .venv).
$(KERNEL_SPEC): $(VENV)/.installed
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL_DISPLAY)" >/dev/null

setup: $(VENV)/.installed $(KERNEL_SPEC)

## Register the kernel for this user too, so a system-wide JupyterLab or VS Code lists the project's environment.
kernel: setup
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "$(KERNEL_DISPLAY)"

## Open the chapters in JupyterLab on the project's kernel (LAB_ARGS="--no-browser --port 8890" to pass options).
lab: kernel
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks

lint: setup
	$(PY) -m ruff check reidlib tests benchmarks book/tools book/_ext book/examples

unit: setup
	$(PY) -m pytest tests

## The README's test command: lint + unit tests + every notebook at smoke scale + strict book build + browser test.
test: lint unit nbtest
	$(MAKE) book SCALE=smoke
	$(MAKE) browser-test

## MathJax 3 served by the book itself, so formulas typeset offline (npm registry, once).
$(MATHJAX):
	bash book/tools/install_mathjax.sh
mathjax: $(MATHJAX)

## Build the pre-trained trunks of SCALE (none at full, which loads ImageNet weights), execute every notebook
## of _toc.yml at SCALE with papermill, then build the site into _build/html.
book: setup $(MATHJAX)
	$(if $(filter full,$(SCALE)),,$(call PRETRAIN,$(SCALE)))
	$(PY) book/tools/build_book.py $(BOOK_ARGS)

## Build the site from the notebooks as committed (no execution).
book-html: setup $(MATHJAX)
	$(PY) book/tools/build_book.py --no-execute

## Every notebook at smoke scale under nbval (cells marked NBVAL_CHECK_OUTPUT must match).
nbtest: setup
	REIDLIB_SCALE=smoke $(call PRETRAIN,smoke)
	REIDLIB_SCALE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks book

## Open the built book in headless Chromium (needs `make book` first); screenshots in _build/screenshots.
browser-test: setup
	REIDLIB_REQUIRE_BOOK=1 $(PY) -m pytest tests/book/test_browser.py

## Train the cpu trunks again and re-execute at cpu scale, all into _build/reproduce; then compare its results
## files (the trunks' included) with the committed ones.
reproduce: setup
	rm -rf _build/reproduce
	$(REPRODUCE_ENV) $(call PRETRAIN,cpu)
	$(REPRODUCE_ENV) $(PY) book/tools/execute_notebooks.py --scale cpu --out _build/reproduce/notebooks
	$(PY) book/tools/compare_results.py results _build/reproduce/results --scale cpu

## Train and evaluate the baseline on SynthReID and print mAP / CMC.
run: setup
	$(PY) -m reidlib train --config configs/baseline_synth_small.yaml

clean:
	rm -rf _build runs .pytest_cache
