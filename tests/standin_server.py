"""A stand-in for Docker Model Runner / llama-server on 127.0.0.1.

Only for faults a real server can't be made to produce on demand. Every
answer it gives reproduces a documented one (docs/sources.md):

* Model Runner's own errors are plain text from Go's ``http.Error``: the
  message plus a newline, ``Content-Type: text/plain; charset=utf-8`` and
  ``X-Content-Type-Options: nosniff`` — 404 ``model not found``, 400
  ``model is required``, 500 ``unable to load runner: ...``, 503
  ``service unavailable``; any path it does not route is 404 ``not found``.
* llama-server's errors are JSON ``{"error": {"code", "message", "type"}}``.
* Good requests are proxied to a real llama-server, so vectors are real.

Scripts: ``standin.script(kind, action, ...)`` queues actions for a kind of
request — ``"probe"`` (an embeddings request whose input is exactly
``<|endoftext|>``), ``"embed"`` (any other embeddings request), ``"rerank"``
(Model Runner's rerank route) or ``"tokenize"``. Each request takes the next
action of its kind; with the queue empty it takes ``standin.defaults[kind]``
if set, else embeddings and rerank requests are proxied and anything else
gets Model Runner's 404.
``standin.requests`` records every request.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np

from qwen3_embed_core import EOS_TEXT

MODEL_RUNNER_PATHS = ("/engines/llama.cpp/v1/embeddings", "/engines/v1/embeddings")
LLAMA_SERVER_PATH = "/v1/embeddings"
# Model Runner's rerank routes (v1.0.4+; no /v1/rerank there), proxied to llama-server's.
MODEL_RUNNER_RERANK_PATHS = ("/engines/llama.cpp/rerank", "/engines/rerank")


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    kind: str
    json: Any = None

    @property
    def inputs(self) -> list[str]:
        value = (self.json or {}).get("input")
        return [value] if isinstance(value, str) else list(value or [])


@dataclass
class Answer:
    """What the handler sends back."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Action = Callable[["StandIn", Recorded], "Answer | None"]  # None: the connection is dropped


# -- actions -------------------------------------------------------------------


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> Action:
    """Model Runner's own error, exactly as Go's http.Error writes it."""
    hdrs = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    return lambda s, r: Answer(status, (text + "\n").encode(), "text/plain; charset=utf-8", hdrs)


def llama_error(status: int, message: str, type_: str, **extra: Any) -> Action:
    """llama-server's JSON error."""
    body = json.dumps({"error": {"code": status, "message": message, "type": type_, **extra}})
    return lambda s, r: Answer(status, body.encode())


def reply(status: int, body: bytes | str | dict, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> Action:
    """Any fixed answer (for malformed bodies and such)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else (
        body.encode() if isinstance(body, str) else body)
    return lambda s, r: Answer(status, data, content_type, headers or {})


def proxy(mangle: Callable[[dict], dict] | None = None, strip_base64: bool = False) -> Action:
    """Forward to the real llama-server; ``mangle`` edits its JSON answer (then
    vectors come back as float lists, so it can edit them)."""

    def action(s: StandIn, r: Recorded) -> Answer:
        return s.forward(r, mangle, strip_base64 or mangle is not None)

    return action


def slow(seconds: float, then: Action | None = None) -> Action:
    """Answer only after ``seconds`` (past the client's read timeout)."""

    def action(s: StandIn, r: Recorded) -> Answer | None:
        s.stopping.wait(seconds)
        return (then or proxy())(s, r)

    return action


def drop() -> Action:
    """Close the connection without answering (a crashed or restarted server)."""
    return lambda s, r: None


def when(predicate: Callable[[Recorded], bool], action: Action,
         otherwise: Action | None = None) -> Action:
    """``action`` for requests that match, else ``otherwise`` (default: proxy)."""
    return lambda s, r: (action if predicate(r) else (otherwise or proxy()))(s, r)


def floats_of(item: dict) -> list[float]:
    """An embedding item's vector as floats, whatever its encoding."""
    value = item["embedding"]
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").tolist()
    return value


# -- the server ------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real servers
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def do_POST(self) -> None:
        self.server.standin.handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:  # quiet
        pass


class StandIn:
    """The stand-in server; ``url`` is its root (like Model Runner's)."""

    def __init__(self, upstream: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None  # a llama-server's /v1 root
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Action]] = {}
        self.defaults: dict[str, Action] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.standin = self  # type: ignore[attr-defined]
        self.scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._client = httpx.Client(timeout=60.0)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def script(self, kind: str, *actions: Action) -> StandIn:
        with self._lock:
            self.scripts.setdefault(kind, deque()).extend(actions)
        return self

    def of_kind(self, kind: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    # -- handling --------------------------------------------------------------

    def handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if path.endswith("/tokenize"):
            kind = "tokenize"
        elif h.command == "POST" and (path in MODEL_RUNNER_PATHS or path == LLAMA_SERVER_PATH):
            inputs = parsed.get("input") if isinstance(parsed, dict) else None
            kind = "probe" if inputs in (EOS_TEXT, [EOS_TEXT]) else "embed"
        elif h.command == "POST" and path in MODEL_RUNNER_RERANK_PATHS:
            kind = "rerank"
        else:
            kind = "other"
        rec = Recorded(h.command, path, {k.lower(): v for k, v in h.headers.items()}, body,
                       h.client_address[1], kind, parsed)
        with self._lock:
            self.requests.append(rec)
            queue = self.scripts.get(kind)
            action = queue.popleft() if queue else self.defaults.get(kind)
        if action is None:
            proxied = kind in ("probe", "embed", "rerank") and self.upstream
            action = proxy() if proxied else plain(404, "not found")
        try:
            answer = action(self, rec)
            if answer is None:
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            h.send_response(answer.status)
            h.send_header("Content-Type", answer.content_type)
            h.send_header("Content-Length", str(len(answer.body)))
            for k, v in answer.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(answer.body)
        except OSError:  # the client gave up first (a timeout test)
            h.close_connection = True

    def forward(self, r: Recorded, mangle: Callable[[dict], dict] | None,
                strip_base64: bool) -> Answer:
        assert self.upstream, "this stand-in has no upstream llama-server"
        payload = dict(r.json or {})
        if strip_base64:
            payload.pop("encoding_format", None)
        route = "/rerank" if r.kind == "rerank" else "/embeddings"
        resp = self._client.post(self.upstream + route, json=payload)
        body = resp.content
        if mangle is not None and resp.status_code == 200:
            body = json.dumps(mangle(resp.json())).encode()
        return Answer(resp.status_code, body, resp.headers.get("content-type", "application/json"))

    # -- lifetime ------------------------------------------------------------------

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
