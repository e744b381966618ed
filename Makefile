# Two commands: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheels unless the machine has an NVIDIA driver (see README for GPU installs).
CONSTRAINTS ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints-cpu.txt")
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/optbench compare $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/harness_overhead.py

clean:
	rm -rf $(VENV) optbench-out
