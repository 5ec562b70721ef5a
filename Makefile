# Two commands matter to a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
CACHE := .cache

.PHONY: run test test-fast lint format venv venv-test clean

# setuptools says "Editable installation" (a note, not a problem) for any package-dir mapping; pip would show it.
QUIET_BUILD := PYTHONWARNINGS="ignore:Editable installation"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(QUIET_BUILD) $(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(QUIET_BUILD) $(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

run: venv
	$(VENV)/bin/draggan serve

test: venv-test
	$(PY) -m pytest

test-fast: venv-test
	$(PY) -m pytest -m "not slow and not krita and not gimp"

lint: venv-test
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: venv-test
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(CACHE) build *.egg-info
