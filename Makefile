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

.PHONY: run test venv export check-export check-clean nbtest pytest clean-test

$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

## the main job: the production notebook series end to end on the embedded default
run: $(STAMP)
	$(BIN)/cvflow run $(if $(CONFIG),--config $(CONFIG),) $(ARGS)

## the test command CI runs
test: check-export check-clean nbtest pytest

export: $(STAMP)
	$(BIN)/nbdev_export

# Notebooks are the source: the committed package must be what nbdev_export makes of nbs/.
check-export: $(STAMP)
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- cvflow)" ]; then \
	  echo "cvflow/ is stale against nbs/: run nbdev_export and commit the result."; \
	  git status --porcelain -- cvflow; exit 1; fi

check-clean: $(STAMP)
	$(BIN)/nbdev_clean
	@if [ -n "$$(git status --porcelain -- nbs)" ]; then \
	  echo "notebooks are not clean: run nbdev_clean and commit the result."; \
	  git status --porcelain -- nbs; exit 1; fi

nbtest: $(STAMP)
	rm -rf $(TEST_HOME) && mkdir -p $(TEST_HOME)
	CVFLOW_HOME=$(CURDIR)/$(TEST_HOME) MPLBACKEND=Agg $(BIN)/nbdev_test --n_workers $(NB_WORKERS) --timing

pytest: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

clean-test:
	rm -rf $(TEST_HOME)
