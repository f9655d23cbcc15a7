"""The window's central area: a hint when nothing is open, else one frame per date in a grid.

Each frame shows a placeholder while its series loads (or says why it could
not) and then the viewport. Frames sit in a grid laid out by
:mod:`app.ui.viewer.layouts`, every cell stretched equally, so the dates share
the screen evenly in both 1×N and 2×2.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from app.ui.viewer.layouts import Layout, grid_cells, grid_shape

__all__ = ["MIN_VIEWPORT_SIZE", "Placeholder", "SlotArea", "SlotFrame"]

# No dock or window size squeezes a viewport below this (pixels); the window grows instead.
MIN_VIEWPORT_SIZE = QtCore.QSize(240, 240)


class Placeholder(QtWidgets.QLabel):
    """Stands in a slot while its series loads (or says why it could not)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setObjectName("placeholder")
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumWidth(200)


class SlotFrame(QtWidgets.QWidget):
    """One study's place on screen; its content (placeholder or viewport) is swapped.

    Swapping inside a layout keeps Qt ownership explicit: the frame's layout
    holds the content, and the previous content is handed back to the caller
    to dispose of.
    """

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._box = layout
        self.content: QtWidgets.QWidget | None = None
        self.setMinimumSize(MIN_VIEWPORT_SIZE)

    def set_content(self, widget: QtWidgets.QWidget) -> QtWidgets.QWidget | None:
        """Show ``widget``; return the previous content (the caller disposes of it)."""
        old = self.content
        if old is not None:
            self._box.removeWidget(old)
        self._box.addWidget(widget)
        self.content = widget
        return old


class SlotArea(QtWidgets.QStackedWidget):
    """Page 0 invites the user to open something; page 1 holds the slot frames in a grid.

    Parameters
    ----------
    dispose
        Called with each widget taken off screen (previous contents, frames).
    """

    def __init__(self, dispose: Callable[[QtWidgets.QWidget | None], None]) -> None:
        super().__init__()
        self._dispose = dispose
        self.layout_kind = Layout.ROW
        self.frames: list[SlotFrame] = []
        self.empty_hint = Placeholder(
            "Open a DICOM folder or CT volume files (File ▸ Open, or drop them here)"
        )
        self.grid_host = QtWidgets.QWidget()
        self.grid_host.setObjectName("viewportArea")
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.addWidget(self.empty_hint)
        self.addWidget(self.grid_host)

    def frame(self, i: int) -> SlotFrame:
        """The frame of slot ``i``."""
        return self.frames[i]

    def add_frame(self) -> SlotFrame:
        """Append an empty slot frame and show the grid."""
        frame = SlotFrame()
        self.frames.append(frame)
        self.setCurrentWidget(self.grid_host)
        self._relayout()
        return frame

    def set_content(self, i: int, widget: QtWidgets.QWidget) -> None:
        """Show ``widget`` in slot ``i`` (disposing of what was there)."""
        frame = self.frames[i]
        if frame.content is not widget:
            self._dispose(frame.set_content(widget))

    def set_layout_kind(self, layout: Layout) -> None:
        """Arrange the frames as ``layout``."""
        self.layout_kind = layout
        self._relayout()

    def clear(self) -> None:
        """Dispose of every frame and its content; show the hint."""
        for frame in reversed(self.frames):
            self.grid.removeWidget(frame)
            self._dispose(frame.content)
            frame.content = None
            self._dispose(frame)
        self.frames = []
        self.setCurrentWidget(self.empty_hint)

    def _relayout(self) -> None:
        for frame in self.frames:
            self.grid.removeWidget(frame)
        n = len(self.frames)
        rows, cols = grid_shape(self.layout_kind, n)
        for r in range(self.grid.rowCount()):
            self.grid.setRowStretch(r, 0)
        for c in range(self.grid.columnCount()):
            self.grid.setColumnStretch(c, 0)
        for frame, (r, c) in zip(self.frames, grid_cells(self.layout_kind, n), strict=False):
            self.grid.addWidget(frame, r, c)
            frame.show()
        for r in range(rows):
            self.grid.setRowStretch(r, 1)
        for c in range(cols):
            self.grid.setColumnStretch(c, 1)
