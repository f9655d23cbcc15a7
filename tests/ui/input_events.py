"""Synthetic mouse and wheel input for pyqtgraph views.

``QTest.mouseMove`` cannot hold a button down while moving, so drags are sent
as explicit press / move / release QMouseEvents to the view's viewport widget,
which is where a real mouse's events arrive. Moves are spaced in time because
pyqtgraph drops mouse moves closer than 1/``mouseRateLimit`` s (10 ms).
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtTest, QtWidgets

Qt = QtCore.Qt


def _send_mouse(widget, kind, pos, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier):
    local = QtCore.QPointF(pos)
    global_pos = QtCore.QPointF(widget.mapToGlobal(pos))
    event = QtGui.QMouseEvent(kind, local, global_pos, button, buttons, modifiers)
    QtWidgets.QApplication.sendEvent(widget, event)


_MOVE_GAP_MS = 15


def drag(widget: QtWidgets.QWidget, start: QtCore.QPoint, end: QtCore.QPoint, button, steps=4):
    """Press ``button`` at ``start``, move to ``end`` in ``steps``, release."""
    none = Qt.MouseButton.NoButton
    _send_mouse(widget, QtCore.QEvent.Type.MouseButtonPress, start, button, button)
    for i in range(1, steps + 1):
        QtTest.QTest.qWait(_MOVE_GAP_MS)
        p = start + (end - start) * (i / steps)
        _send_mouse(widget, QtCore.QEvent.Type.MouseMove, p, none, button)
    _send_mouse(widget, QtCore.QEvent.Type.MouseButtonRelease, end, button, none)
    QtWidgets.QApplication.processEvents()


def double_click(widget: QtWidgets.QWidget, pos: QtCore.QPoint, button=Qt.MouseButton.LeftButton):
    """The event sequence of a real double click: press, release, double-click, release."""
    none = Qt.MouseButton.NoButton
    ev = QtCore.QEvent.Type
    _send_mouse(widget, ev.MouseButtonPress, pos, button, button)
    _send_mouse(widget, ev.MouseButtonRelease, pos, button, none)
    _send_mouse(widget, ev.MouseButtonDblClick, pos, button, button)
    _send_mouse(widget, ev.MouseButtonRelease, pos, button, none)
    QtWidgets.QApplication.processEvents()


def wheel(widget: QtWidgets.QWidget, notches: int, modifiers=Qt.KeyboardModifier.NoModifier):
    """Turn the wheel over the widget's centre (+ away from the user, - toward)."""
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    event = QtGui.QWheelEvent(
        pos,
        QtCore.QPointF(widget.mapToGlobal(pos.toPoint())),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(widget, event)
    QtWidgets.QApplication.processEvents()
