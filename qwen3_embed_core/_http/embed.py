"""The embedding backend: Docker Model Runner, or any llama.cpp server, over HTTP.

It speaks the OpenAI-compatible ``POST {base}/embeddings`` API and returns
the same vectors as the local backend on the same model. What makes that
true over HTTP:

* **EOS.** The client cannot see the server's GGUF. llama-server parses
  special tokens in input text, so appending the literal ``<|endoftext|>``
  fixes a file that lacks ``add_eos_token`` and doubles EOS on a file that
  has it. Once per endpoint we embed exactly ``<|endoftext|>`` and read
  ``usage.prompt_tokens``: 2 means the server appends EOS itself, 1 means it
  doesn't and we append the literal text to every input.
* **No shifted vectors.** Each response must hold one vector per text, all
  of the model's width, each ``index`` exactly once; order is restored from
  ``index``. Anything else is an error.
* **Faults.** Retries with exponential backoff and jitter on connection
  errors, timeouts, 429, 502, 503 and 504, failing over to the other
  endpoints (:mod:`.flows`); clear errors with the next step for everything
  else (:mod:`.responses`).
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Callable, Sequence

import httpx
import numpy as np

from .._errors import BackendError, BadResponseError
from .._qwen3 import (
    EOS_PROBE_SERVER_APPENDS,
    EOS_PROBE_SERVER_DOES_NOT,
    EOS_TEXT,
    MODEL_RUNNER_MODEL,
    dimensions_for_model,
)
from .answers import json_body, json_size, parse_embeddings
from .base import HttpBackend
from .flows import Endpoint, Flow, Send, batches, locate
from .responses import InputFault, check, excerpt
from .urls import embeddings_url, redact_url, tokenize_url

logger = logging.getLogger("qwen3_embed_core.http")


class EmbedEndpoint(Endpoint):
    """An embeddings server, and what its probe learned."""

    def __init__(self, url: str, max_concurrency: int) -> None:
        super().__init__(url, max_concurrency)
        self.embeddings_url = embeddings_url(url)
        self.tokenize_url = tokenize_url(url)
        self.embeddings_display = embeddings_url(self.display)
        self.tokenize_display = redact_url(self.tokenize_url)
        self.appends_eos: bool | None = None  # None: not probed, or no clear answer
        self.base64 = True

    @property
    def suffix(self) -> str:
        """Appended to every text: EOS when the server does not add it itself."""
        return EOS_TEXT if self.appends_eos is False else ""


class ModelRunnerBackend(HttpBackend[EmbedEndpoint]):
    """Embeds already-formatted texts through Docker Model Runner or llama-server.

    Takes :class:`HttpBackend`'s arguments (``model`` defaults to
    ``"ai/qwen3-embedding"``; ``batch_size`` counts texts). ``full_dimensions``
    comes from a known Model Runner tag, else from the first answer.
    """

    API = "embeddings"
    DEFAULT_MODEL = MODEL_RUNNER_MODEL

    def _endpoint(self, url: str, max_concurrency: int) -> EmbedEndpoint:
        return EmbedEndpoint(url, max_concurrency)

    def _init_state(self) -> None:
        self.full_dimensions: int | None = dimensions_for_model(self.model_name)
        self._dims_lock = threading.Lock()

    def _status(self, ep: EmbedEndpoint, now: float) -> dict[str, object]:
        return {
            **super()._status(ep, now),
            "server_appends_eos": ep.appends_eos,
            "base64": ep.base64 if ep.probed else None,
        }

    def endpoint_status(self) -> list[dict[str, object]]:
        """What each endpoint has shown so far.

        ``server_appends_eos``: True/False once probed (None before, or when
        the server's answer was unclear); ``base64``: whether vectors come
        base64-encoded; ``requests``/``failures``: counts; ``down``: refused
        a connection recently, so it is tried last.
        """
        return super().endpoint_status()

    # -- requests and answers -----------------------------------------------

    def _body(self, texts: Sequence[str], use_base64: bool) -> bytes:
        payload: dict[str, object] = {"model": self.model_name, "input": list(texts)}
        if use_base64:
            payload["encoding_format"] = "base64"
        return json_body(payload)

    def _check(self, ep: EmbedEndpoint, out: httpx.Response | BaseException) -> httpx.Response:
        return check(self._config, out, ep.display, ep.embeddings_display)

    def _parse(
        self, ep: EmbedEndpoint, resp: httpx.Response, n: int
    ) -> tuple[np.ndarray, dict[str, object]]:
        vectors, payload = parse_embeddings(resp, ep.display, ep.embeddings_display, n)
        dims = vectors.shape[1]
        with self._dims_lock:
            if self.full_dimensions is None:
                self.full_dimensions = dims
            elif dims != self.full_dimensions:
                raise BadResponseError(
                    f"{ep.display} answered {dims}-dimensional vectors, but {self.model_name!r} "
                    f"has {self.full_dimensions}: the server (or another of base_urls) is "
                    "running a different model"
                )
        return vectors, payload

    # -- flows ------------------------------------------------------------------

    def _probe_flow(self, ep: EmbedEndpoint) -> Flow[None]:
        """Learn whether ``ep`` appends EOS itself, speaks base64, and the vector size."""
        out = yield Send(ep, ep.embeddings_url, self._body([EOS_TEXT], True))
        use_base64 = True
        if isinstance(out, httpx.Response) and out.status_code in (400, 422):
            # Some OpenAI-compatible servers reject encoding_format; ask in floats.
            out = yield Send(ep, ep.embeddings_url, self._body([EOS_TEXT], False))
            use_base64 = False
        _, payload = self._parse(ep, self._check(ep, out), 1)
        data = payload["data"]
        assert isinstance(data, list) and isinstance(data[0], dict)
        if not isinstance(data[0].get("embedding"), str):
            use_base64 = False  # the server ignored encoding_format
        usage = payload.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        appends: bool | None = None
        if tokens == EOS_PROBE_SERVER_APPENDS:
            appends = True
        elif tokens == EOS_PROBE_SERVER_DOES_NOT:
            appends = False
        else:
            msg = (
                f"could not tell whether {ep.display} appends the EOS token: for the input "
                f"{EOS_TEXT!r} it reported usage.prompt_tokens={tokens!r} (expected 1 or 2). "
                "Texts are sent unchanged; if the server's GGUF lacks "
                "tokenizer.ggml.add_eos_token, its vectors will be wrong"
            )
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        ep.appends_eos = appends
        ep.base64 = use_base64
        ep.probed = True
        logger.info("%s: server appends EOS: %s; base64: %s", ep.display, appends, use_base64)

    def _embed_attempt(
        self, texts: list[str], start: int
    ) -> Callable[[EmbedEndpoint], Flow[np.ndarray]]:
        def attempt(ep: EmbedEndpoint) -> Flow[np.ndarray]:
            suffix = ep.suffix
            body = self._body([t + suffix for t in texts], ep.base64)
            out = yield Send(ep, ep.embeddings_url, body)
            try:
                resp = self._check(ep, out)
            except InputFault as fault:
                raise (
                    yield from locate(
                        self._config, ep, [len(t) for t in texts], start, fault,
                        lambda i: Send(
                            ep, ep.embeddings_url, self._body([texts[i] + suffix], ep.base64)
                        ),
                        ep.embeddings_display,
                    )
                ) from None
            return self._parse(ep, resp, len(texts))[0]

        return attempt

    def _count_attempt(self, text: str) -> Callable[[EmbedEndpoint], Flow[int]]:
        def attempt(ep: EmbedEndpoint) -> Flow[int]:
            body = json_body({"content": text + ep.suffix, "add_special": True,
                              "parse_special": True})
            out = yield Send(ep, ep.tokenize_url, body)
            if isinstance(out, httpx.Response) and out.status_code in (404, 405, 501):
                raise BackendError(
                    f"count_tokens needs llama-server's /tokenize endpoint, which "
                    f"{ep.tokenize_display} does not serve ({out.status_code} "
                    f"{excerpt(out.text)}); Docker Model Runner does not expose it. Count "
                    "locally instead: Qwen3Embedder.local(<the same GGUF>).count_tokens(text)"
                )
            resp = check(self._config, out, ep.display, ep.tokenize_display)
            try:
                tokens = json.loads(resp.content)["tokens"]
                if not isinstance(tokens, list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise BadResponseError(
                    f"{ep.tokenize_display} answered {resp.status_code} without a "
                    f"'tokens' list: {excerpt(resp.text)!r}"
                ) from None
            return len(tokens)

        return attempt

    def _flows(self, texts: Sequence[str]) -> list[Flow[np.ndarray]]:
        self._check_open()
        texts = list(texts)
        self._warn_special(texts, "text at index {}", stacklevel=5)
        eos = len(EOS_TEXT)  # a suffix we may append
        spans = batches(
            self._config, [json_size(t) + eos + 1 for t in texts], len(self._body([], True))
        )
        first = next(self._turn)  # spread single-batch calls over the endpoints too
        return [
            self._retrying(first + k, self._embed_attempt(texts[a:b], a), self._probe_flow)
            for k, (a, b) in enumerate(spans)
        ]

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.full_dimensions or 0), dtype=np.float32)

    # -- calls ------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, shape (len(texts), full_dimensions), in input order."""
        flows = self._flows(texts)
        if not flows:
            return self._empty()
        return np.concatenate(self._drivers.run_all(flows), axis=0)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """Async :meth:`embed`: batches run concurrently, at most ``max_concurrency``
        requests in flight per endpoint."""
        flows = self._flows(texts)
        if not flows:
            return self._empty()
        return np.concatenate(await self._drivers.arun_all(flows), axis=0)

    def count_tokens(self, text: str) -> int:
        """Tokens the server sees for ``text``, EOS included (llama-server's /tokenize)."""
        self._check_open()
        flow = self._retrying(next(self._turn), self._count_attempt(text), self._probe_flow)
        return self._drivers.run(flow)



