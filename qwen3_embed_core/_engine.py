"""The llama.cpp machinery shared by the local embedder and the local reranker.

An :class:`Engine` owns one GGUF model, one llama.cpp context and one batch,
and turns token sequences into one output row each. It drives llama.cpp's C
API directly (through llama-cpp-python's ctypes bindings) because what makes
results right and fast lives below ``Llama.embed``:

* nothing is cut at ``n_batch``: a long sequence is fed in chunks into a KV
  cache sized to the work (never 32K up front);
* sequences are packed into shared decodes (:mod:`._packing`), and sequences
  that start with the same token ids share one decode of that prefix: it is
  decoded once into its own sequence and copied to each member with
  ``llama_memory_seq_cp`` (in a unified KV cache a copy only tags the cells;
  nothing is recomputed or duplicated), then only the rest of each member is
  decoded. Causal attention makes the result identical;
* a pack is decoded in phases: shared prefixes, then every member's body with
  no outputs, then the last tokens alone with outputs on. llama.cpp computes
  the vocabulary-sized output layer for every token it outputs (for pooled
  embeddings, every token of the batch), about a quarter of Qwen3-0.6B's work,
  so only the last tokens pay it.

Outputs are read per sequence: the pooled embedding (``llama_get_embeddings_seq``:
the last-token state for LAST pooling, the classifier head's values for RANK
pooling) or chosen columns of the last token's logits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._cpu import flash_attention_is_exact_enough, repack_is_worth_it
from ._errors import BackendError, ConfigurationError, ModelFileError, missing_dependency
from ._gguf import MERGES_KEY, TOKEN_TYPES_KEY, TOKENS_KEY, GGUFHeader

# Sequences per decode: the max_sequences option's declared default (the token budget
# comes from the model's shape, _packing).
from ._options import DEFAULT_MAX_SEQUENCES as DEFAULT_MAX_SEQUENCES
from ._packing import Plan, default_budget, plan_packs
from ._tokenizer import Qwen3Tokenizer

logger = logging.getLogger("qwen3_embed_core.local")

# ggml's enum value for float32 tensors (the KV cache type when kv_f32 is set).
GGML_TYPE_F32 = 0

# ggml.h's ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the
# previous line). llama-cpp-python's own table predates DEBUG and is one off, so it would
# file every error as debug output and an exception could not say what llama.cpp reported.
_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING,
               4: logging.ERROR}
_LOG_CONT = 5
_recent_errors: deque[str] = deque(maxlen=8)
_log_callback: Any = None
_init_lock = threading.Lock()


def llama_cpp_module() -> Any:
    """The ``llama_cpp`` bindings, or an error naming the extra to install."""
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
            lvl = last[0] if level == _LOG_CONT else _LOG_LEVELS.get(level, logging.DEBUG)
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
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()  # NULL: token ids, not embeddings
        self.struct.pos = self.pos.ctypes.data_as(c_int32_p)
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(c_int32_p)
        self.struct.seq_id = ctypes.cast(self._seq_ptrs.ctypes.data, ctypes.POINTER(c_int32_p))
        self.struct.logits = self.output.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

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


@dataclass
class EngineStats:
    """Counters since the engine was made: what llama.cpp was actually asked to do.

    ``tokens_decoded``: tokens sent to ``llama_decode``; ``decodes``: calls;
    ``tokens_shared``: tokens not decoded because a shared prefix covered them;
    ``sequences``: sequences that got an output.
    """

    tokens_decoded: int = 0
    decodes: int = 0
    tokens_shared: int = 0
    sequences: int = 0


@dataclass(frozen=True)
class Output:
    """What to read for each sequence after its last token.

    ``columns`` None: the pooled embedding, ``width`` floats
    (``llama_get_embeddings_seq``). Otherwise those columns of the last
    token's logits (embeddings off for that decode), ``width == len(columns)``.
    """

    width: int
    columns: tuple[int, ...] | None = None


class Engine:
    """One GGUF model and a llama.cpp context that runs packed, prefix-sharing decodes.

    :meth:`run` holds :attr:`lock`, which serialises use of the context;
    callers that check state, tokenize and run as one step hold it too (it is
    re-entrant).

    Args:
        model_path: the GGUF file.
        header: its header, already checked (:mod:`._gguf`) and read with the
            vocabulary, from which the tokenizer is built.
        expected: what the caller wanted the file to be, for error messages.
        pooling: llama.cpp pooling type for the context (LAST = 3, RANK = 4).
        n_threads: CPU threads (default: physical cores).
        batch_tokens: tokens per decode, the packing budget (default: from the model's shape).
        ubatch_tokens: llama.cpp's physical batch in tokens (default: ``batch_tokens``).
        max_sequences: sequence ids per decode, shared prefixes included.
        flash_attention: llama.cpp's flash attention; None: the measured default for the
            file type (:func:`._cpu.flash_attention_is_exact_enough`).
        n_gpu_layers: layers to offload on a GPU build of llama.cpp.
        repack: let llama.cpp repack quantized weights for its extra CPU kernels; None: the
            measured default for the file and CPU (:func:`._cpu.repack_is_worth_it`).
        share_prefixes: decode token prefixes that sequences share once.
        kv_f32: keep the KV cache in float32 instead of llama.cpp's float16.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        header: GGUFHeader,
        expected: str,
        pooling: int,
        n_threads: int | None = None,
        batch_tokens: int | None = None,
        ubatch_tokens: int | None = None,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        flash_attention: bool | None = None,
        n_gpu_layers: int = 0,
        repack: bool | None = None,
        share_prefixes: bool = True,
        kv_f32: bool = False,
    ) -> None:
        llama_cpp = llama_cpp_module()
        _install_logging(llama_cpp)
        self._llama = llama_cpp
        self.path = Path(model_path)
        self._model: Any = None
        if (batch_tokens is not None and batch_tokens < 2) or (
            ubatch_tokens is not None and ubatch_tokens < 1
        ) or max_sequences < 1:
            raise ConfigurationError(
                "batch_tokens must be >= 2, ubatch_tokens and max_sequences >= 1"
            )
        self.n_threads = n_threads or physical_cores()
        self.pooling = pooling
        self.share_prefixes = share_prefixes
        self.kv_f32 = kv_f32
        self.stats = EngineStats()
        # general.file_type (llama_ftype) from the checked header, not a second read.
        ftype = header.metadata.get("general.file_type")
        file_type = ftype if isinstance(ftype, int) and not isinstance(ftype, bool) else None
        if flash_attention is None:
            flash_attention = flash_attention_is_exact_enough(file_type)
        self.flash_attention = flash_attention
        if flash_attention:
            self._flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        else:
            self._flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED

        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        # llama.cpp's extra CPU buffer types repack quantized weights for AMX and
        # friends: slower or crashing (ggml-org/llama.cpp#20824) on x86 in our
        # measurements, llama.cpp's fast path elsewhere; _cpu.py decides by default.
        params.use_extra_bufts = repack_is_worth_it(file_type) if repack is None else repack
        arrays = header.arrays
        self.tokenizer = Qwen3Tokenizer(
            arrays[TOKENS_KEY],  # type: ignore[arg-type]  # checked by _gguf.check_qwen3
            arrays.get(TOKEN_TYPES_KEY),  # type: ignore[arg-type]
            arrays[MERGES_KEY],  # type: ignore[arg-type]
            self.path,
        )
        _recent_errors.clear()
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not model:
            # The header passed our checks, so what llama.cpp refuses is in the
            # tensors (a shape, a type) or beyond memory; its log line says which.
            detail = "; ".join(_recent_errors) or "llama.cpp logged no reason"
            raise ModelFileError(
                f"llama.cpp could not load {self.path}: {detail}; expected {expected}",
                str(self.path),
            )
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.eos_id = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.bos = (
            [int(llama_cpp.llama_vocab_bos(self._vocab))]
            if llama_cpp.llama_vocab_get_add_bos(self._vocab)
            else []
        )
        self.n_embd = int(llama_cpp.llama_model_n_embd(model))
        self.context_tokens = int(llama_cpp.llama_model_n_ctx_train(model))
        self.n_cls_out = int(llama_cpp.llama_model_n_cls_out(model))
        self.metadata = self._read_metadata()
        self.arch = self.metadata.get("general.architecture")
        self.batch_tokens = batch_tokens or self._shape_budget()
        self.ubatch_tokens = min(ubatch_tokens or self.batch_tokens, self.batch_tokens)
        # One id more than the texts per decode: a shared prefix needs its own.
        # llama.cpp reserves an output row per sequence id within n_batch rows.
        self.max_sequences = min(
            max_sequences + 1, int(llama_cpp.llama_max_parallel_sequences()), self.batch_tokens
        )
        self._ctx: Any = None
        self._ctx_size = 0
        self._batch: _Batch | None = None
        self.lock = threading.RLock()

    # -- model facts -------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._model is None

    def _read_metadata(self) -> dict[str, str]:
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

    def _shape_budget(self) -> int:
        meta, arch = self.metadata, self.arch

        def key(name: str, default: int) -> int:
            return int(meta.get(f"{arch}.{name}", default))

        n_head = key("attention.head_count", 16)
        head_dim = key("attention.key_length", self.n_embd // n_head)
        return default_budget(
            self.n_embd, n_head, key("attention.head_count_kv", n_head), head_dim,
            key("feed_forward_length", 3 * self.n_embd),
        )

    def cls_labels(self) -> list[str]:
        """The classifier head's output labels from the file (empty without a head)."""
        labels = []
        for i in range(self.n_cls_out):
            label = self._llama.llama_model_cls_label(self._model, i)
            labels.append(label.decode("utf-8", "replace") if label else "")
        return labels

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text`` alone: no BOS, no EOS, as Qwen3's own tokenizer gives them.

        ``special``: read special-token text (``<|im_start|>``) as those
        tokens. Off for user text, so a text that spells a special token
        stays text. (Not ``llama_tokenize``: see :mod:`._tokenizer`.)
        """
        return self.tokenizer.encode(text, special=special)

    # -- decoding ----------------------------------------------------------

    def _ensure_context(self, needed: int, hint: int) -> None:
        """A context whose KV cache holds ``needed`` tokens (powers of two, up to ``hint``)."""
        size = max(256, self.batch_tokens)
        while size < needed:
            size *= 2
        size = max(needed, min(size, max(hint, self.batch_tokens)))
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
        p.pooling_type = self.pooling
        # One stream for every sequence: a sequence copy then only tags cells.
        p.kv_unified = True
        p.flash_attn_type = self._flash
        if self.kv_f32:
            p.type_k = p.type_v = GGML_TYPE_F32
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
        llama_cpp, batch = self._llama, self._batch
        assert batch is not None
        llama_cpp.llama_set_embeddings(self._ctx, embeddings)
        self.stats.tokens_decoded += batch.n
        self.stats.decodes += 1
        _recent_errors.clear()
        rc = llama_cpp.llama_decode(self._ctx, batch.ready())
        batch.clear()
        if rc != 0:
            detail = "; ".join(_recent_errors) or f"return code {rc}"
            raise BackendError(f"llama_decode failed: {detail}")

    def _feed(self, segments: list[tuple[np.ndarray, int, int]]) -> None:
        """Decode (tokens, seq, first position) segments with no outputs, chunked to the batch."""
        batch = self._batch
        assert batch is not None
        for tokens, seq, pos0 in segments:
            start = 0
            while start < len(tokens):
                take = min(batch.room, len(tokens) - start)
                batch.add(tokens[start : start + take], seq, pos0 + start, False)
                start += take
                if batch.room == 0:
                    self._decode(embeddings=False)
        if batch.n:
            self._decode(embeddings=False)

    def _read(self, output: Output, seq: int, row: int) -> np.ndarray:
        llama_cpp = self._llama
        if output.columns is None:
            ptr = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            if not ptr:
                raise BackendError("llama.cpp returned no pooled output for a sequence")
            return np.array(np.ctypeslib.as_array(ptr, shape=(output.width,)), np.float32)
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, row)
        if not ptr:
            raise BackendError("llama.cpp returned no logits for a sequence")
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return np.array(logits[list(output.columns)], np.float32)

    def plan(self, seqs: Sequence[np.ndarray]) -> Plan:
        """How :meth:`run` would group and pack these sequences."""
        return plan_packs(seqs, self.batch_tokens, self.max_sequences,
                          share_prefixes=self.share_prefixes)

    def run(self, seqs: Sequence[np.ndarray], output: Output, *, hint: int = 0) -> np.ndarray:
        """One output row per token sequence, float32, shape (len(seqs), output.width).

        ``seqs``: int32 token arrays, each at least one token, within the
        model's context. ``hint``: the longest sequence callers may send,
        used to size the KV cache once rather than regrow it.
        """
        with self.lock:
            if self._model is None:
                raise BackendError("this model is closed")
            out = np.empty((len(seqs), output.width), dtype=np.float32)
            if not seqs:
                return out
            plan = self.plan(seqs)
            lengths = [len(s) for s in seqs]
            needed = max(
                sum(plan.groups[g].prefix for g in pack.groups) + pack.n_tokens
                for pack in plan.packs
            )
            self._ensure_context(needed, max(hint, needed))
            memory = self._llama.llama_get_memory(self._ctx)
            self._llama.llama_memory_clear(memory, True)
            try:
                self._run_plan(plan, seqs, output, out)
            finally:
                self._llama.llama_memory_clear(memory, True)
            self.stats.tokens_shared += sum(lengths) - plan.decoded_tokens(lengths)
            self.stats.sequences += len(seqs)
            return out

    def _run_plan(
        self, plan: Plan, seqs: Sequence[np.ndarray], output: Output, out: np.ndarray
    ) -> None:
        llama_cpp, batch = self._llama, self._batch
        assert batch is not None
        memory = llama_cpp.llama_get_memory(self._ctx)
        resident: dict[int, int] = {}  # group -> the sequence id holding its prefix
        for k, pack in enumerate(plan.packs):
            # Prefixes no later member needs are dropped; the others stay resident.
            for g in [g for g in resident if g not in pack.groups]:
                llama_cpp.llama_memory_seq_rm(memory, resident.pop(g), -1, -1)
            free = [s for s in range(self.max_sequences) if s not in resident.values()]
            new = [g for g in pack.groups if g not in resident]
            for g in new:
                resident[g] = free.pop(0)
            self._feed([
                (seqs[plan.groups[g].members[0]][: plan.groups[g].prefix], resident[g], 0)
                for g in new
            ])
            ids = free[: len(pack.indices)]
            bodies = []
            for s, i in zip(ids, pack.indices, strict=True):
                g, start = plan.group_of[i], plan.prefix_of(i)
                if start:
                    llama_cpp.llama_memory_seq_cp(memory, resident[g], s, 0, start)
                bodies.append((seqs[i][start:-1], s, start))
            self._feed(bodies)
            # The last tokens, outputs on, as many per decode as the batch holds.
            for lo in range(0, len(ids), batch.capacity):
                chunk = list(zip(ids[lo : lo + batch.capacity],
                                 pack.indices[lo : lo + batch.capacity], strict=True))
                for s, i in chunk:
                    batch.add(seqs[i][-1:], s, len(seqs[i]) - 1, True)
                self._decode(embeddings=output.columns is None)
                for row, (s, i) in enumerate(chunk):
                    out[i] = self._read(output, s, row)
            later = plan.packs[k + 1].groups if k + 1 < len(plan.packs) else ()
            if any(g in later for g in resident):
                for s in ids:
                    llama_cpp.llama_memory_seq_rm(memory, s, -1, -1)
            else:
                llama_cpp.llama_memory_clear(memory, True)
                resident.clear()

    def close(self) -> None:
        """Free the context and the model (idempotent)."""
        with self.lock:
            self._free_context()
            if getattr(self, "_model", None) is not None:
                self._llama.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
