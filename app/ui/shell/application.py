"""Starting and stopping the viewer: QApplication, main window, optional auto-screenshot.

``run_viewer`` is what ``priorsync view`` and ``priorsync demo`` call. It owns
the whole Qt lifetime, so the teardown order is fixed in one place (see
:mod:`app.ui.shell.shutdown` for why that order matters).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.ui.loading.loader import Loader
from app.ui.shell.errors import install_excepthook
from app.ui.shell.qt_compat import warn_if_broken_binding
from app.ui.shell.shutdown import configure_pyqtgraph, teardown

__all__ = ["run_viewer", "AutoShot"]

log = logging.getLogger(__name__)


class AutoShot(QtCore.QObject):
    """Saves a screenshot of the window once loading settles and/or quits after a delay.

    Parameters
    ----------
    window
        The main window.
    screenshot
        Where to save the PNG, or None.
    quit_after_s
        Quit at the latest this many seconds after start; with ``screenshot``
        the app quits as soon as the screenshot is saved. None: never.
    settle_delay_ms
        Wait after loading settles so the last repaint reaches the window.
    """

    def __init__(
        self,
        window,
        screenshot: Path | None,
        quit_after_s: float | None,
        settle_delay_ms: int = 400,
    ) -> None:
        super().__init__(window)
        self.window = window
        self.screenshot = screenshot
        self.quit_after_s = quit_after_s
        self.settle_delay_ms = settle_delay_ms
        self.saved = False
        self._shot_timer = QtCore.QTimer(self)
        self._shot_timer.setSingleShot(True)
        self._shot_timer.timeout.connect(self._shoot_if_settled)
        if screenshot is not None:
            window.settled.connect(self._on_settled)
        # A timer owned by this object, not QTimer.singleShot(ms, callable): it must
        # die with the window, or it would quit whatever event loop runs when it
        # fires (a later window in the same process, e.g. the next test's).
        self._deadline_timer = QtCore.QTimer(self)
        self._deadline_timer.setSingleShot(True)
        self._deadline_timer.timeout.connect(self._deadline)
        if quit_after_s is not None:
            self._deadline_timer.start(int(quit_after_s * 1000))

    def stop(self) -> None:
        """Cancel the pending screenshot and deadline (the event loop has ended)."""
        self._shot_timer.stop()
        self._deadline_timer.stop()

    def _on_settled(self) -> None:
        self._shot_timer.start(self.settle_delay_ms)

    def _shoot_if_settled(self) -> None:
        # Loading may have restarted (e.g. the demo build hands over to a scan).
        if self.saved or not self.window.is_settled():
            return
        self.save()
        if self.quit_after_s is not None:
            QtWidgets.QApplication.quit()

    def _deadline(self) -> None:
        if self.screenshot is not None and not self.saved:
            log.warning(
                "loading had not finished after %.0f s; saving what is shown", self.quit_after_s
            )
            self.save()
        QtWidgets.QApplication.quit()

    def save(self) -> None:
        """Grab the window (widgets rendered, no window manager needed) into the PNG.

        Beside it, ``<name>.layout.json`` gives each viewport's image area in the
        PNG's pixels (left to right) and its slice, for scripted checks of the shot.
        """
        assert self.screenshot is not None
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        pixmap = self.window.grab()
        # Quality 0 = strongest PNG compression (lossless either way).
        if not pixmap.save(str(self.screenshot), "PNG", 0):
            log.error("could not write the screenshot")
        ratio = pixmap.devicePixelRatio()
        viewports = []
        for i in sorted(self.window.views):
            view = self.window.views[i]
            top_left = view.graphics.mapTo(self.window, QtCore.QPoint(0, 0))
            rect = [top_left.x(), top_left.y(), view.graphics.width(), view.graphics.height()]
            viewports.append(
                {
                    "rect": [round(v * ratio) for v in rect],
                    "slice": view.state.slice_index,
                    "n_slices": view.state.volume.n_slices,
                }
            )
        layout = {"size": [pixmap.width(), pixmap.height()], "viewports": viewports}
        sidecar = self.screenshot.with_suffix(".layout.json")
        sidecar.write_text(json.dumps(layout, indent=1), encoding="utf-8")
        self.saved = True


def run_viewer(
    paths: Sequence[Path | str] = (),
    *,
    demo: bool = False,
    screenshot: Path | None = None,
    quit_after_s: float | None = None,
    loader: Loader | None = None,
    on_start: Callable[[QtWidgets.QMainWindow], None] | None = None,
) -> int:
    """Run the viewer until its window closes; return the process exit code.

    Parameters
    ----------
    paths
        Files and folders to open at start.
    demo
        Build/open the demo patient at start.
    screenshot, quit_after_s
        See :class:`AutoShot` (for tests and documentation screenshots).
    loader
        Background loader (tests inject fakes).
    on_start
        Called with the main window once it is shown (scripted sessions, e.g.
        the tests that drive the real app in a subprocess).
    """
    configure_pyqtgraph()
    owns_app = QtWidgets.QApplication.instance() is None
    existing = QtWidgets.QApplication.instance()
    app = (
        existing
        if isinstance(existing, QtWidgets.QApplication)
        else QtWidgets.QApplication(sys.argv[:1])
    )
    warn_if_broken_binding()
    app.setApplicationName("PriorSync")
    app.setOrganizationName("PriorSync")
    # Imported after the QApplication exists: the window module builds icons.
    from app.ui.resources import style_sheet
    from app.ui.shell.main_window import MainWindow

    app.setStyleSheet(style_sheet())
    window = MainWindow(loader)
    restore_hooks = install_excepthook(window.report)
    try:
        auto = AutoShot(window, screenshot, quit_after_s) if (screenshot or quit_after_s) else None
        if screenshot is not None:
            # A fixed size makes screenshots comparable between runs and machines.
            window.resize(1600, 900)
            window.show()
        else:
            window.showMaximized()
        if on_start is not None:
            on_start(window)
        if demo:
            window.open_demo()
        elif paths:
            window.open_paths(paths)
        code = app.exec()
        if auto is not None:
            auto.stop()
        if auto is not None and screenshot is not None and not auto.saved:
            code = code or 1
    finally:
        restore_hooks()
        teardown(app, [window], delete_app=owns_app)
    return int(code)
