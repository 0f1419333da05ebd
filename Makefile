# Stagecast: `make run` serves the studio, `make test` runs the whole suite.
# Both set up .venv and the browser assets first (idempotent: fast when nothing changed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_DEV  := $(VENV)/.stamp-dev
ASSETS := src/stagecast/web/static/vendor/.assets
# Three workers on two cores: many tests wait on real-time media (ffmpeg -re) or a browser, so
# they overlap well (the whole suite stays under 10 minutes here).
PYTEST_ARGS ?= -n 3

.PHONY: run test lint format bench setup clean assets

run: $(STAMP_RUN) $(ASSETS)
	$(BIN)/stagecast serve

test: $(STAMP_DEV) $(ASSETS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP_DEV)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

bench: $(STAMP_DEV) $(ASSETS)
	$(BIN)/python -m bench $(BENCH_ARGS)

setup: $(STAMP_DEV) $(ASSETS)

assets: $(ASSETS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

$(ASSETS): web/package-lock.json scripts/fetch_assets.py | $(BIN)/python
	$(BIN)/python scripts/fetch_assets.py
	touch $@

clean:
	rm -rf $(VENV) .cache src/stagecast/web/static/vendor build .pytest_cache .mypy_cache .ruff_cache
