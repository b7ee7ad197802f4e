# The README's commands. `make demo` sets up and runs everything a first session needs; `make test` runs every
# check and test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo check test unit down bench-up clean

# the package with its runtime dependencies: enough for `tradesim provision`, so `make test` starts its Go builds
# while the development and infra extras install
$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(BIN)/pip install -q -e '.[dev,infra]'
	touch $@

install: $(VENV)/.installed

# the stack, the standard jobs, a live market and a `demo` account; opens the TUI when run in a terminal
demo: install
	$(BIN)/tradesim up --demo

check: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Unit tests need no server; integration tests bring the stack up themselves (and stop it again at the end
# if it was not running before). `tradesim smoke` runs among them on the tests' stack, with one component stopped
# for it to start and stop again (tests/integration/runs/test_runs.py): one stack start fewer than a step of its own.
test: $(VENV)/.core
	mkdir -p build
	# The test stack runs Toxiproxy and traces (tests/integration/conftest.py), and both are Go builds: Toxiproxy's
	# takes a minute, Jaeger's several (unoptimized for the tests: 40 % less CPU). They build in the background
	# (their own process group) from the start, while the extras install and the checks and unit tests run; the tests'
	# `up` waits for Jaeger through its provisioning lock (in the cache), and whatever is left is stopped when the recipe ends.
	TRADESIM_CHAOS__ENABLED=true TRADESIM_TRACING__ENABLED=true TRADESIM_TRACING__OPTIMIZED_BUILD=false \
		setsid nice -n 10 \
		$(BIN)/tradesim provision --only toxiproxy,jaeger > build/provision-go.log 2>&1 & build=$$!; \
	trap 'kill -- -$$build 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory check && \
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

down: install
	$(BIN)/tradesim down

bench-up: install
	$(BIN)/tradesim bench up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
