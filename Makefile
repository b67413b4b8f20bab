# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test lint bench reliability reliability-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pik demo

up: $(STAMP)
	$(BIN)/pik up

test: $(STAMP)
	tests/tools/ensure-chromium
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint --include-checks I -- infra/template.yaml

# The reliability suite: pytest form (short, run by CI) and the long form with its figures table;
# both print the same table. The tap's crash and fault rows also run on npm kinesis-local
# (installed into .cache/ on first use by tests/emulators.py; needs node and npm).
reliability-quick: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile -m reliability tests/reliability

reliability: $(STAMP)
	$(BIN)/python bench/reliability.py

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/tap.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/cost.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
