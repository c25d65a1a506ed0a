# Two commands for a fresh machine: `make demo` and `make test` (both create .venv and install rvar first).
PYTHON ?= python3
VENV := .venv
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

# The main job on the embedded default: train every tiny stage, compare with the baselines, write a report.
demo: venv
	$(VENV)/bin/rvar demo --out outputs/demo

test: venv
	NO_ALBUMENTATIONS_UPDATE=1 $(VENV)/bin/python -m pytest -q tests
