# A newcomer's two commands: `make demo` (stack up + the main job) and `make test` (the suite).
# Each installs what it needs first: system packages, the venv, the servers' jars.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup system venv fetch demo test test-fast test-integration down

setup: system venv

system:
	@bash deploy/install-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

fetch: setup
	$(BIN)/shopflow stack fetch

demo: fetch
	$(BIN)/shopflow stack up
	$(BIN)/shopflow demo

# Fast tests first (no servers), then the integration tests on one shared stack of real servers.
test: fetch
	$(BIN)/python -m pytest -m "not integration"
	$(BIN)/python -m pytest -m integration

test-fast: venv
	$(BIN)/python -m pytest -m "not integration"

down: venv
	$(BIN)/shopflow stack down
