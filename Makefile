# digitscan: `make run` recognizes the example images, `make test` runs the whole suite. Each first installs what it
# needs and is missing, and only that: the virtual environment (.venv); for the tests also the Debian packages in
# scripts/system-deps.sh.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_MNIST := $(abspath ../shared/data/mnist)

# The real MNIST the tests read: an exported DIGITSCAN_DATA wins, else ../shared/data/mnist when it is there.
ifeq ($(DIGITSCAN_DATA),)
ifneq ($(wildcard $(SHARED_MNIST)),)
export DIGITSCAN_DATA := $(SHARED_MNIST)
endif
endif

.PHONY: setup system run test test-fast lint clean

# The virtual environment with digitscan and its test tools; rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The training extra pins torch==2.13.0: it resolves to the CPU wheel on disk. Inference alone needs none of it.
	$(BIN)/python -m pip install --quiet -e '.[test,train,ray]'
	touch $(STAMP)

# Only the Python side: .venv with digitscan installed (the CLI is then .venv/bin/digitscan).
setup: $(STAMP)

# The Debian packages (`bash scripts/system-deps.sh --list`): installed when missing (as root), silent when present.
system:
	@bash scripts/system-deps.sh

# Recognize the example images with the shipped model (it needs only .venv: no Debian package).
run: $(STAMP)
	$(BIN)/digitscan predict examples/*.png examples/*.jpg
	$(BIN)/digitscan read examples/numbers/
	$(BIN)/digitscan read --format amount examples/fields/amount_1.250,00_cheque.png
	$(BIN)/digitscan read --layout page examples/forms/form_9_fields.png

# The whole test suite, slow tests included.
test: system $(STAMP)
	$(BIN)/python -m pytest -q

# The quick loop: the suite without the tests marked slow (under 3 minutes on 2 cores).
test-fast: system $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The house rules alone (the suite runs them too, in tests/test_layout.py): ruff, and the import layers.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports

# Remove the virtual environment and build leftovers.
clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
