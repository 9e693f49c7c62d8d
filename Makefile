# genpool — the README's two commands: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test deps venv lint bench soak up down clean unit integration

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml setup.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# redis-server comes from Debian's package; install it when missing and we are root. Chromium and its
# driver (the gateway's browser test) likewise; without them, and not root, that one test is skipped.
deps: venv
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null); \
	  else \
	    echo "redis-server is missing: run 'sudo apt-get install -y redis-server' and try again" >&2; exit 1; \
	  fi; }
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null); \
	  else \
	    echo "chromium / chromedriver missing (sudo apt-get install -y chromium chromium-driver): the browser test is skipped" >&2; \
	  fi; }

run: deps
	$(BIN)/python -m genpool.devstack.demo

test: deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: deps
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

integration: deps
	$(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

# ruff, no old-style imports left, and mypy --strict on the three library packages. mypy cannot follow the
# editable install's import hook, so it reads the installed layout from a tree of symlinks (build/typecheck).
TYPECHECK := build/typecheck
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python devstack/rewrite_imports.py --check
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/genpool
	@ln -s ../../../genpool/__init__.py ../../../genpool/cli $(TYPECHECK)/genpool/
	@for d in shared producer worker ops sim devstack; do ln -s ../../../$$d $(TYPECHECK)/genpool/$$d; done
	cd $(TYPECHECK) && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p genpool.shared -p genpool.producer -p genpool.worker

bench: deps
	$(BIN)/python -m bench.run_all

# Worker memory over 20 minutes at load (~22 min): not part of `make bench`; figures in RELIABILITY.md.
soak: deps
	$(BIN)/python -m bench.run_all --only bench_soak --out bench/results/SOAK.md

# A long-lived local stack (Procfile, run by honcho in the background) and its stop; see the README.
up: deps
	$(BIN)/python -m genpool.devstack.up start

down: venv
	$(BIN)/python -m genpool.devstack.up stop

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache build
