# Varia's developer commands. `make demo` and `make test` work on a fresh machine with
# python3 (3.11+), Node.js 20+ and npm; they install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The host-contract suite runs on Python 3.13, the Python Azure runs, with Azure's worker.
# The first that really runs 3.13: pyenv's builds (newest first), then python3.13 on PATH.
PYTHON313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13.*/bin/python3 2>/dev/null | sort -V -r) \
	$$(command -v python3.13); do "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null \
	&& { echo "$$p"; break; }; done)
WORKER_PY := .venv-worker/bin/python
DEMO_OUT := varia-output

.PHONY: demo serve test bench lint typecheck unit install install-dev clean

## demo: one job on the sample image, offline providers, results in ./varia-output
demo: $(VENV)/.runtime
	$(PY) -m shared.cli vary shared/local/assets/sample-meadow.png "as a watercolour" --n 2 --out $(DEMO_OUT)

## serve: the web page and HTTP API on http://127.0.0.1:7071/api/ui (offline providers, jobs in ./.varia)
serve: $(VENV)/.runtime
	$(PY) -m shared.server

## test: linters, type checks, every test, then the host-contract suite on Azure's Python worker
test: $(VENV)/.dev node_modules/.installed .venv-infra/bin/checkov .venv-worker/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest --cov
	AZURE_FUNCTIONS_ENVIRONMENT=Production $(WORKER_PY) -m pytest tests/worker
	AZURE_FUNCTIONS_ENVIRONMENT=Development $(WORKER_PY) -m pytest tests/worker

## bench: the benchmarks (critical path, quota, cold start, prepare, first request, cost, scale), about thirty minutes
bench: $(VENV)/.dev node_modules/.installed
	$(PY) -m bench.run

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev node_modules/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt constraints.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

# checkov scans infra/ in the tests; it lives in its own venv so its pins never meet the app's.
.venv-infra/bin/checkov: infra/requirements-checks.txt
	$(PYTHON) -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet -r infra/requirements-checks.txt
	touch $@

# Python 3.13 with azure-functions-runtime (the worker Azure runs) for tests/worker. Missing 3.13
# is an error, never a skip: `pyenv install 3.13`, or PYTHON313=/path/to/python3.13 make test.
.venv-worker/.installed: requirements.txt constraints.txt tests/worker/requirements.txt
	@test -n "$(PYTHON313)" || { echo "make test: Python 3.13 is needed for the host-contract suite (tests/worker)." \
		"Install it (pyenv install 3.13, or your package manager's python3.13), or set PYTHON313=/path/to/python3.13." >&2; exit 1; }
	$(PYTHON313) -m venv .venv-worker
	$(WORKER_PY) -m pip install --quiet --upgrade pip
	$(WORKER_PY) -m pip install --quiet -r tests/worker/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) .venv-infra .venv-worker node_modules $(DEMO_OUT) .varia .pytest_cache .mypy_cache .ruff_cache
