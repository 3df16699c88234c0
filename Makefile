PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[test,export]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m sashimi.train

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt ruff
	$(BIN)/ruff check sashimi reference tests tools specs
	$(BIN)/ruff format --check sashimi reference tests tools specs

clean:
	rm -rf $(VENV) build *.egg-info
