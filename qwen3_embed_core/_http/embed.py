"""The embedding backend: Docker Model Runner, or any llama.cpp server, over HTTP.

It speaks the OpenAI-compatible ``POST {base}/embeddings`` API and returns
the same vectors as the local backend on the same model. What makes that
true over HTTP:

* **Tokens, exactly.** llama-server parses special tokens in input text, and
  llama.cpp re-types some ordinary Qwen3 tokens as control (``</s>``): a
  document spelling them would be embedded on other tokens than Qwen3's
  tokenizer gives. So where the server serves llama-server's ``/tokenize``,
  each batch is tokenized there first with ``parse_special: false`` (special
  spellings stay text, as in Qwen3's tokenizer), and the token ids, each list
  ending in exactly one EOS of ours, are sent as the embeddings ``input`` (the
  OpenAI API takes arrays of token ids; llama-server embeds them as given and
  adds no EOS to them). The answer's ``usage.prompt_tokens`` must equal the
  tokens sent; on a mismatch (a server restarted on the same URL with another
  file) the endpoint is probed again and the batch redone; if it still does not
  add up, the attempt fails and is retried.
* **EOS, for servers without ``/tokenize``** (Docker Model Runner): texts go
  as text, and the client cannot see the server's GGUF. Appending the literal
  ``<|endoftext|>`` fixes a file that lacks ``add_eos_token`` and doubles EOS
  on a file that has it. Once per endpoint we embed exactly ``<|endoftext|>``
  and read ``usage.prompt_tokens``: 2 means the server appends EOS itself, 1
  means it doesn't and we append the literal text to every input. These
  answers cannot be checked (``endpoint_status()`` says ``checks_tokens:
  False``), and a text spelling a special token is read as that token: the
  first such text gets a warning naming its index.
* **Unicode.** llama.cpp's character tables are older than Qwen3's tokenizer's:
  a text holding a code point of ``LLAMA_CPP_UNICODE_GAPS`` (letters new in
  Unicode 16...) would be split otherwise than Qwen3's tokenizer splits it, on
  any server, so it is refused by index with an ``InvalidInputError`` that
  points to the local backend.
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
from .._inputs import check_llama_cpp_unicode
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
        self.eos_id: int | None = None  # the server's EOS token id, where it tokenizes
        self.base64 = True
        # Whether it serves /tokenize: texts then go as token ids, each answer checked.
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

    def _body(self, inputs: Sequence[str | list[int]], use_base64: bool) -> bytes:
        """An embeddings request: texts, or token-id lists (llama-server embeds those as
        given; their JSON is up to ~2x the text's, which llama-server does not limit)."""
        payload: dict[str, object] = {"model": self.model_name, "input": list(inputs)}
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
        # The EOS id, from the one token the EOS text is when read as special. A broken
        # /tokenize answer fails the probe: taking it for "not served" would send texts
        # as text, unchecked.
        out = yield Send(ep, ep.tokenize_url, json_body(
            {"content": EOS_TEXT, "add_special": False, "parse_special": True}))
        eos = self._tokens(ep, out)
        ep.eos_id = eos[0] if eos is not None and len(eos) == 1 else None
        ep.tokenizes = ep.eos_id is not None
        ep.appends_eos = appends
        ep.base64 = use_base64
        ep.probed = True
        logger.info("%s: server appends EOS: %s; base64: %s; answers checked: %s",
                    ep.display, appends, use_base64, ep.tokenizes)

    def _tokenize_send(self, ep: EmbedEndpoint, texts: list[str], eos_id: int) -> Send:
        """Tokenize ``texts`` without special tokens, in one request: llama-server
        tokenizes each string of a ``content`` list apart and joins the tokens, and
        takes numbers as token ids, so ``eos_id`` between the texts marks where each
        ends (text read with ``parse_special: false`` never gives a control token)."""
        content: list[str | int] = []
        for i, text in enumerate(texts):
            content += [eos_id, text] if i else [text]
        body = json_body({"content": content, "add_special": False, "parse_special": False})
        return Send(ep, ep.tokenize_url, body)

    def _tokens(self, ep: EmbedEndpoint, out: httpx.Response | BaseException) -> list[int] | None:
        """The token ids of a ``/tokenize`` answer; None if the server does not serve it.
        Raises :class:`Retry` for a fault worth retrying, as every request does."""
        if isinstance(out, httpx.Response) and out.status_code not in RETRY_STATUSES and not (
            200 <= out.status_code < 300
        ):
            return None  # not llama-server (Model Runner routes no /tokenize)
        resp = check(self._config, out, ep.display, ep.tokenize_display)
        body = loads(resp.content)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list) or not all(
            type(t) is int and t >= 0 for t in tokens
        ):
            raise BadResponseError(
                f"{ep.tokenize_display} answered {resp.status_code} without a 'tokens' "
                f"list of token ids: {excerpt(resp.text)!r}"
            )
        return tokens

    def _split(self, tokens: list[int], n: int, eos_id: int) -> list[list[int]] | None:
        """``tokens`` of :meth:`_tokenize_send` cut back into ``n`` texts' tokens, or
        None when they do not cut into ``n`` non-empty parts."""
        parts: list[list[int]] = [[]]
        for t in tokens:
            if t == eos_id:
                parts.append([])
            else:
                parts[-1].append(t)
        return parts if len(parts) == n and all(parts) else None

    def _embed_attempt(
        self, texts: list[str], start: int
    ) -> Callable[[EmbedEndpoint], Flow[np.ndarray]]:
        def attempt(ep: EmbedEndpoint) -> Flow[np.ndarray]:
            got = expected = None
            for redo in range(_REDOS):
                if redo:
                    failure = yield Probe(ep, lambda: self._probe_flow(ep))
                    if failure is not None:
                        raise failure
                eos_id = ep.eos_id
                if not ep.tokenizes or eos_id is None:
                    return (yield from self._embed_texts(ep, texts, start))
                tokens = self._tokens(ep, (yield self._tokenize_send(ep, texts, eos_id)))
                ids = None if tokens is None else self._split(tokens, len(texts), eos_id)
                if ids is not None:
                    inputs = [[*i, eos_id] for i in ids]  # exactly one EOS, at the end
                    vectors, payload = yield from self._send_inputs(
                        ep, inputs, [len(i) for i in inputs], start
                    )
                    expected, got = sum(map(len, inputs)), _prompt_tokens(payload)
                    if got == expected:
                        return vectors
                # /tokenize gone or cut wrong, or the server embedded other tokens than
                # those sent: it is not the server the probe saw (restarted with another
                # file?). Probe again (unless another request already did) and redo.
                logger.warning(
                    "%s embedded %s tokens where %s were sent (/tokenize: %s tokens)",
                    ep.display, got, expected, None if tokens is None else len(tokens),
                )
                with ep.stats_lock:
                    ep.reprobes += 1
                    if ep.probed and ep.eos_id == eos_id:
                        ep.probed = False
            raise Retry(BadResponseError(
                f"{ep.display} embedded {got} tokens for {len(texts)} text(s) sent as "
                f"{expected} token ids (each ending in one EOS), even after probing it "
                "again: its answers do not show the tokens sent, so the vectors may be "
                "pooled on the wrong token and are refused. Is the server being restarted "
                "with different GGUF files?"
            ))

        return attempt

    def _embed_texts(self, ep: EmbedEndpoint, texts: list[str], start: int) -> Flow[np.ndarray]:
        """Embed ``texts`` as text, on a server without ``/tokenize`` (unchecked)."""
        self._warn_special(texts, "text at index {}", stacklevel=2, start=start)
        sent = [t + ep.suffix for t in texts]
        vectors, _ = yield from self._send_inputs(ep, sent, [len(t) for t in texts], start)
        return vectors

    def _send_inputs(
        self, ep: EmbedEndpoint, inputs: Sequence[str | list[int]], sizes: list[int],
        start: int,
    ) -> Flow[tuple[np.ndarray, dict[str, object]]]:
        """POST ``inputs`` (texts or token-id lists) as one request: (vectors, answer).

        An input the server refuses is located by resending the inputs one by one
        (``sizes``: their lengths, for the message)."""
        out = yield Send(ep, ep.embeddings_url, self._body(inputs, ep.base64))
        try:
            resp = self._check(ep, out)
        except InputFault as fault:
            raise (
                yield from locate(
                    self._config, ep, sizes, start, fault,
                    lambda i: Send(ep, ep.embeddings_url, self._body([inputs[i]], ep.base64)),
                    ep.embeddings_display,
                )
            ) from None
        return self._parse(ep, resp, len(inputs))

    def _count_attempt(self, text: str) -> Callable[[EmbedEndpoint], Flow[int]]:
        def attempt(ep: EmbedEndpoint) -> Flow[int]:
            # As embed sends it: special spellings as text, then exactly one EOS.
            body = json_body({"content": text, "add_special": False, "parse_special": False})
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
            return len(tokens) + 1

        return attempt

    def _flows(self, texts: Sequence[str]) -> list[Flow[np.ndarray]]:
        self._check_open()
        texts = list(texts)
        check_llama_cpp_unicode(texts)
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
        check_llama_cpp_unicode([text], "the text")
        flow = self._retrying(next(self._turn), self._count_attempt(text), self._probe_flow)
        return self._drivers.run(flow)



