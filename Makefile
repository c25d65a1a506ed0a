# Two commands for a fresh machine: `make demo` and `make test` (both create .venv and install rvar first).
PYTHON ?= python3
VENV := .venv
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test venv assets tokenizer-asset

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

# Rebuild the networks that ship in rvar/assets for `rvar demo` (see rvar/demo/asset.py; each .json beside a file
# says how that file was made): the tokenizer (about 1.5 hours on 2 cores), then the prior and the LDM's denoiser,
# pre-trained on clean images on that tokenizer for the same 15 minutes each.
assets: tokenizer-asset
	$(VENV)/bin/python -m rvar.demo.asset prior --minutes 15 --work outputs/assets
	$(VENV)/bin/python -m rvar.demo.asset ldm --minutes 15 --work outputs/assets

tokenizer-asset: venv
	$(VENV)/bin/python -m rvar.demo.asset tokenizer --steps 8000 --work outputs/assets
