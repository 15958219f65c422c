# The two commands of README.md: `make demo` and `make test`. Each creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test dev bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ml-connector demo

test: $(STAMP)
	$(BIN)/python -m pytest

dev: $(STAMP)
	$(BIN)/ml-connector dev

# Every benchmark of BENCHMARKS.md at a size that fits in ~10 minutes; BENCH_FULL=1 runs the
# full sizes (10,000 SKUs, 100,000 orders, ...). Rows print as they finish.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(filter 1,$(BENCH_FULL)),--full) --out bench/last-run.json

clean:
	rm -rf $(VENV) .ml-connector .pytest_cache
