# Two commands for a fresh machine: `make demo` and `make test` (both create .venv and install rvar first).
PYTHON ?= python3
VENV := .venv
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test venv tokenizer-asset

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[dev,app,sweep]"
	touch $@

# The main job on the embedded default: train every tiny stage, compare with the baselines, write a report.
demo: venv
	$(VENV)/bin/rvar demo --out outputs/demo

test: venv
	NO_ALBUMENTATIONS_UPDATE=1 $(VENV)/bin/python -m pytest -q tests

# Retrain the tokenizer that ships in rvar/assets for `rvar demo` (about an hour on 2 cores; see rvar/demo_asset.py).
tokenizer-asset: venv
	$(VENV)/bin/python -m rvar.demo_asset --steps 5000 --work outputs/tokenizer-asset
