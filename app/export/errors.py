"""Exceptions of the export layer; their messages are shown to users as they are."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ExportError", "ExportExistsError"]


class ExportError(Exception):
    """An export that could not be rendered or written; ``str(error)`` is a user-facing message."""


class ExportExistsError(ExportError):
    """The target file exists and overwriting was not allowed (the UI asks the user).

    Attributes
    ----------
    path
        The existing file.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path} already exists; choose another name or allow overwriting it")
