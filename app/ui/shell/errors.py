"""Unexpected exceptions in the GUI: logged in full, shown to the user in one short line.

An exception raised in a Qt slot would otherwise print a traceback and carry
on (or, with some bindings, abort). A reader needs to know that something
failed, not a stack; the log keeps the details for a bug report.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["install_excepthook", "format_short"]

log = logging.getLogger("app.ui")


def format_short(exc: BaseException) -> str:
    """One line for the user: the exception's message (or type), at most 200 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return text


def install_excepthook(show: Callable[[str], None]) -> Callable[[], None]:
    """Route uncaught exceptions (GUI and worker threads) to the log and ``show``.

    Parameters
    ----------
    show
        Called in the GUI thread with a short message (e.g. a status-bar or a
        non-modal message box). Never gets a traceback.

    Returns
    -------
    Callable[[], None]
        Restores the previous hooks (used at shutdown and in tests).
    """
    previous_hook = sys.excepthook
    previous_thread_hook = threading.excepthook
    reporting = threading.local()

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous_hook(exc_type, exc, tb)
            return
        log.error("unexpected error", exc_info=(exc_type, exc, tb))
        # A failure inside `show` must not recurse into this hook forever.
        if getattr(reporting, "active", False):
            return
        reporting.active = True
        try:
            show(f"Unexpected error: {format_short(exc)} (details in the log)")
        except Exception:  # noqa: BLE001 - last line of defence
            log.exception("could not show the error message")
        finally:
            reporting.active = False

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        # Worker threads report through their own signals; anything arriving here
        # is a bug and is logged only (showing it would touch widgets off-thread).
        value = args.exc_value
        log.error(
            "unexpected error in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, value, args.exc_traceback) if value is not None else False,
        )

    sys.excepthook = hook
    threading.excepthook = thread_hook

    def restore() -> None:
        sys.excepthook = previous_hook
        threading.excepthook = previous_thread_hook

    return restore
