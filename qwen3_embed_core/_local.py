"""The local embedding backend: a GGUF file run in-process by llama.cpp.

The decoding machinery (packing, shared prefixes, the two output phases) is
the :class:`~._engine.Engine` it shares with the local reranker; this module
adds what is particular to embeddings:

* the file is checked before llama.cpp sees it (:mod:`._gguf`): a damaged,
  truncated or non-Qwen3 file, or a Qwen3-Reranker, is refused with an error
  saying what it is;
* tokens come from Qwen3's own tokenizer built from the file's vocabulary
  (:mod:`._tokenizer`, not ``llama_tokenize``) *without* special handling, and
  the EOS id is appended here, so every sequence ends in exactly one EOS
  whatever ``tokenizer.ggml.add_eos_token`` says;
* last-token pooling, read from llama.cpp as the raw final hidden state;
* texts over ``max_tokens`` raise :class:`TextTooLongError`, or are cut
  (keeping EOS) with ``truncate=True``.

Queries of one task share their instruction's tokens, so the engine decodes
the instruction once per pack and only the query after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._engine import DEFAULT_MAX_SEQUENCES, Engine, Output
from ._errors import BackendError, TextTooLongError, WrongModelKindError
from ._gguf import EXPECTED_EMBEDDER, check_qwen3, read_header, reranker_evidence
from ._qwen3 import POOLING_LAST

logger = logging.getLogger("qwen3_embed_core.local")


class LocalBackend:
    """Embeds already-formatted texts with a GGUF file in this process.

    Thread-safe: one lock serialises use of the llama.cpp context, so
    concurrent callers get exactly the vectors they would get alone.

    Args:
        model_path: the GGUF file.
        max_tokens: longest accepted text in tokens, EOS included (default: the model's context).
        truncate: cut longer texts (keeping EOS) with a warning instead of raising.
        n_threads: CPU threads (default: physical cores).
        batch_tokens: tokens per llama.cpp decode, the packing budget (default: from the shape).
        ubatch_tokens: llama.cpp's physical batch in tokens (default: batch_tokens).
        max_sequences: texts per decode.
        flash_attention: llama.cpp's CPU flash attention; None: on for F16, BF16 and quantized
            files (as exact there, and faster), off for F32 files (_cpu.py).
        n_gpu_layers: layers to offload on a GPU build of llama.cpp.
        repack: llama.cpp's weight repacking; None: the measured default for the file and CPU.
        share_prefixes: decode token prefixes that texts share (a query instruction) once.
        model_name: the name to report (default: the file name).
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
        flash_attention: bool | None = None,
        n_gpu_layers: int = 0,
        repack: bool | None = None,
        share_prefixes: bool = True,
        model_name: str | None = None,
    ) -> None:
        self.path = path = Path(model_path)
        header = read_header(path, keep_vocab=True, expected=EXPECTED_EMBEDDER)
        check_qwen3(header, path, EXPECTED_EMBEDDER)
        why = reranker_evidence(header)
        if why is not None:
            raise WrongModelKindError(
                f"{path} is a Qwen3-Reranker GGUF, not an embedding model ({why}); expected "
                f"{EXPECTED_EMBEDDER}. Score with it through Qwen3Reranker.local(...)",
                str(path),
            )
        self.engine = Engine(
            path,
            header=header,
            expected=EXPECTED_EMBEDDER,
            pooling=POOLING_LAST,
            n_threads=n_threads,
            batch_tokens=batch_tokens,
            ubatch_tokens=ubatch_tokens,
            max_sequences=max_sequences,
            flash_attention=flash_attention,
            n_gpu_layers=n_gpu_layers,
            repack=repack,
            share_prefixes=share_prefixes,
        )
        engine = self.engine
        self.model_name = model_name or self.path.name
        self.max_sequences = engine.max_sequences - 1
        self.n_threads = engine.n_threads
        self.batch_tokens = engine.batch_tokens
        self.ubatch_tokens = engine.ubatch_tokens
        self.share_prefixes = share_prefixes
        self.flash_attention = engine.flash_attention
        self.truncate = truncate
        self.eos_id = engine.eos_id
        self.full_dimensions = engine.n_embd
        self.context_tokens = engine.context_tokens
        self.max_tokens = min(max_tokens or self.context_tokens, self.context_tokens)
        self.metadata = engine.metadata
        self.file_adds_eos = self.metadata.get("tokenizer.ggml.add_eos_token") == "true"
        if not self.file_adds_eos:
            logger.info(
                "%s lacks tokenizer.ggml.add_eos_token; appending EOS (id %d) ourselves",
                self.path.name, self.eos_id,
            )

    def tokenize(self, text: str) -> list[int]:
        """Token ids for ``text``, ending in exactly one EOS (BOS only if the file asks)."""
        # special=False: text that spells "<|endoftext|>" stays text, so the
        # only EOS in the sequence is the one appended here.
        return [*self.engine.bos, *self.engine.tokenize(text), self.eos_id]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Raw (unnormalised) last-token states, shape (len(texts), full_dimensions)."""
        with self.engine.lock:
            if self.engine.closed:
                raise BackendError("this embedder is closed")
            seqs = [
                np.asarray(self._limit(self.tokenize(t), i), dtype=np.int32)
                for i, t in enumerate(texts)
            ]
            return self.engine.run(seqs, Output(self.full_dimensions), hint=self.max_tokens)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` in a worker thread, so the event loop stays free."""
        return await asyncio.to_thread(self.embed, texts)

    async def aclose(self) -> None:
        """:meth:`close` (nothing to await in-process)."""
        self.close()

    def close(self) -> None:
        self.engine.close()
