"""Exceptions of the export layer; their messages are shown to users as they are."""

from __future__ import annotations

from app.io.safe_write import TargetExistsError

__all__ = ["ExportError", "ExportExistsError"]


class ExportError(Exception):
    """An export that could not be rendered or written; ``str(error)`` is a user-facing message."""


class ExportExistsError(ExportError, TargetExistsError):
    """The target file exists and overwriting was not allowed (the UI asks the user).

    Attributes
    ----------
    path
        The existing file.
    """
