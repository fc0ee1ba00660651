"""Request bodies and the parsing of answers: vectors and scores on the right input.

The parsers refuse any answer that would put a vector or a score on another
input than its own: a wrong count, a missing or repeated ``index``, values
that are not what the API promises.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np

from .._errors import BadResponseError
from .responses import excerpt


def json_body(payload: dict[str, Any]) -> bytes:
    """A request body: compact UTF-8 JSON (texts stay unescaped, so sizes are true)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_size(text: str) -> int:
    """Bytes ``text`` takes as a JSON string in a :func:`json_body`."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


# What :func:`loads` answers for a body that is not (usable) JSON.
_NOT_JSON: Any = object()


def loads(content: bytes) -> Any:
    """The JSON value of a body, or ``_NOT_JSON``: for bytes that are not JSON, and for
    JSON nested too deeply for Python's parser (RecursionError), which no API answers."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NOT_JSON


def json_payload(resp: httpx.Response, route: str, key: str, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer, which must hold a list under ``key``."""
    status = resp.status_code
    payload = loads(resp.content)
    if payload is _NOT_JSON:
        raise BadResponseError(
            f"{route} answered {status} with a body that is not JSON: {excerpt(resp.text)!r}"
        )
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise BadResponseError(
            f"{route} answered {status} without a {key!r} list of {what}: "
            f"{excerpt(resp.text)!r}"
        )
    return payload


def _indexed(
    items: list[object], n: int, route: str, asked: str, what: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, item) for an answer's ``n`` items, each ``index`` of 0..n-1 exactly once."""
    if len(items) != n:
        raise BadResponseError(
            f"asked {route} {asked} and got {len(items)}; refusing to guess which answer "
            "belongs to which input"
        )
    seen = [False] * n
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or not isinstance(index, int)
            or isinstance(index, bool)
            or not 0 <= index < n
            or seen[index]
        ):
            raise BadResponseError(
                f"{route} answered {what} with index {index!r}, but each of 0 to {n - 1} "
                "must appear once; refusing to guess the order"
            )
        seen[index] = True
        yield index, item


def decode_vector(value: object, where: str) -> np.ndarray:
    """One embedding, base64 float32 or a list of numbers; ``where`` starts the message.

    Only JSON numbers count: ``true`` or ``"1"`` would pass numpy's conversion as
    1.0, and NaN or infinity (Python's JSON reader takes ``NaN``) is no vector either.
    """
    vec: np.ndarray | None = None
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadResponseError(f"{where} that is not valid base64") from None
        if not raw or len(raw) % 4:
            raise BadResponseError(
                f"{where} of {len(raw)} bytes, not a whole number of float32 values"
            )
        vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif isinstance(value, list) and value and isinstance(value[0], list):
        raise BadResponseError(
            f"{where} with one vector per token: the server is not pooling. Start "
            "llama-server with --pooling last (Qwen3-Embedding pools the last token)"
        )
    elif isinstance(value, list) and value:
        wrong = [x for x in value if type(x) is not float and type(x) is not int][:1]
        if wrong:
            bad = wrong[0]
            raise BadResponseError(
                f"{where} holding {excerpt(repr(bad))[:40]} ({type(bad).__name__}), "
                "not a number: refusing to read it as one"
            )
        try:
            with np.errstate(over="ignore"):  # too large for float32: inf, refused below
                vec = np.asarray(value, dtype=np.float64).astype(np.float32)
        except OverflowError:  # an integer too large even for float64
            vec = np.array([np.inf], dtype=np.float32)
    if vec is None:
        raise BadResponseError(
            f"{where} that is {excerpt(repr(value))[:60]}, not a list of numbers or base64"
        )
    if not np.isfinite(vec).all():
        raise BadResponseError(
            f"{where} holding {int((~np.isfinite(vec)).sum())} non-finite value(s) "
            "(NaN or infinity, or a number too large for float32): the server's computation "
            "failed; refusing the vector"
        )
    return vec


def parse_embeddings(
    resp: httpx.Response, where: str, route: str, n: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """(vectors in input order, the JSON payload) for ``n`` texts, or BadResponseError."""
    payload = json_payload(resp, route, "data", "embeddings")
    rows: list[np.ndarray] = [np.empty(0, np.float32)] * n
    for index, item in _indexed(payload["data"], n, route, f"for {n} embeddings",
                                "an embedding"):
        rows[index] = decode_vector(
            item.get("embedding"),
            f"{where} answered an embedding (item {index} of the request)",
        )
    sizes = sorted({len(r) for r in rows})
    if len(sizes) != 1:
        raise BadResponseError(f"{route} answered vectors of different sizes {sizes}")
    return np.stack(rows), payload


def parse_rerank(resp: httpx.Response, route: str, n: int) -> np.ndarray:
    """Scores in input order for ``n`` documents (answers come sorted by score)."""
    payload = json_payload(resp, route, "results", "scores")
    scores = np.empty(n, dtype=np.float32)
    for index, item in _indexed(payload["results"], n, route, f"to score {n} documents",
                                "a result"):
        value = item.get("relevance_score")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not -1e-6 <= value <= 1 + 1e-6
        ):
            raise BadResponseError(
                f"{route} answered relevance_score {value!r} for document {index}, not a "
                "probability in [0, 1]: the server is not scoring with a Qwen3 reranker's "
                "yes/no head (or it failed on this document)"
            )
        scores[index] = min(max(float(value), 0.0), 1.0)
    return scores
