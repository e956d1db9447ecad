# The two commands of a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell sha1sum pyproject.toml | cut -c1-10)
RUNTIME_STAMP := $(VENV)/.runtime-$(DEPS_HASH)
DEV_STAMP := $(VENV)/.dev-$(DEPS_HASH)
REDIS_URL ?= redis://127.0.0.1:6379/0
# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-m "not browser"'` for a quick loop.
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck services bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/whylens demo

services: $(DEV_STAMP)
	@$(PY) scripts/ensure_redis.py "$(REDIS_URL)"
	@$(PY) scripts/ensure_chromium.py
	@$(PY) scripts/ensure_promtool.py "$(VENV)/bin"

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check service explainers storage tests bench scripts
	$(VENV)/bin/lint-imports

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

test: services lint
	WHYLENS_TEST_REDIS_URL="$(REDIS_URL)" $(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: services
	$(PY) -m bench.explain_latency
	$(PY) -m bench.drift

clean:
	rm -rf $(VENV) .whylens .pytest_cache .mypy_cache .ruff_cache
