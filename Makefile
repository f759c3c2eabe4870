# A newcomer's two commands: `make demo` (stack up + the main job) and `make test` (lint, types, the suite).
# Each installs what it needs first: system packages, the venv, the servers' jars. Recipes are not
# echoed: what they print is what a person needs to read.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup system system-test venv fetch demo test test-fast lint down

setup: system venv

system:
	@bash deploy/install-system.sh

system-test:
	@bash deploy/install-system.sh test

venv: $(VENV)/.installed

# pip's output goes to a log that is shown only when the install fails.
$(VENV)/.installed: pyproject.toml
	@echo "installing ShopFlow and its Python packages into $(VENV) (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[test]'; } > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; echo "error: installing into $(VENV) failed (output above)" >&2; exit 1; }
	@touch $@

# Downloads the servers' jars once; silent when they are cached.
fetch: setup
	@$(BIN)/shopflow stack fetch

demo: fetch
	@$(BIN)/shopflow stack up
	@$(BIN)/shopflow demo

# ruff (lint, import order) and mypy (types, on the installed package names: see .ci/typecheck.py);
# a finding fails the target with the file, line and rule.
lint: venv
	@ruff=0; $(BIN)/ruff check --quiet . || ruff=1; $(BIN)/python .ci/typecheck.py && exit $$ruff

# Lint and types first, then the fast tests (no servers), then the integration tests on one shared
# stack of real servers.
test: lint fetch system-test
	@$(BIN)/python -m pytest -q -m "not integration"
	@$(BIN)/python -m pytest -q -m integration

test-fast: lint
	@$(BIN)/python -m pytest -q -m "not integration"

down: venv
	@$(BIN)/shopflow stack down
