"""The local reranking backend: a Qwen3-Reranker GGUF run in-process by llama.cpp.

It runs on the same :class:`~._engine.Engine` as the local embedder. Every
prompt of one call starts with the same tokens (the system turn, the
instruction and the query), so the engine decodes them once and shares their
KV cache with every document's sequence; each document then costs only its
own tokens and the short assistant suffix.

Two GGUF flavours exist, told apart by the file's header:

* **headed** (llama.cpp's converter since b6578, PR #15824): ``cls.output.weight``
  holds the output layer's [yes, no] rows, with labels ``["yes", "no"]`` and
  RANK pooling. The context runs with RANK pooling and reads the head's two
  values per sequence. llama.cpp applies a softmax over them for the qwen3
  architecture (src/llama-graph.cpp, ``build_pooling``, in the llama.cpp
  vendored by llama-cpp-python 0.3.36), so they are [P(yes), P(no)]; earlier
  versions returned the raw head values. Both are handled: a pair that is a
  probability distribution is read as one, anything else as logits.
* **plain** causal-LM conversions (no head; llama.cpp would pool the hidden
  state and return ~1e-20 without an error): the last token's logits at the
  "yes" and "no" token ids, from the output layer (tied to ``token_embd`` in
  the 0.6B model; llama.cpp uses whichever the file has).

Anything else (not qwen3, an embedding model, no single-token "yes"/"no", a
head with other labels) is refused when the backend is built.
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
from ._gguf import EXPECTED_RERANKER, check_qwen3, embedding_evidence, read_header
from ._packing import common_prefix
from ._qwen3 import (
    POOLING_RANK,
    QWEN3_ARCH,
    RERANK_HEAD_TENSOR,
    RERANK_NO,
    RERANK_PREFIX,
    RERANK_SUFFIX,
    RERANK_TEMPLATE,
    RERANK_YES,
)

logger = logging.getLogger("qwen3_embed_core.local")

# The plain flavour reads logits, not pooled output: let the file's (absent) pooling stand.
POOLING_UNSPECIFIED = -1
# A [yes, no] pair from the head counts as llama.cpp's softmax when it sums to 1 this closely.
_SOFTMAX_TOLERANCE = 1e-5


class NotARerankerError(WrongModelKindError):
    """The GGUF file cannot give Qwen3-Reranker scores (the message says why)."""


def _refuse(path: Path, why: str) -> NotARerankerError:
    return NotARerankerError(
        f"{path} is not a usable Qwen3-Reranker GGUF: {why}; expected {EXPECTED_RERANKER}, "
        "converted by llama.cpp b6578 or later (with the cls.output head), or a plain "
        "Qwen3-Reranker causal-LM conversion",
        str(path),
    )


def yes_share(pair: np.ndarray, probabilities: bool) -> float:
    """P(yes) from the [yes, no] logits, or from a [P(yes), P(no)] pair."""
    yes, no = float(pair[0]), float(pair[1])
    if probabilities:
        return yes / (yes + no)
    return float(1.0 / (1.0 + np.exp(no - yes)))


def is_probability_pair(pair: np.ndarray) -> bool:
    """Whether a [yes, no] pair is already a softmax (non-negative, summing to 1)."""
    return bool(
        pair[0] >= 0 and pair[1] >= 0 and abs(float(pair[0]) + float(pair[1]) - 1.0)
        <= _SOFTMAX_TOLERANCE
    )


class LocalRerankBackend:
    """Scores (query, document) pairs with a Qwen3-Reranker GGUF in this process.

    Thread-safe: the engine's lock serialises use of the llama.cpp context.

    Args:
        model_path: the Qwen3-Reranker GGUF file.
        max_tokens: longest prompt in tokens, template included (default: the model's context).
        truncate: cut a too-long document (never the query or template) with a warning.
        n_threads: CPU threads (default: physical cores).
        batch_tokens: tokens per llama.cpp decode, the packing budget (default: from the shape).
        ubatch_tokens: llama.cpp's physical batch in tokens (default: batch_tokens).
        max_sequences: documents per decode.
        flash_attention: llama.cpp's CPU flash attention (None or False: off; the scores'
            exactness was measured without it).
        n_gpu_layers: layers to offload on a GPU build of llama.cpp.
        repack: llama.cpp's weight repacking; None: the measured default for the file and CPU.
        share_prefixes: decode the prompt shared by a call's documents once.
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
        header = read_header(path, keep_vocab=True, expected=EXPECTED_RERANKER)
        meta = header.metadata
        arch = meta.get("general.architecture")
        if arch != QWEN3_ARCH:
            raise _refuse(path, f"its architecture is {arch!r}, not {QWEN3_ARCH!r}")
        check_qwen3(header, path, EXPECTED_RERANKER)
        self.headed = RERANK_HEAD_TENSOR in header.tensors
        pooling = meta.get(f"{arch}.pooling_type")
        why = None if self.headed else embedding_evidence(header)
        if why is not None:
            raise _refuse(
                path, f"{why}, so it is an embedding model (Qwen3-Embedding), not a reranker"
            )
        if self.headed:
            rows = header.tensors[RERANK_HEAD_TENSOR]
            labels = meta.get(f"{arch}.classifier.output_labels")
            if not isinstance(labels, list) or sorted(map(str, labels)) != sorted(
                [RERANK_YES, RERANK_NO]
            ) or len(rows) != 2 or rows[1] != 2:
                raise _refuse(
                    path, f"its {RERANK_HEAD_TENSOR} has shape {rows} and labels {labels!r}, "
                    "not the 2-row [yes, no] head",
                )
            self._order = [labels.index(RERANK_YES), labels.index(RERANK_NO)]
        elif pooling == POOLING_RANK:
            logger.info("%s declares RANK pooling but has no %s; reading the yes/no logits "
                        "from the output layer instead", path.name, RERANK_HEAD_TENSOR)

        self.engine = Engine(
            path,
            header=header,
            expected=EXPECTED_RERANKER,
            pooling=POOLING_RANK if self.headed else POOLING_UNSPECIFIED,
            n_threads=n_threads,
            batch_tokens=batch_tokens,
            ubatch_tokens=ubatch_tokens,
            max_sequences=max_sequences,
            # Off unless asked for: the scores are exact to ~1e-6 without it
            # (float32 KV cache, below), and no exactness was measured with it.
            flash_attention=bool(flash_attention),
            n_gpu_layers=n_gpu_layers,
            repack=repack,
            share_prefixes=share_prefixes,
            # llama.cpp's default float16 KV cache moves P(yes) by up to ~1e-3 on
            # the test models (measured against the float64 reference); float32
            # brings it to ~1e-6. The cache holds one call's prompts, so the
            # memory is small (0.6B: 224 KiB a token instead of 112).
            kv_f32=True,
        )
        try:
            self._setup(path, model_name, max_tokens, truncate)
        except BaseException:
            self.engine.close()
            raise

    def _setup(
        self, path: Path, model_name: str | None, max_tokens: int | None, truncate: bool
    ) -> None:
        engine = self.engine
        self.model_name = model_name or path.name
        self.truncate = truncate
        self.context_tokens = engine.context_tokens
        self.max_tokens = min(max_tokens or self.context_tokens, self.context_tokens)
        self.share_prefixes = engine.share_prefixes
        yes, no = engine.tokenize(RERANK_YES), engine.tokenize(RERANK_NO)
        if not self.headed and (len(yes) != 1 or len(no) != 1):
            raise _refuse(path, f'"yes" and "no" are not single tokens in its vocabulary '
                          f"({yes}, {no}), so there are no output rows to score with")
        self.yes_id, self.no_id = (yes[0], no[0]) if len(yes) == len(no) == 1 else (-1, -1)
        self.prefix = engine.tokenize(RERANK_PREFIX, special=True)
        self.suffix = engine.tokenize(RERANK_SUFFIX, special=True)
        if len(self.prefix) >= len(engine.tokenize(RERANK_PREFIX)):
            raise _refuse(path, "its vocabulary lacks Qwen3's chat tokens (<|im_start|>, "
                          "<|im_end|>)")
        self.output = (
            Output(2) if self.headed else Output(2, columns=(self.yes_id, self.no_id))
        )

    def check_instruction(self, instruction: str) -> None:
        """Any instruction works locally: the prompt is built here, not from the file."""

    # -- prompts -------------------------------------------------------------

    def prompt(self, query: str, document: str, instruction: str, index: int = 0) -> list[int]:
        """Token ids of the model card's prompt for one pair, within ``max_tokens``.

        The system prefix and the assistant suffix are tokenized with their
        special tokens; the middle, which holds the user's text, as plain text
        (a document that spells ``<|im_end|>`` stays text).
        """
        middle_text = RERANK_TEMPLATE.format(
            instruction=instruction, query=query, document=document
        )
        middle = self.engine.tokenize(middle_text)
        n, limit = len(self.prefix) + len(middle) + len(self.suffix), self.max_tokens
        if n <= limit:
            return [*self.prefix, *middle, *self.suffix]
        # Everything before the document: what truncation must never cut.
        head = RERANK_TEMPLATE.format(instruction=instruction, query=query, document="")
        fixed = len(self.prefix) + len(self.suffix) + common_prefix(
            np.asarray(middle), np.asarray(self.engine.tokenize(head.rstrip()))
        )
        if not self.truncate or fixed >= limit:
            why = (
                "the query, instruction and template alone take "
                f"{fixed} tokens; shorten the query or raise max_tokens"
                if fixed >= limit
                else "shorten the document, or pass truncate=True to cut it (with a warning)"
            )
            raise TextTooLongError(
                f"document at index {index}: its prompt has {n} tokens (query, instruction and "
                f"template included) but the limit is {limit}; {why}",
                index, n, limit,
            )
        warnings.warn(
            f"document at index {index}: its prompt has {n} tokens; the document was cut so "
            f"the prompt fits in {limit} (query, instruction and suffix kept)",
            stacklevel=5,
        )
        keep = limit - len(self.prefix) - len(self.suffix)
        return [*self.prefix, *middle[:keep], *self.suffix]

    # -- scoring -------------------------------------------------------------

    def score(self, query: str, documents: Sequence[str], instruction: str) -> np.ndarray:
        """P(yes) per document, float32, input order."""
        engine = self.engine
        with engine.lock:
            if engine.closed:
                raise BackendError("this reranker is closed")
            seqs = [
                np.asarray(self.prompt(query, d, instruction, i), dtype=np.int32)
                for i, d in enumerate(documents)
            ]
            raw = engine.run(seqs, self.output, hint=self.max_tokens)
        if self.headed:
            raw = raw[:, self._order]
        scores = np.empty(len(documents), dtype=np.float32)
        for i, pair in enumerate(raw.astype(np.float64)):
            probabilities = self.headed and is_probability_pair(pair)
            scores[i] = yes_share(pair, probabilities)
        return scores

    async def ascore(self, query: str, documents: Sequence[str], instruction: str) -> np.ndarray:
        """:meth:`score` in a worker thread, so the event loop stays free."""
        return await asyncio.to_thread(self.score, query, documents, instruction)

    def close(self) -> None:
        self.engine.close()

    async def aclose(self) -> None:
        """:meth:`close` (nothing to await in-process)."""
        self.close()
