# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/rdbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## setup: the virtual environment, the host's packages (Docker engine, bubblewrap, Chromium), the sandbox image
setup: $(BIN)/rdbench
	PYTHON=$(BIN)/python bash scripts/setup-host.sh
	@if $(BIN)/python -c 'import docker; docker.from_env(timeout=5).ping()' 2>/dev/null; then \
		$(BIN)/rdbench image build; \
	else echo "setup: no Docker engine, so no sandbox image"; fi

## demo: the oracle and the null agent on the default task, with their scores
demo: setup
	$(BIN)/rdbench demo

## test: lint, type check, then the whole test suite
test: setup lint
	$(BIN)/pytest

lint: $(BIN)/rdbench
	$(BIN)/ruff check rdbench agents tests bench
	$(BIN)/mypy rdbench agents

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
