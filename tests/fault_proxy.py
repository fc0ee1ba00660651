"""A fault-injecting TCP proxy on 127.0.0.1 in front of a real llama-server.

Each request the client sends is read whole, forwarded to the server, and the
server's real answer is read whole; then the next :class:`Fault` is applied
on the way back. The faults are the ones a network, a proxy or a crashing
server produces, and none is a made-up API answer: the bytes are the real
server's, cut, delayed, dripped, relabelled or with values swapped for other
JSON types.

``proxy.faults`` is a queue (a ``collections.deque`` of Fault) that requests
take from in arrival order; with it empty a request passes through untouched.
``proxy.injected`` counts what was applied, by kind.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import Counter, deque
from dataclasses import dataclass

# What each kind does to the answer (or the request).
KINDS = (
    "none",          # passes through
    "reset",         # RST before the request reaches the server
    "reset_late",    # part of the answer, then RST
    "stall",         # no answer for `seconds`, then close
    "truncate",      # the first `size` bytes of the answer, then FIN
    "drip",          # `size` bytes every `seconds` until all is sent
    "gzip",          # `Content-Encoding: gzip` on the plain body
    "wrong_type",    # one vector value replaced by `value` (JSON true, "1", null, NaN...)
    "nested",        # the body replaced by JSON nested `size` deep
    "usage",         # usage.prompt_tokens shifted by `size`
    "status",        # the answer replaced by Model Runner's plain 503
    "switch",        # from this request on, the other upstream (a restart with another file)
)


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0.0
    size: int = 0
    value: object = None

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind


def _read_message(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One HTTP/1.1 message (head and Content-Length body) from ``sock``; None at EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head_end = buf.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    message = bytes(buf[: head_end + length])
    del buf[: head_end + length]
    return message


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def _join(lines: list[bytes], body: bytes) -> bytes:
    lines = [ln for ln in lines if not ln.lower().startswith(b"content-length:")]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _rewrite_json(message: bytes, edit) -> bytes | None:
    """The message with its JSON body edited; None where ``edit`` does not apply."""
    lines, body = _split(message)
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    new = edit(payload)
    return None if new is None else _join(lines, json.dumps(new).encode())


def _wrong_type(value: object):
    def edit(payload):
        if isinstance(payload, dict) and isinstance(payload.get("tokens"), list):
            payload["tokens"] = value  # a /tokenize answer
            return payload
        data = payload.get("data") if isinstance(payload, dict) else None
        if not data:
            return None
        item = data[0]
        vec = item.get("embedding")
        if isinstance(vec, str):  # base64: as floats, so one value can be swapped
            raw = _b64(vec)
            vec = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        vec[len(vec) // 2] = value
        item["embedding"] = vec
        item.pop("encoding_format", None)
        return payload
    return edit


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _usage(shift: int):
    def edit(payload):
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict) or "data" not in payload:
            return None
        usage["prompt_tokens"] += shift
        return payload
    return edit


class FaultProxy:
    """``url`` (``http://127.0.0.1:PORT/v1``) forwards to ``upstream_port`` on 127.0.0.1;
    ``other_port``: the server a ``switch`` fault moves to (and back)."""

    def __init__(self, upstream_port: int, other_port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.other_port = other_port
        self.faults: deque[Fault] = deque()
        self.default = Fault("none")  # for requests when the queue is empty
        self.injected: Counter[str] = Counter()  # applied, by kind ("none": untouched)
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _next(self) -> Fault:
        with self._lock:
            self.requests += 1
            return self.faults.popleft() if self.faults else self.default

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stop.is_set():
                request = _read_message(client, buf)
                if request is None:
                    return
                fault = self._next()
                if fault.kind == "reset":
                    self._count("reset")
                    return self._reset(client)
                if fault.kind == "switch" and self.other_port is not None:
                    with self._lock:
                        self.upstream_port, self.other_port = self.other_port, self.upstream_port
                answer = self._forward(request)
                if not self._answer(client, fault, answer):
                    return
        except OSError:
            pass  # the client gave up (its deadline) or reset
        finally:
            client.close()

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as up:
            up.sendall(request)
            answer = _read_message(up, bytearray())
        assert answer is not None, "llama-server closed without answering"
        return answer

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _answer(self, client: socket.socket, fault: Fault, answer: bytes) -> bool:
        """Send the (faulted) answer; False when the connection is to be closed."""
        kind = fault.kind
        if kind in ("wrong_type", "usage"):
            edit = _wrong_type(fault.value) if kind == "wrong_type" else _usage(fault.size)
            edited = _rewrite_json(answer, edit)
            kind, answer = ("none", answer) if edited is None else (kind, edited)
        self._count(kind)
        if kind == "reset_late":
            client.sendall(answer[: max(1, fault.size % len(answer))])
            self._reset(client)
            return False
        if kind == "stall":
            self._stop.wait(fault.seconds)
            return False
        if kind == "truncate":
            client.sendall(answer[: fault.size % len(answer)])
            client.shutdown(socket.SHUT_WR)
            return False
        if kind == "drip":
            step = max(1, fault.size)
            for i in range(0, len(answer), step):
                client.sendall(answer[i : i + step])
                if self._stop.wait(fault.seconds):
                    return False
            return True
        if kind == "gzip":
            lines, body = _split(answer)
            answer = _join([*lines, b"Content-Encoding: gzip"], body)
        elif kind == "nested":
            lines, _ = _split(answer)
            answer = _join(lines, b"[" * fault.size + b"]" * fault.size)
        elif kind == "status":
            answer = _join([b"HTTP/1.1 503 Service Unavailable",
                            b"Content-Type: text/plain; charset=utf-8"], b"service unavailable\n")
        client.sendall(answer)
        return True

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
