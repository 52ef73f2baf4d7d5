# The two entry points: `make demo` and `make test`. Both set up the virtual environment themselves.
# `make bench` (a few minutes) and `make bench-quick` (under a minute) measure the bot: bench/README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install clean bench bench-quick

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,demo]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m bot.demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check bot commands storage tests bench
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m bench.run

bench-quick: $(VENV)/.installed
	$(PY) -m bench.run --quick

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bot commands storage tests bench

clean:
	rm -rf $(VENV) .pytest_cache
