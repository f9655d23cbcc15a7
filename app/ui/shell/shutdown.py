"""Deterministic Qt teardown, so the viewer exits with status 0 and never crashes at exit.

Left to itself, Python destroys the QApplication, the widgets, pyqtgraph's
items and any still-running worker at interpreter finalisation, in whatever
order the garbage collector meets them, while modules are already being torn
down. :func:`teardown` instead runs, while everything is still alive:

1. ``shutdown()`` on each window: cancel background jobs and *wait* for the
   worker threads, so no thread runs Python or emits into a deleted QObject
   during finalisation;
2. close the windows and delete them (``deleteLater`` + flushing deferred
   deletes), so every QGraphicsItem dies with its scene and view;
3. drop cached Qt objects held by modules (icons);
4. delete the QApplication itself when :func:`run_viewer` created it
   (``QApplication.shutdown()``), before Python finalises.

The crash seen with PySide6 6.12.0 at exit is different: a reference-counting
bug in that release (see :mod:`app.ui.shell.qt_compat`), which no teardown order
avoids; that release is excluded in pyproject.toml.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.ui.resources import clear_icon_cache

__all__ = ["configure_pyqtgraph", "teardown"]

log = logging.getLogger(__name__)


def configure_pyqtgraph() -> None:
    """Global pyqtgraph options the viewer relies on."""
    # Row-major: voxels[k] is (rows, cols) and must paint row 0 at the top.
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def teardown(
    app: QtWidgets.QApplication,
    windows: Iterable[QtWidgets.QWidget],
    *,
    delete_app: bool,
) -> None:
    """Stop workers, destroy the windows, then (optionally) the QApplication, in that order.

    Parameters
    ----------
    app
        The running application.
    windows
        Top-level windows to destroy; ``shutdown()`` is called on those that have it.
    delete_app
        Destroy the QApplication too (only when the caller created it: a test's
        shared QApplication must survive).
    """
    # A quit that arrives when no event loop runs any more (Qt posts a second
    # one while the first closes the windows; closing the last window posts
    # another) would stay pending and end the next event loop at once: a later
    # window's, in tests or scripts that keep the QApplication. Drop them.
    QtCore.QCoreApplication.removePostedEvents(app, QtCore.QEvent.Type.Quit)
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    for window in windows:
        shutdown = getattr(window, "shutdown", None)
        if callable(shutdown):
            shutdown()
        window.close()
        window.deleteLater()
    # deleteLater only posts an event; deliver it now, while the app is alive.
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    app.processEvents()
    app.setQuitOnLastWindowClosed(quit_on_close)
    clear_icon_cache()
    gc.collect()
    if delete_app:
        app.shutdown()
        gc.collect()
