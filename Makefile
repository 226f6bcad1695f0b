# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-stress unit lint bench bench-quick clean

setup: $(STAMP)

$(STAMP): setup.cfg setup.py
	@$(PYTHON) -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('magic') else 1)" \
	  || { echo "installing libmagic (for --content-type magic)"; \
	       apt-get update -qq && apt-get install -y -qq libmagic1 >/dev/null; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); apt-get update -qq && \
	  apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(PY) -m devtools.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

# The whole suite with two CPU hogs beside it (not in CI): RUNS=5 for five runs in a row.
RUNS ?= 1
test-stress: $(STAMP)
	$(PY) -m devtools.stress --runs $(RUNS)

unit: $(STAMP)
	$(PY) -m pytest -q tests -m "not server"

lint: $(STAMP)
	$(VENV)/bin/ruff check s3pput tests bench devtools

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $@

# loopback (13-18 minutes on 2 cores), then the WAN runs through a latency proxy (about 35)
bench: $(VENV)/.bench-installed
	$(PY) -m bench
	$(PY) -m bench --wan

.PHONY: bench-wan
bench-wan: $(VENV)/.bench-installed
	$(PY) -m bench --wan

# smoke runs (CI): loopback, then the WAN smoke (40 ms, 200 and 600 files, s3pput and s5cmd)
bench-quick: $(VENV)/.bench-installed
	$(PY) -m bench --quick
	$(PY) -m bench --wan --quick

clean:
	rm -rf $(VENV) build *.egg-info bench/results
