"""Text drawn over an image view: the read-only labels and the R/L/A/P edge letters.

The viewports and the sketch canvas show the same orientation letters in the
same places, so a reader sees the patient's right on the same side in both.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

__all__ = ["EDGES", "orientation_letters", "overlay_label", "place_orientation_letters"]

EDGES = ("left", "right", "top", "bottom")


def overlay_label(parent: QtWidgets.QWidget, name: str = "overlay") -> QtWidgets.QLabel:
    """A label over ``parent`` styled by object ``name``; clicks pass through it."""
    label = QtWidgets.QLabel(parent)
    label.setObjectName(name)
    # Overlays are read-only annotations: clicks must reach the image below.
    label.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return label


def orientation_letters(parent: QtWidgets.QWidget) -> dict[str, QtWidgets.QLabel]:
    """One empty orientation label per edge of ``parent`` (see :data:`EDGES`)."""
    return {edge: overlay_label(parent, "orientation") for edge in EDGES}


def place_orientation_letters(
    labels: dict[str, QtWidgets.QLabel], width: int, height: int, margin: int = 6
) -> None:
    """Size each letter to its text and put it at the middle of its edge."""
    for label in labels.values():
        label.adjustSize()
    left, right, top, bottom = (labels[e] for e in EDGES)
    left.move(margin, (height - left.height()) // 2)
    right.move(width - right.width() - margin, (height - right.height()) // 2)
    top.move((width - top.width()) // 2, margin)
    bottom.move((width - bottom.width()) // 2, height - bottom.height() - margin)
