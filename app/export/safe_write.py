"""The export layer's atomic, no-clobber write: :func:`app.io.safe_write.safe_write`
with its failures raised as :class:`~app.export.errors.ExportError`, which every
export caller already reports to the user.
"""

from __future__ import annotations

from pathlib import Path

from app.export.errors import ExportError, ExportExistsError
from app.io.safe_write import TargetExistsError, WriteError, describe_os_error
from app.io.safe_write import safe_write as _safe_write

__all__ = ["describe_os_error", "safe_write"]


def safe_write(path: Path | str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; never overwrite unless asked.

    Raises
    ------
    ExportExistsError
        ``path`` exists and ``overwrite`` is ``False``.
    ExportError
        The file could not be written; the message says why. No partial or
        temporary file is left behind.
    """
    try:
        return _safe_write(path, data, overwrite=overwrite)
    except TargetExistsError as exc:
        raise ExportExistsError(exc.path) from None
    except WriteError as exc:
        raise ExportError(str(exc)) from None
