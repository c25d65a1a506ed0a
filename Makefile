# Two commands for a fresh machine: `make demo` and `make test` (both create .venv and install rvar first).
PYTHON ?= python3
VENV := .venv
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

# The most complete pipeline so far: the embedded photos, degraded by every registered degradation.
demo: venv
	$(VENV)/bin/python -c "from rvar.data import ensure_embedded; print(ensure_embedded())" > $(VENV)/.embedded_root
	$(VENV)/bin/rvar degrade "$$(cat $(VENV)/.embedded_root)/val" --degradations all -o outputs/demo
	@echo "contact sheet: outputs/demo/contact_sheet.png"

test: venv
	NO_ALBUMENTATIONS_UPDATE=1 $(VENV)/bin/python -m pytest -q tests
