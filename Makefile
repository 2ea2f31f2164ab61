# reid-book: every command sets up .venv on first use (requirements.txt + `pip install -e .`).
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
export PYTHONHASHSEED := 0

.PHONY: setup test unit lint run clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(PY) -m ruff check reidlib tests benchmarks

unit: setup
	$(PY) -m pytest tests

## The README's test command: lint + unit tests (+ notebooks and book once they exist).
test: lint unit

## Train and evaluate the baseline on SynthReID and print mAP / CMC.
run: setup
	$(PY) -m reidlib train --config configs/baseline_synth_small.yaml

clean:
	rm -rf _build runs .pytest_cache
