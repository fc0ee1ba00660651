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
* **Every answer checked against that.** A server restarted on the same URL
  with another file (same weights, without ``add_eos_token``) would make the
  probe's finding stale, and every vector after it wrong. So where the server
  serves llama-server's ``/tokenize``, each batch's texts, exactly as sent, are
  tokenized there first (without special tokens), and the embeddings answer's
  ``usage.prompt_tokens`` must equal that count plus one EOS per text if the
  server appends it (or, after an unclear probe, as if it did: texts then go
  out as they are). On a mismatch the endpoint is probed again and the batch
  redone; if it still does not add up, the attempt fails and is retried. Servers without
  ``/tokenize`` (Docker Model Runner) cannot be checked this way:
  ``endpoint_status()`` says ``checks_tokens: False`` for them.
* **No shifted vectors.** Each response must hold one vector per text, all
  of the model's width, each ``index`` exactly once; order is restored from
  ``index``. Anything else is an error.
* **Faults.** Retries with exponential backoff and jitter on connection
  errors, timeouts, 429, 502, 503 and 504, failing over to the other
  endpoints (:mod:`.flows`); clear errors with the next step for everything
  else (:mod:`.responses`).
"""

from __future__ import annotations

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
from .answers import json_body, json_size, loads, parse_embeddings
from .base import HttpBackend
from .flows import Endpoint, Flow, Probe, Send, batches, locate
from .responses import RETRY_STATUSES, InputFault, Retry, check, excerpt
from .urls import embeddings_url, redact_url, tokenize_url

logger = logging.getLogger("qwen3_embed_core.http")

# Tries of one batch on one endpoint when its token count does not add up: the
# first, then one after probing again (a server restarted with another file).
_REDOS = 2


def _prompt_tokens(payload: dict[str, object]) -> int | None:
    """``usage.prompt_tokens`` of an embeddings answer: the tokens it embedded in all."""
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


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
        # Whether it serves /tokenize, so each answer's token count can be checked.
        self.tokenizes = False
        self.reprobes = 0  # probes again after an answer's token count did not add up

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
            "checks_tokens": ep.tokenizes if ep.probed else None,
            "reprobes": ep.reprobes,
        }

    def endpoint_status(self) -> list[dict[str, object]]:
        """What each endpoint has shown so far.

        ``server_appends_eos``: True/False once probed (None before, or when
        the server's answer was unclear); ``base64``: whether vectors come
        base64-encoded; ``checks_tokens``: whether each answer's
        ``usage.prompt_tokens`` is checked against the server's ``/tokenize``;
        ``reprobes``: probes made again because a count did not add up;
        ``requests``/``failures``: counts; ``down``: refused a connection
        recently, so it is tried last.
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
        tokens = _prompt_tokens(payload)
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
        # A broken /tokenize answer fails the probe: taking it for "not served" would
        # leave a faulty EOS finding above unchecked.
        out = yield self._tokenize_send(ep, [EOS_TEXT])
        ep.tokenizes = self._token_count(ep, out) == 1
        ep.appends_eos = appends
        ep.base64 = use_base64
        ep.probed = True
        logger.info("%s: server appends EOS: %s; base64: %s; answers checked: %s",
                    ep.display, appends, use_base64, ep.tokenizes)

    def _tokenize_send(self, ep: EmbedEndpoint, texts: list[str]) -> Send:
        """Tokenize ``texts`` as the embeddings route does, without adding EOS: llama-server
        tokenizes each string of a ``content`` list apart and joins the tokens."""
        body = json_body({"content": texts, "add_special": False, "parse_special": True})
        return Send(ep, ep.tokenize_url, body)

    def _token_count(self, ep: EmbedEndpoint, out: httpx.Response | BaseException) -> int | None:
        """Tokens in a ``/tokenize`` answer; None if the server does not serve it. Raises
        :class:`Retry` for a fault worth retrying, as every request does."""
        if isinstance(out, httpx.Response) and out.status_code not in RETRY_STATUSES and not (
            200 <= out.status_code < 300
        ):
            return None  # not llama-server (Model Runner routes no /tokenize)
        resp = check(self._config, out, ep.display, ep.tokenize_display)
        body = loads(resp.content)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            raise BadResponseError(
                f"{ep.tokenize_display} answered {resp.status_code} without a 'tokens' "
                f"list: {excerpt(resp.text)!r}"
            )
        return len(tokens)

    def _embed_attempt(
        self, texts: list[str], start: int
    ) -> Callable[[EmbedEndpoint], Flow[np.ndarray]]:
        def attempt(ep: EmbedEndpoint) -> Flow[np.ndarray]:
            for redo in range(_REDOS):
                if redo:
                    failure = yield Probe(ep, lambda: self._probe_flow(ep))
                    if failure is not None:
                        raise failure
                appends, suffix = ep.appends_eos, ep.suffix
                sent = [t + suffix for t in texts]
                plain: int | None = None  # the texts' tokens, EOS not counted
                checked = ep.tokenizes
                if checked:
                    plain = self._token_count(ep, (yield self._tokenize_send(ep, sent)))
                out = yield Send(ep, ep.embeddings_url, self._body(sent, ep.base64))
                try:
                    resp = self._check(ep, out)
                except InputFault as fault:
                    raise (
                        yield from locate(
                            self._config, ep, [len(t) for t in texts], start, fault,
                            lambda i, sent=sent: Send(  # type: ignore[misc]
                                ep, ep.embeddings_url, self._body([sent[i]], ep.base64)
                            ),
                            ep.embeddings_display,
                        )
                    ) from None
                vectors, payload = self._parse(ep, resp, len(texts))
                if not checked:
                    return vectors  # nothing to check against (see the module's docstring)
                # (plain is None: /tokenize is gone, so the server changed too.)
                # Texts sent as they are (appends True, or None: the probe was unclear)
                # are right only if the server appends EOS to each.
                expected = None if plain is None else plain + (
                    0 if appends is False else len(texts))
                got = _prompt_tokens(payload)
                if got is not None and got == expected:
                    return vectors
                # The server no longer does what its probe showed (restarted with another
                # file?): these vectors may be pooled on the wrong token. Probe again
                # (unless another request already did) and redo the batch.
                logger.warning(
                    "%s embedded %s tokens where %s were expected (%s text tokens%s)",
                    ep.display, got, expected, plain,
                    "" if appends is False else " + one EOS per text, added by the server",
                )
                with ep.stats_lock:
                    ep.reprobes += 1
                    if ep.probed and ep.appends_eos == appends:
                        ep.probed = False
            how = ("EOS sent with each text" if appends is False
                   else "one EOS per text added by the server")
            raise Retry(BadResponseError(
                f"{ep.display} embedded {got} tokens for {len(texts)} text(s) of {plain} "
                f"tokens, where {expected} were expected ({how}), even after probing it "
                f"again: its answers do not show the tokens the probe and /tokenize say, so "
                "the vectors may be pooled on the wrong token and are refused. Is the server "
                "being restarted with different GGUF files?"
            ))

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
                tokens = loads(resp.content)["tokens"]
                if not isinstance(tokens, list):
                    raise TypeError
            except (KeyError, TypeError):
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



