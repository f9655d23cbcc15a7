"""Help ▸ About and Help ▸ Mouse and keys: what the app is, what it runs, how to drive it."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.ui.sync.anatomical_sync import ModelInfo

__all__ = ["CONTROLS_HELP", "LICENCES", "about_text", "show_about", "show_controls"]

CONTROLS_HELP = (
    "Wheel, Up/Down: next slice toward the head/feet\n"
    "Page Up/Down: 10 slices · Home/End: top/bottom slice\n"
    "Right drag: window (left/right) and level (up/down)\n"
    "Keys 1-5: lung, mediastinum, abdomen, bone, brain window\n"
    "Left or middle drag: pan · Ctrl+wheel or +/-: zoom\n"
    "Double click or R: reset zoom and pan\n"
    "Click a slice: every other date jumps to the same anatomical level (Sync slices)\n"
    "N / Shift+N: next / previous match candidate of the prior under the mouse "
    "(or the one last clicked); click a candidate row to jump to it\n"
    "A / C / G: axial, coronal, sagittal plane of the viewport under the mouse\n"
    "Right click a viewport: presets, plane, sync, saliency, export\n"
    "P: linked cursor: click or drag on any date (any plane); every other date shows the "
    "same spot with its uncertainty circle, or says it is outside that scan\n"
    "S: saliency overlay (where the model sees the match) on synced slices\n"
    "Ctrl+E: export the synced slices as one image · Ctrl+Shift+E: a slice range\n"
    "Ctrl+K: sketch query (draw an abnormality on a normal slice, find similar slices)\n"
    "Layout ▸ 1×N or 2×2: how the dates are arranged\n"
    "Click a viewport to direct keys to it; the toolbar links window, zoom/pan and slices."
)
# Shown in Help ▸ About: (component, what it is used for, licence).
LICENCES: tuple[tuple[str, str, str], ...] = (
    ("totalsegmentator 2.18.0", "CT data", "Apache-2.0"),
    ("dicom2stl 0.5.0", "CT data", "Apache-2.0"),
    ("pyradiomics 3.1.0", "CT data", "BSD-3-Clause"),
    ("Qt / PySide6", "user interface", "LGPLv3"),
    ("pyqtgraph", "image display", "MIT"),
    ("pydicom", "DICOM reading", "MIT"),
    ("SimpleITK", "volume reading", "Apache-2.0"),
    ("onnxruntime", "model inference", "MIT"),
    ("hnswlib", "slice index", "Apache-2.0"),
    ("OpenCV", "image processing", "Apache-2.0"),
    ("numpy", "arrays", "BSD-3-Clause"),
)


def about_text(info: ModelInfo | None, unavailable_reason: str | None) -> str:
    """The About box's text: version, model name and hash, execution provider, licences."""
    import app

    lines = [f"<b>PriorSync {app.__version__}</b>", "CT priors synced by anatomy.", ""]
    if info is not None:
        lines += [
            f"Model: {info.name}",
            f"Model sha256: <tt>{info.sha256}</tt>",
            f"Execution provider: {info.provider} ({info.device})",
        ]
    elif unavailable_reason is not None:
        lines.append(f"Model: unavailable ({unavailable_reason})")
    else:
        lines.append("Model: not loaded yet (it loads when a study is opened)")
    return "<br>".join(lines) + _licence_table()


def _licence_table() -> str:
    """The About box's table of bundled data and main dependencies with their licences."""
    rows = "".join(
        f"<tr><td>{name}</td><td>{what}</td><td>{licence}</td></tr>"
        for name, what, licence in LICENCES
    )
    return (
        "<p><b>Bundled data and main components</b></p>"
        "<table cellspacing='0' cellpadding='2'>"
        "<tr><th align='left'>Component</th><th align='left'>Use</th>"
        f"<th align='left'>Licence</th></tr>{rows}</table>"
    )


def _info_box(parent: QtWidgets.QWidget, title: str, text: str) -> QtWidgets.QMessageBox:
    """A non-modal information box that deletes itself when closed."""
    box = QtWidgets.QMessageBox(parent)
    box.setWindowTitle(title)
    box.setIcon(QtWidgets.QMessageBox.Icon.Information)
    box.setText(text)
    box.setModal(False)
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    return box


def show_about(parent: QtWidgets.QWidget, text: str) -> QtWidgets.QMessageBox:
    """Show the About box (rich ``text``), non-modal; return it."""
    box = _info_box(parent, "About PriorSync", "")
    box.setObjectName("aboutBox")
    box.setTextFormat(QtCore.Qt.TextFormat.RichText)
    box.setText(text)
    box.show()
    return box


def show_controls(parent: QtWidgets.QWidget) -> QtWidgets.QMessageBox:
    """Show a non-modal summary of the mouse and keyboard controls; return it."""
    box = _info_box(parent, "PriorSync controls", CONTROLS_HELP)
    box.show()
    return box
