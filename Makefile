# The two commands of the README:
#   make demo   runs the engine end to end on the embedded default (own Kafka broker and Redis)
#   make test   lint + type check + unit + integration tests (what .ci/run calls)
# Both bootstrap what they need, idempotently: Debian packages (when root), the virtualenv, the Kafka jars.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bootstrap lint typecheck unit integration schemas

demo: bootstrap
	$(BIN)/nba demo

test: bootstrap lint typecheck
	$(BIN)/pytest

bootstrap: $(VENV)/.installed
	@bash deploy/bootstrap-system.sh
	@$(BIN)/nba infra fetch

# The first install fills .venv with about 2.1 GB (du -sh .venv); pip's own lines show progress.
$(VENV)/.installed: pyproject.toml
	@echo "nba: creating $(VENV) and installing the Python dependencies (minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest -m "not integration"

integration: bootstrap
	$(BIN)/pytest -m integration
