"""Caching a training bank on disk: where it lives, writing it atomically, reading it back.

Building a bank (simulated re-scans of every training volume) takes minutes;
both trainings cache theirs under a name derived from everything that shapes
it, and rebuild it when the cached file is missing or unreadable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from app.io.safe_write import replacing

__all__ = ["bank_cache_path", "load_cached_bank", "save_npz_atomically"]

log = logging.getLogger(__name__)


def save_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` via a temp file in the same folder and a rename."""
    with replacing(path) as tmp, tmp.open("wb") as fh:
        # A file object, not a name: np.savez would append ".npz" to the name.
        # numpy's stub types **arrays as if it could fill allow_pickle (a bool).
        np.savez(fh, **arrays)  # type: ignore[arg-type]


class _SizedBank(Protocol):
    @property
    def n_slices(self) -> int: ...


_Bank = TypeVar("_Bank", bound=_SizedBank)


def bank_cache_path(cache_dir: Path | None, prefix: str, key: Sequence[str]) -> Path | None:
    """Where a bank built from ``key`` (everything that shapes it) is cached, if anywhere."""
    if cache_dir is None:
        return None
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:16]
    return cache_dir / f"{prefix}-{digest}.npz"


def load_cached_bank(path: Path | None, load: Callable[[Path], _Bank], what: str) -> _Bank | None:
    """The bank cached at ``path``, or ``None`` when absent or unreadable (then rebuilt)."""
    if path is None or not path.exists():
        return None
    try:
        bank = load(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s %s is unreadable (%s); rebuilding", what, path.name, exc)
        return None
    log.info("loaded %s %s (%d slices)", what, path.name, bank.n_slices)
    return bank
