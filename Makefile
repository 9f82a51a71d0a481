# vinr — `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TS := sdk/typescript
SDK_PY := sdk/python

.PHONY: install services browser demo test test-py test-sdk-py test-sdk-dist test-ts test-guide lint bench clean

$(STAMP): pyproject.toml $(SDK_PY)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet -e ./$(SDK_PY)
	touch $(STAMP)

$(TS)/node_modules/.package-lock.json: $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error

# promtool checks and unit-tests the alert rules (tests/deploy): the one on PATH, else the
# one in Debian's prometheus package, unpacked rather than installed (installing would
# start a Prometheus service).
PROMTOOL := $(VENV)/tools/promtool

$(PROMTOOL): | $(STAMP)
	mkdir -p $(VENV)/tools
	@if command -v promtool >/dev/null 2>&1; then ln -sf "$$(command -v promtool)" $@; else \
	  echo "unpacking promtool from Debian's prometheus package"; \
	  tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download -qq prometheus 2>/dev/null || \
	    { $$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get update -qq && apt-get download -qq prometheus; }; } && \
	  dpkg -x prometheus_*.deb root && cp root/usr/bin/promtool $(CURDIR)/$@ && \
	  cd $(CURDIR) && rm -rf $$tmp; fi
	$@ --version | head -1

install: $(STAMP) $(TS)/node_modules/.package-lock.json $(PROMTOOL)

# The browser tests drive Debian's chromium (never a browser build of Playwright's own).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@echo "installing Debian's chromium for the Dashboard's browser tests"
	$$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" -eq 0 ] || echo sudo -E ) \
	  apt-get install -y -qq --no-install-recommends chromium

browser: $(CHROMIUM)

# Postgres and Redis on 127.0.0.1; started here when they do not answer.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; \
	  for i in $$(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done; }
	@pg_isready -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping

demo: install services
	$(BIN)/vinr migrate
	$(BIN)/python -m vinr.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd $(SDK_PY) && $(CURDIR)/$(BIN)/mypy

test-py: install services browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-sdk-py: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(SDK_PY)/tests

test-sdk-dist: install
	$(BIN)/python $(SDK_PY)/tools/check_install.py

test-ts: install
	cd $(TS) && npm test

test-guide: install services
	$(BIN)/python -m tests.guide_harness

test: lint test-py test-sdk-py test-sdk-dist test-ts test-guide

bench: install services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TS)/node_modules $(TS)/dist $(TS)/dist-guide .mypy_cache .ruff_cache \
	  $(SDK_PY)/.mypy_cache
