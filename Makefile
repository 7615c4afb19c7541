# judgeloop: `make demo` runs the whole loop, `make test` runs every test. Both set up .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.judgeloop-setup
# Datasets are read from the offline mirror when there is one (else the cache, else downloaded).
MIRROR := $(abspath ../shared/datasets)
export JUDGELOOP_DATA_MIRROR ?= $(if $(wildcard $(MIRROR)/MANIFEST.md),$(MIRROR),)

.PHONY: setup lint test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh integrations/requirements-deepeval.txt integrations/requirements-labelstudio.txt integrations/promptfoo/package-lock.json
	VENV=$(VENV) bash scripts/setup_env.sh
	touch $(STAMP)

# The layers (import-linter contracts in pyproject.toml), ruff's lint and format check, then every test.
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not integration" --durations=10 $(PYTEST_ARGS)

demo: setup
	$(PY) -m judgeloop demo $(DEMO_ARGS)

bench: setup
	$(PY) -m judgeloop bench

clean:
	rm -rf $(VENV) .venv-deepeval .venv-labelstudio integrations/promptfoo/node_modules runs prepared mlruns .pytest_cache
