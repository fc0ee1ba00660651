"""The exceptions the library raises, as a small hierarchy.

Catch :class:`Qwen3EmbedError` for everything; the input errors are also
``ValueError``/``TypeError`` so code written against other embedders keeps
working.
"""

from __future__ import annotations

from ._version import pip_install


class Qwen3EmbedError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidInputError(Qwen3EmbedError, ValueError):
    """A text cannot be embedded as given (empty, NUL byte, bad encoding...).

    ``index`` is the position of the offending text in the list passed in,
    or None when the problem is the list itself.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class InvalidInputTypeError(Qwen3EmbedError, TypeError):
    """An input has the wrong type (None, bytes, a number, a bare str for a list)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class TextTooLongError(InvalidInputError):
    """A text has more tokens than the model context allows."""

    def __init__(self, message: str, index: int | None, n_tokens: int, limit: int) -> None:
        super().__init__(message, index)
        self.n_tokens = n_tokens
        self.limit = limit


class ConfigurationError(Qwen3EmbedError, ValueError):
    """A constructor argument is out of range or inconsistent."""


class MissingDependencyError(Qwen3EmbedError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class ModelNotFoundError(Qwen3EmbedError, FileNotFoundError):
    """The GGUF file (or the served model) could not be found or downloaded."""


class ModelFileError(Qwen3EmbedError, ValueError):
    """A model file is unusable: damaged, truncated, not GGUF, or not a Qwen3 model.

    Raised before any text is processed; the message names the file, what it
    is and what was expected. ``path`` is the file.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class WrongModelKindError(ModelFileError, ConfigurationError):
    """A sound Qwen3 GGUF of the other kind: a reranker given to the embedder, or the reverse."""


class BackendError(Qwen3EmbedError, RuntimeError):
    """The inference backend failed while embedding."""


class ServerUnavailableError(BackendError, ConnectionError):
    """No server answered at the URL (refused, unreachable, or timed out)."""


class ServerError(BackendError):
    """The server answered with an error status.

    ``status`` is the HTTP status code and ``body`` a short excerpt of the
    response body.
    """

    def __init__(self, message: str, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class BadResponseError(BackendError):
    """The server answered 2xx but the body is not what the API promises."""


def missing_dependency(package: str, extra: str, exc: ImportError) -> MissingDependencyError:
    """An error that names the extra to install for a missing optional package."""
    err = MissingDependencyError(
        f"{package} is not installed; install it with: {pip_install(extra)} ({exc})"
    )
    err.__cause__ = exc
    return err
