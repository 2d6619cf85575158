# cvflow: two commands, `make run` and `make test`. Each builds .venv first when it is missing or stale.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cvflow-installed
# nbdev_test runs every notebook with its fast defaults in a scratch project home, never in your data/.
TEST_HOME := build/test-home
NB_WORKERS ?= 1
# The docs site: Sphinx + myst-nb over a source tree generated from nbs/ and cvflow/ (docs/cvflow_docs.py);
# notebooks execute with their fast defaults in a scratch home, outputs cached by content in build/docs-cache.
DOCS_HOME := build/docs-home
DOCS_SRC := build/docs-src
DOCS_OUT := docs/_build/html
SPHINXOPTS ?= -W --keep-going

.PHONY: run test test-quick venv venv-v1 export index check-export check-clean lint nbtest pytest chp clean-test docs docs-test clean-docs

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# The legacy Azure ML SDK v1 *pipeline* packages (setup.py's `azure-pipeline` extra) downgrade numpy, pyarrow and
# azure-identity, so they cannot share .venv: they get a small environment of their own, with cvflow installed without
# its heavy dependencies (the v1 pipeline objects need only cvflow.azure_pipeline). tests/test_azure_pipeline.py runs
# its v1 test there (~30 s to build, from the package index).
V1_VENV := build/venv-v1
V1_STAMP := $(V1_VENV)/.cvflow-installed
V1_REQS = $(shell sed -n 's/^ *"azure-pipeline": \[\(.*\)\],.*/\1/p' setup.py | tr -d ',' | tr '"' "'")
$(V1_STAMP): setup.py settings.ini
	@test -x $(V1_VENV)/bin/python || $(PYTHON) -m venv $(V1_VENV)
	$(V1_VENV)/bin/python -m pip install -q $(V1_REQS) pytest pytest-timeout pyyaml nbformat
	$(V1_VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

venv-v1: $(V1_STAMP)

## the main job: the production notebook series end to end on the embedded default
run: $(STAMP)
	$(BIN)/cvflow run $(if $(CONFIG),--config $(CONFIG),) $(ARGS)

## the test command CI runs
test: check-export check-clean lint nbtest pytest

## while developing (a few minutes): the same checks and every notebook's tests, pytest without the tests marked slow
## (servers, browsers, subprocess training, whole pipeline runs: `make test` still runs them)
test-quick: NB_WORKERS = 2
test-quick: check-export lint nbtest
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -m "not slow" tests

export: $(STAMP) index
	$(BIN)/nbdev_export

# nbs/index.ipynb (nbdev's home page, the docs site's first page) is made from README.md: one text for both
index: $(STAMP)
	$(BIN)/python docs/cvflow_docs.py

# Notebooks are the source: the committed package must be what nbdev_export makes of nbs/.
check-export: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- cvflow)" ]; then \
	  echo "cvflow/ is stale against nbs/: run nbdev_export and commit the result."; \
	  git status --porcelain -- cvflow; exit 1; fi

# pyflakes' checks (unused imports, undefined names) on the package nbdev_export writes
lint: $(STAMP)
	$(BIN)/ruff check cvflow --select F

check-clean: $(STAMP)
	$(BIN)/nbdev_clean
	@if [ -n "$$(git status --porcelain -- nbs)" ]; then \
	  echo "notebooks are not clean: run nbdev_clean and commit the result."; \
	  git status --porcelain -- nbs; exit 1; fi

nbtest: $(STAMP)
	rm -rf $(TEST_HOME) && mkdir -p $(TEST_HOME)
	CVFLOW_HOME=$(CURDIR)/$(TEST_HOME) MPLBACKEND=Agg $(BIN)/nbdev_test --n_workers $(NB_WORKERS) --timing

pytest: $(STAMP) $(V1_STAMP) chp
	MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

# JupyterHub's proxy for tests/test_jupyterhub.py (the VM's version, cvflow.infra.CHP_VERSION), from npm, project-local
CHP_VERSION := 4.6.3
CHP := build/chp/node_modules/.bin/configurable-http-proxy
chp:
	@if [ -x $(CHP) ]; then :; elif command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix build/chp configurable-http-proxy@$(CHP_VERSION); \
	else echo "npm is not installed: the JupyterHub browser test will skip (apt-get install nodejs npm)"; fi

clean-test:
	rm -rf $(TEST_HOME)

## the docs site: docs/_build/html/index.html (warnings are errors)
docs: $(STAMP)
	rm -rf $(DOCS_HOME) && mkdir -p $(DOCS_SRC) $(DOCS_HOME)
	CVFLOW_DOCS_HOME=$(CURDIR)/$(DOCS_HOME) CVFLOW_DOCS_SRC=$(CURDIR)/$(DOCS_SRC) \
	  $(BIN)/sphinx-build $(SPHINXOPTS) -b html -c docs -d build/docs-doctrees $(DOCS_SRC) $(DOCS_OUT)
	@echo "docs: $(DOCS_OUT)/index.html"

# the built site in headless Chromium (skips, saying why, without Chromium/Playwright or a built site)
docs-test: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_docs_site.py

clean-docs:
	rm -rf $(DOCS_OUT) docs/_build/jupyter_execute $(DOCS_SRC) build/docs-doctrees build/docs-cache $(DOCS_HOME)
