# The two entry points: `make demo` and `make test`. Both set up the virtual environment themselves.
# `make bench` (a few minutes) and `make bench-quick` (under a minute) measure the bot: bench/README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-dates faketime lint install clean bench bench-quick element-client

# The unit tests run again at other dates (libfaketime), so none depends on today: a minute
# before the spring and the autumn clock change in Europe/Berlin, and a leap day, years ahead.
# asyncio's clock stays real (DONT_FAKE_MONOTONIC). In CI a missing faketime is an error.
OTHER_DATES := 2028-03-26T00:59:30 2027-10-31T00:59:30 2032-02-29T11:00:00

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,demo]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m bot.devtools.demo

test: $(VENV)/.installed element-client
	$(VENV)/bin/ruff check bot commands storage tests bench
	$(MAKE) --no-print-directory test-dates
	$(PY) -m pytest -q

# The integration tests' Element-crypto client: matrix-js-sdk with its Rust crypto, the version
# pinned in tests/integration/element/package-lock.json, installed from the npm registry once
# (again only when the lock file changes). Without npm its tests are skipped; in CI that is an error.
ELEMENT_CLIENT := .cache/element-client
element-client: $(ELEMENT_CLIENT)/node_modules/.installed

$(ELEMENT_CLIENT)/node_modules/.installed: tests/integration/element/package.json tests/integration/element/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  if [ -n "$${CI:-}" ]; then echo "npm is missing: the Element client cannot be installed"; exit 1; fi; \
	  echo "npm is not installed: the tests with the Element client will be SKIPPED"; \
	else mkdir -p $(ELEMENT_CLIENT) && cp $^ $(ELEMENT_CLIENT)/ \
	  && (cd $(ELEMENT_CLIENT) && npm ci --no-audit --no-fund --loglevel=error) && touch $@; fi

faketime:
	@command -v faketime >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq faketime) >/dev/null 2>&1; } || true

test-dates: $(VENV)/.installed faketime
	@if ! command -v faketime >/dev/null; then \
	  if [ -n "$${CI:-}" ]; then echo "faketime is missing: the runs at other dates cannot run"; exit 1; fi; \
	  echo "faketime is not installed and could not be: the unit tests' runs at other dates were SKIPPED"; \
	else set -o pipefail; for at in $(OTHER_DATES); do \
	  printf 'unit tests on %s UTC (faketime): ' "$$at"; \
	  TZ=UTC DONT_FAKE_MONOTONIC=1 faketime -f "@$${at/T/ }" \
	    $(PY) -m pytest -q -p no:cacheprovider tests/unit > .test-dates.log 2>&1 \
	    && tail -n 1 .test-dates.log || { cat .test-dates.log; exit 1; }; \
	done; rm -f .test-dates.log; fi

bench: $(VENV)/.installed
	$(PY) -m bench.run

bench-quick: $(VENV)/.installed
	$(PY) -m bench.run --quick

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bot commands storage tests bench

clean:
	rm -rf $(VENV) .pytest_cache .cache
