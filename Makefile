# Strongroom: `make run` starts the platform, `make test` runs the whole suite.
# Needs only python3 (>= 3.11), git and make: uv is bootstrapped into .tools/.

PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_PREFERENCE := only-system
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint fmt bench openapi clean install

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5,<1'

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.synced

run: $(VENV)/.synced
	$(VENV)/bin/strongroom up

# Unit and integration tests in two processes (each PostgreSQL test has its own database);
# end-to-end tests, which start whole platforms and time what they see, one at a time.
# Both halves always run; the target fails if either does.
test: $(VENV)/.synced
	@status=0; \
	$(VENV)/bin/python -m pytest -n 2 tests/unit tests/integration || status=1; \
	$(VENV)/bin/python -m pytest tests/e2e tests/conformance || status=1; \
	exit $$status

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

fmt: $(VENV)/.synced
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: $(VENV)/.synced
	$(VENV)/bin/python bench/edge.py

openapi: $(VENV)/.synced
	$(VENV)/bin/strongroom openapi --output docs/openapi.json

clean:
	rm -rf $(VENV) $(TOOLS) .strongroom .pytest_cache .mypy_cache .ruff_cache
