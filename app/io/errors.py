"""Exceptions of the IO layer; their messages are shown to users as they are."""

from __future__ import annotations

__all__ = ["Cancelled", "LoadError", "SkipFile"]


class LoadError(Exception):
    """Input that cannot be opened as a CT volume; ``str(error)`` is a user-facing message."""


class Cancelled(LoadError):
    """The user cancelled a scan or load (through its ``cancel`` event)."""

    def __init__(self, message: str = "loading was cancelled") -> None:
        super().__init__(message)


class SkipFile(Exception):
    """A file a reader recognised but cannot use; the message is the reason (no patient data)."""
