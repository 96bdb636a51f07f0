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

.PHONY: env browser repro test readme lab clean-env

env: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (musecl)" >/dev/null
	$(BIN)/python -m musecl.stages.plots_page >/dev/null  # the offline `dvc plots show` template (Vega from a wheel)
	@rm -f $(VENV)/.installed-*
	@touch $@

repro: env
	DVC_NO_ANALYTICS=1 $(BIN)/dvc repro  # analytics and update check are also off in .dvc/config

# The explorer's browser test (tests/test_explorer.py) drives Debian's chromium and chromium-driver: installed here
# when absent (as root with apt-get), else a clear error.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver (the explorer's browser test)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "error: tests/test_explorer.py needs chromium and chromedriver; install them, e.g. 'sudo apt-get install chromium chromium-driver'"; \
	    exit 1; \
	  fi; }

test: env browser
	$(BIN)/python -m pytest -n auto --dist loadgroup  # one worker per core; tests/conftest.py groups the tests

# The README's results summary: reports/07_paper_figures/summary.md (written by the `figures` stage) copied between its
# markers; tests/test_readme.py fails while they differ.
readme: env
	$(BIN)/python -m musecl.readme

lab: env
	$(BIN)/jupyter lab notebooks/

# The open-data build tutorial (notebooks/01b_build_city.ipynb; not a pipeline stage, about 20 s, no network: its small
# example inputs are written locally): the executed copy in reports/notebooks/, its figures in reports/01b_build_city/.
.PHONY: tutorial
tutorial: env
	$(BIN)/python -m musecl.notebooks 01b_build_city

clean-env:
	rm -rf $(VENV)
