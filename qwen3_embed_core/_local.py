"""The local backend: a GGUF file run in-process by llama-cpp-python.

It drives llama.cpp's C API directly (through llama-cpp-python's ctypes
bindings) instead of ``Llama.embed`` because the things that make vectors
right and fast live below that method:

* tokens come from ``llama_tokenize`` *without* special handling and the EOS
  id is appended here, so every sequence ends in exactly one EOS whatever
  ``tokenizer.ggml.add_eos_token`` says;
* nothing is cut at ``n_batch``: a long text is fed in chunks into a KV cache
  sized to the work (never 32K up front);
* a pack is decoded in two phases. llama.cpp computes the vocabulary-sized
  output layer for *every* token in embedding mode, which for Qwen3-0.6B is
  about a quarter of the work and a 600 KB logits row per token. So all but
  the last token of each sequence are decoded with embeddings off and no
  outputs (filling the KV cache), then the last tokens alone with embeddings
  on. Causal attention makes the result identical.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import BackendError, ConfigurationError, TextTooLongError, missing_dependency
from ._packing import Pack, default_budget, plan_packs
from ._qwen3 import POOLING_LAST

logger = logging.getLogger("qwen3_embed_core.local")

# Texts per decode; the token budget comes from the model's shape (_packing).
DEFAULT_MAX_SEQUENCES = 64

_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR,
               4: logging.DEBUG}
_recent_errors: deque[str] = deque(maxlen=8)
_log_callback: Any = None
_init_lock = threading.Lock()


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise missing_dependency("llama-cpp-python", "local", exc) from exc
    return llama_cpp


def _install_logging(llama_cpp: Any) -> None:
    """Route llama.cpp's log lines to the ``qwen3_embed_core.llama_cpp`` logger.

    Errors are also kept so an exception can say what llama.cpp reported.
    """
    global _log_callback
    with _init_lock:
        if _log_callback is not None:
            return
        llama_log = logging.getLogger("qwen3_embed_core.llama_cpp")
        last = [logging.DEBUG]

        def callback(level: int, text: bytes, _user: Any) -> None:
            lvl = last[0] if level == 5 else _LOG_LEVELS.get(level, logging.DEBUG)
            last[0] = lvl
            line = text.decode("utf-8", "replace").rstrip()
            if lvl >= logging.ERROR:
                _recent_errors.append(line)
                llama_log.error(line)
            else:
                # Below error, llama.cpp's lines are diagnostics for its developers.
                llama_log.debug(line)

        _log_callback = llama_cpp.llama_log_callback(callback)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()


def physical_cores() -> int:
    """Physical cores this process may run on (llama.cpp is slower on SMT siblings)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as f1, open(base + "core_id") as f2:
                cores.add((f1.read().strip(), f2.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


class _Batch:
    """A ``llama_batch`` whose arrays are numpy buffers, filled without per-token ctypes calls."""

    def __init__(self, llama_cpp: Any, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.output = np.zeros(capacity, dtype=np.int8)
        # seq_id is an array of pointers, one per token, each to that token's one seq id.
        self._seq_ptrs = (np.arange(capacity, dtype=np.uint64) * 4 + self.seq.ctypes.data).astype(
            np.uint64
        )
        c_int32_p = ctypes.POINTER(ctypes.c_int32)
        self.struct = llama_cpp.llama_batch()
        self.struct.token = self.token.ctypes.data_as(c_int32_p)
        self.struct.embd = ctypes.cast(None, ctypes.POINTER(ctypes.c_float))
        self.struct.pos = self.pos.ctypes.data_as(c_int32_p)
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(c_int32_p)
        self.struct.seq_id = ctypes.cast(self._seq_ptrs.ctypes.data, ctypes.POINTER(c_int32_p))
        self.struct.logits = self.output.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, tokens: np.ndarray, seq: int, pos0: int, output: bool) -> None:
        n, i = len(tokens), self.n
        self.token[i : i + n] = tokens
        self.pos[i : i + n] = np.arange(pos0, pos0 + n, dtype=np.int32)
        self.seq[i : i + n] = seq
        self.output[i : i + n] = 1 if output else 0
        self.n += n

    def ready(self) -> Any:
        self.struct.n_tokens = self.n
        return self.struct


class LocalBackend:
    """Embeds already-formatted texts with a GGUF file in this process.

    Thread-safe: one lock serialises use of the llama.cpp context, so
    concurrent callers get exactly the vectors they would get alone.
    """

    name = "local"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        max_tokens: int | None = None,
        truncate: bool = False,
        n_threads: int | None = None,
        batch_tokens: int | None = None,
        ubatch_tokens: int | None = None,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        flash_attention: bool | None = False,
        n_gpu_layers: int = 0,
        repack: bool = False,
        model_name: str | None = None,
    ) -> None:
        llama_cpp = _llama_cpp()
        _install_logging(llama_cpp)
        self._llama = llama_cpp
        self.path = Path(model_path)
        self.model_name = model_name or self.path.name
        if (batch_tokens is not None and batch_tokens < 2) or (
            ubatch_tokens is not None and ubatch_tokens < 1
        ) or max_sequences < 1:
            raise ConfigurationError(
                "batch_tokens must be >= 2, ubatch_tokens and max_sequences >= 1"
            )
        self.max_sequences = min(max_sequences, int(llama_cpp.llama_max_parallel_sequences()))
        self.n_threads = n_threads or physical_cores()
        self.truncate = truncate
        if flash_attention is None:
            self._flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        elif flash_attention:
            self._flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        else:
            self._flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED

        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        # llama.cpp's extra CPU buffer types repack quantized weights for AMX and
        # friends. On AMX CPUs this version's AMX kernels crash on short inputs
        # with Q8_0 weights (ggml-org/llama.cpp#20824) and were slower than the
        # plain kernels in our benchmark, so they are off unless asked for.
        params.use_extra_bufts = repack
        _recent_errors.clear()
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not model:
            detail = "; ".join(_recent_errors) or "no detail from llama.cpp"
            raise BackendError(f"llama.cpp could not load {self.path}: {detail}")
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.eos_id = int(llama_cpp.llama_vocab_eos(self._vocab))
        self._bos = (
            [int(llama_cpp.llama_vocab_bos(self._vocab))]
            if llama_cpp.llama_vocab_get_add_bos(self._vocab)
            else []
        )
        self.full_dimensions = int(llama_cpp.llama_model_n_embd(model))
        self.context_tokens = int(llama_cpp.llama_model_n_ctx_train(model))
        self.max_tokens = min(max_tokens or self.context_tokens, self.context_tokens)
        self.metadata = self._metadata()
        arch = self.metadata.get("general.architecture")
        self.batch_tokens = batch_tokens or self._shape_budget(arch)
        self.ubatch_tokens = min(ubatch_tokens or self.batch_tokens, self.batch_tokens)
        if arch != "qwen3":
            warnings.warn(
                f"{self.path.name} is a {arch!r} model, not qwen3: the Qwen3 instruction format "
                "and last-token pooling may not suit it",
                stacklevel=3,
            )
        self.file_adds_eos = self.metadata.get("tokenizer.ggml.add_eos_token") == "true"
        if not self.file_adds_eos:
            logger.info(
                "%s lacks tokenizer.ggml.add_eos_token; appending EOS (id %d) ourselves",
                self.path.name, self.eos_id,
            )
        self._ctx: Any = None
        self._ctx_size = 0
        self._batch: _Batch | None = None
        self._lock = threading.Lock()

    # -- model facts -------------------------------------------------------

    def _metadata(self) -> dict[str, str]:
        llama_cpp, out = self._llama, {}
        buf = ctypes.create_string_buffer(1024)
        for i in range(int(llama_cpp.llama_model_meta_count(self._model))):
            n = llama_cpp.llama_model_meta_key_by_index(self._model, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", "replace")
            n = llama_cpp.llama_model_meta_val_str_by_index(self._model, i, buf, len(buf))
            if n >= 0:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def _shape_budget(self, arch: str | None) -> int:
        meta = self.metadata

        def key(name: str, default: int) -> int:
            return int(meta.get(f"{arch}.{name}", default))

        n_head = key("attention.head_count", 16)
        head_dim = key("attention.key_length", self.full_dimensions // n_head)
        return default_budget(
            self.full_dimensions, n_head, key("attention.head_count_kv", n_head), head_dim,
            key("feed_forward_length", 3 * self.full_dimensions),
        )

    def tokenize(self, text: str) -> list[int]:
        """Token ids for ``text``, ending in exactly one EOS (BOS only if the file asks)."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        # parse_special=False: text that spells "<|endoftext|>" stays text, so
        # the only EOS in the sequence is the one appended below.
        n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, cap, False, False)
        if n < 0:
            cap = -n
            buf = (ctypes.c_int32 * cap)()
            n = self._llama.llama_tokenize(self._vocab, data, len(data), buf, cap, False, False)
        if n < 0:
            raise BackendError(f"llama.cpp failed to tokenize a text of {len(data)} bytes")
        return [*self._bos, *buf[:n], self.eos_id]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    # -- embedding ---------------------------------------------------------

    def _limit(self, tokens: list[int], index: int) -> list[int]:
        n, limit = len(tokens), self.max_tokens
        if n <= limit:
            return tokens
        if not self.truncate:
            raise TextTooLongError(
                f"text at index {index} has {n} tokens (EOS included) but the limit is {limit}; "
                "split it into chunks, or pass truncate=True to cut it (with a warning)",
                index, n, limit,
            )
        warnings.warn(
            f"text at index {index} has {n} tokens; truncated to {limit} (EOS kept)",
            stacklevel=4,
        )
        return [*tokens[: limit - 1], self.eos_id]

    def _ensure_context(self, needed: int) -> None:
        """A context whose KV cache holds ``needed`` tokens, grown in powers of two."""
        size = max(256, self.batch_tokens)
        while size < needed:
            size *= 2
        size = min(size, max(self.max_tokens, self.batch_tokens))
        if self._ctx is not None and self._ctx_size >= needed and self._ctx_size <= 4 * size:
            return
        self._free_context()
        llama_cpp = self._llama
        p = llama_cpp.llama_context_default_params()
        p.n_ctx = size
        p.n_batch = self.batch_tokens
        p.n_ubatch = self.ubatch_tokens
        p.n_seq_max = self.max_sequences
        p.n_threads = p.n_threads_batch = self.n_threads
        p.embeddings = True
        p.pooling_type = POOLING_LAST
        p.kv_unified = True
        p.flash_attn_type = self._flash
        p.no_perf = True
        _recent_errors.clear()
        ctx = llama_cpp.llama_init_from_model(self._model, p)
        if not ctx:
            detail = "; ".join(_recent_errors) or "out of memory?"
            raise BackendError(f"llama.cpp could not create a context of {size} tokens: {detail}")
        self._ctx, self._ctx_size = ctx, size
        if self._batch is None:
            self._batch = _Batch(llama_cpp, self.batch_tokens)

    def _free_context(self) -> None:
        if self._ctx is not None:
            self._llama.llama_free(self._ctx)
            self._ctx, self._ctx_size = None, 0

    def _decode(self, embeddings: bool) -> None:
        llama_cpp = self._llama
        assert self._batch is not None
        llama_cpp.llama_set_embeddings(self._ctx, embeddings)
        _recent_errors.clear()
        rc = llama_cpp.llama_decode(self._ctx, self._batch.ready())
        self._batch.clear()
        if rc != 0:
            detail = "; ".join(_recent_errors) or f"return code {rc}"
            raise BackendError(f"llama_decode failed: {detail}")

    def _run_pack(self, pack: Pack, seqs: list[np.ndarray], out: np.ndarray) -> None:
        """Decode one pack: bodies with no outputs, then every last token with embeddings on."""
        batch = self._batch
        assert batch is not None
        llama_cpp = self._llama
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        if pack.alone:
            body = seqs[pack.indices[0]][:-1]
            for start in range(0, len(body), self.batch_tokens):
                batch.add(body[start : start + self.batch_tokens], 0, start, False)
                self._decode(embeddings=False)
        else:
            for s, i in enumerate(pack.indices):
                batch.add(seqs[i][:-1], s, 0, False)
            self._decode(embeddings=False)
        for s, i in enumerate(pack.indices):
            batch.add(seqs[i][-1:], s, len(seqs[i]) - 1, True)
        self._decode(embeddings=True)
        n = self.full_dimensions
        for s, i in enumerate(pack.indices):
            ptr = llama_cpp.llama_get_embeddings_seq(self._ctx, s)
            if not ptr:
                raise BackendError(f"llama.cpp returned no embedding for text at index {i}")
            out[i] = np.ctypeslib.as_array(ptr, shape=(n,))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Raw (unnormalised) last-token states, shape (len(texts), full_dimensions)."""
        with self._lock:
            if self._model is None:
                raise BackendError("this embedder is closed")
            seqs = [
                np.asarray(self._limit(self.tokenize(t), i), dtype=np.int32)
                for i, t in enumerate(texts)
            ]
            lengths = [len(s) for s in seqs]
            packs = plan_packs(lengths, self.batch_tokens, self.max_sequences)
            out = np.empty((len(texts), self.full_dimensions), dtype=np.float32)
            self._ensure_context(max(lengths))
            try:
                for pack in packs:
                    self._run_pack(pack, seqs, out)
            finally:
                self._llama.llama_memory_clear(self._llama.llama_get_memory(self._ctx), True)
            return out

    def close(self) -> None:
        with self._lock:
            self._free_context()
            if getattr(self, "_model", None) is not None:
                self._llama.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
