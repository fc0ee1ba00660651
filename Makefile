# Two commands on a fresh clone: `make demo` and `make test`.
# Both create .venv and install the project with every extra (llama-cpp-python
# compiles llama.cpp from source: several minutes the first time).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint llama-server bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# llama-server built from llama-cpp-python's own llama.cpp tree, cached in ~/.cache/qwen3-embed.
llama-server: $(STAMP)
	PYTHON=$(BIN)/python .ci/build-llama-server

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) llama-server
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# Throughput, HTTP, ingestion and memory figures (about 17 minutes on 2 cores).
bench: $(STAMP) llama-server
	$(BIN)/python benchmarks/throughput.py

bench-quick: $(STAMP) llama-server
	$(BIN)/python benchmarks/throughput.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
