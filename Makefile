# The two commands of README.md: `make demo` and `make test`. Each creates .venv and installs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test dev bench lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ml-connector demo

# Test files run on four workers (pytest-xdist), each file whole on one of them and the longest
# first (tests/conftest.py LONGEST_FIRST, kept in that order by --no-loadscope-reorder): each worker
# has its own Temporal dev server and sandboxes, and the end-to-end tests mostly wait (on two
# cores, four workers keep ~1.5 of them busy and took 7:08-8:56 where three took 8:39-9:46).
# TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

dev: $(STAMP)
	$(BIN)/ml-connector dev

# Every benchmark of BENCHMARKS.md at a size that fits in ~10 minutes; BENCH_FULL=1 runs the
# full sizes (10,000 SKUs, 100,000 orders, ...). Rows print as they finish.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(filter 1,$(BENCH_FULL)),--full) --out bench/last-run.json

# requirements.lock: the production image's exact dependencies, with hashes (Dockerfile). The
# runtime dependencies of pyproject.toml plus its build-system requires (the image builds the
# project without build isolation). uv runs from a throwaway venv, never a project dependency.
LOCK_VENV := $(or $(TMPDIR),/tmp)/ml-connector-lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet uv
	printf 'setuptools>=68\nwheel\n' | $(LOCK_VENV)/bin/uv pip compile pyproject.toml - \
		--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		-o requirements.lock --custom-compile-command \
		'make lock  # uv pip compile pyproject.toml - --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu  (stdin: the build-system requires)'
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) .ml-connector .pytest_cache
