"""Checks for known-broken Qt binding releases.

PySide6 6.12.0's ``SignalInstance.emit()`` returns ``True`` without taking a
reference to it. Every signal emitted from Python (pyqtgraph emits many on each
mouse move and repaint) therefore drops one reference to ``True``. On Python
3.11, where ``True`` is an ordinary reference-counted object, the count reaches
zero sooner or later, usually while the interpreter finalises, and Python
aborts with "Fatal Python error: bool_dealloc: deallocating True or False".
No teardown order can prevent it; the fix is a binding without the bug, which
pyproject.toml pins. Python 3.12+ makes ``True`` immortal (PEP 683), so there
the bug is harmless.
"""

from __future__ import annotations

import logging
import sys

from PySide6 import QtCore

__all__ = ["emit_keeps_refcounts", "warn_if_broken_binding"]

log = logging.getLogger(__name__)


class _Probe(QtCore.QObject):
    ping = QtCore.Signal()


def emit_keeps_refcounts() -> bool:
    """False when ``Signal.emit`` returns a borrowed ``True`` (PySide6 6.12.0 on Python < 3.12).

    The probe costs one emit, i.e. at most one lost reference on a broken binding.
    """
    if sys.version_info >= (3, 12):
        return True  # True is immortal; a missing reference cannot free it
    probe = _Probe()
    before = sys.getrefcount(True)
    # The stub types emit() as returning None; the binding returns True, and that
    # returned reference is exactly what this probe counts.
    result = probe.ping.emit()  # type: ignore[func-returns-value]
    # A correct emit hands back a new reference, so holding it adds one.
    held = sys.getrefcount(True) - before
    del result
    return held >= 1


def warn_if_broken_binding() -> bool:
    """Log an error naming the fix when the binding is known to crash; return True if it is."""
    if emit_keeps_refcounts():
        return False
    import PySide6

    log.error(
        "PySide6 %s has a reference-counting bug in Signal.emit that makes Python %d.%d "
        "abort at exit; install a release without it: pip install 'PySide6-Essentials!=6.12.0'",
        PySide6.__version__,
        *sys.version_info[:2],
    )
    return True
