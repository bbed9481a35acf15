# Varia's developer commands. `make demo` and `make test` work on a fresh machine with
# python3 (3.11+), Node.js 20+ and npm; they install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT := varia-output

.PHONY: demo serve test bench lint typecheck unit install install-dev clean

## demo: one job on the sample image, offline providers, results in ./varia-output
demo: $(VENV)/.runtime
	$(PY) -m shared.cli vary shared/assets/sample-meadow.png "as a watercolour" --n 2 --out $(DEMO_OUT)

## serve: the web page and HTTP API on http://127.0.0.1:7071/api/ui (offline providers, jobs in ./.varia)
serve: $(VENV)/.runtime
	$(PY) -m shared.server

## test: linters, type checks and every test (installs Python and npm tools first)
test: $(VENV)/.dev node_modules/.installed .venv-infra/bin/checkov
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

## bench: the five benchmarks (critical path, quota, cold start, prepare, cost), about a minute
bench: $(VENV)/.dev
	$(PY) -m bench.run

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev node_modules/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

# checkov scans infra/ in the tests; it lives in its own venv so its pins never meet the app's.
.venv-infra/bin/checkov: infra/requirements-checks.txt
	$(PYTHON) -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet -r infra/requirements-checks.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) .venv-infra node_modules $(DEMO_OUT) .varia .pytest_cache .mypy_cache .ruff_cache
