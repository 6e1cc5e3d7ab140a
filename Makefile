# TheraBoard: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501
export THERABOARD_DATA_DIR ?= $(CURDIR)/data
# apt-get needs root; CI runs as root, a developer may need sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system-deps demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch==2.13.0 is pinned in requirements.txt: the CPU wheel this machine carries, never CUDA wheels.
$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.deps requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.deps
	mkdir -p "$(THERABOARD_DATA_DIR)"
	$(BIN)/python -m core init --demo-if-empty
	$(BIN)/streamlit run app.py --server.address localhost --server.port $(PORT)

# Debian packages the tests need: Chromium for the browser tests, PostgreSQL for the store tests.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

test: $(VENV)/.test-deps system-deps
	$(BIN)/python -m pytest

demo: $(VENV)/.deps
	$(BIN)/python -m core demo --out "$(THERABOARD_DATA_DIR)/demo/cli" --import

bench: $(VENV)/.test-deps system-deps
	$(BIN)/python benchmarks/viewer.py
	$(BIN)/python benchmarks/kinetics.py
	$(BIN)/python benchmarks/radiomics.py
	$(BIN)/python benchmarks/learning.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
