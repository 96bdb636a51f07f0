# Two commands do everything on a fresh machine with Python 3.11:
#   make repro   set up the environment if needed, then run the whole pipeline (`dvc repro`) on the embedded default city
#   make test    set up the environment if needed, then run the whole test suite (every notebook runs on `tiny`)
# The environment is a virtualenv in .venv installed from the pinned requirements/lock.txt; it is rebuilt when the lock
# or pyproject.toml changes.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
# Deterministic hashing (Word2Vec, set ordering) in every process the pipeline starts.
export PYTHONHASHSEED := 0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env repro test lab clean-env

env: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musecl)" >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@

repro: env
	$(BIN)/dvc repro

test: env
	$(BIN)/python -m pytest

lab: env
	$(BIN)/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
