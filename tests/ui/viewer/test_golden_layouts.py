"""Golden screenshots of each hanging layout at two window sizes, compared with a tolerance.

The window shows the three fake dates of ``fakes.three_dates`` with the
matching model missing (so no score depends on the model or the machine's
arithmetic). The viewport area is grabbed, turned grey and shrunk 4x; it must
stay within a small mean difference of the golden PNG under tests/ui/golden/.

Regenerate the goldens (after an intended change of the look) with::

    PRIORSYNC_UPDATE_GOLDENS=1 python -m pytest tests/ui/viewer/test_golden_layouts.py

and look at the new PNGs before committing them.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import FakeBackend, three_dates
from PySide6 import QtGui

from app.ml.anatomy.sync_service import SyncEngine
from app.ui.loading.loader import Loader
from app.ui.shell.main_window import MainWindow
from app.ui.viewer.layouts import Layout

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SCALE = 4
# Mean absolute grey difference allowed (0-255) and share of pixels allowed to
# differ a lot (text antialiasing, a font a pixel wider).
MEAN_TOLERANCE = 4.0
LARGE_DIFFERENCE = 60
LARGE_SHARE = 0.02


def grey_small(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    grey = np.frombuffer(image.constBits(), np.uint8, h * bpl).reshape(h, bpl)[:, :w]
    return cv2.resize(grey, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)


@pytest.fixture
def no_model_window(qtbot, tmp_path, qapp):
    from app.ui.resources import style_sheet

    qapp.setStyleSheet(style_sheet())
    engine = SyncEngine(model_path=tmp_path / "missing.onnx", cache=False)
    backend = FakeBackend(three_dates())
    win = MainWindow(Loader(backend), engine)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.settled, timeout=30000):
        win.open_paths(list(backend.files))
    qtbot.waitUntil(lambda: len(win.views) == 3 and win.is_settled(), timeout=10000)
    yield win
    win.shutdown()
    qapp.setStyleSheet("")


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("size", [(1200, 700), (1680, 1050)])
def test_layout_matches_its_golden(no_model_window, qtbot, layout, size):
    win = no_model_window
    win.set_layout(layout)
    win.resize(*size)
    qtbot.waitUntil(lambda: win.size().width() == size[0], timeout=3000)
    qtbot.wait(100)
    shot = grey_small(win.hanging.area)
    path = GOLDEN / f"layout_{layout.value}_{size[0]}x{size[1]}.png"
    if os.environ.get("PRIORSYNC_UPDATE_GOLDENS"):
        GOLDEN.mkdir(exist_ok=True)
        cv2.imwrite(str(path), shot, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        pytest.skip(f"wrote {path.name}")
    golden = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert golden is not None, f"{path.name} is missing: see this module's docstring"
    assert shot.shape == golden.shape
    diff = np.abs(shot.astype(np.int16) - golden.astype(np.int16))
    assert diff.mean() <= MEAN_TOLERANCE, f"mean difference {diff.mean():.2f}"
    assert np.mean(diff > LARGE_DIFFERENCE) <= LARGE_SHARE


def test_the_comparison_catches_a_wrong_layout(no_model_window, qtbot):
    """Guard: the 2×2 shot is far from the 1×N golden (the tolerance is not too loose)."""
    win = no_model_window
    win.set_layout(Layout.GRID)
    win.resize(1200, 700)
    qtbot.waitUntil(lambda: win.size().width() == 1200, timeout=3000)
    qtbot.wait(100)
    golden = cv2.imread(str(GOLDEN / "layout_1xN_1200x700.png"), cv2.IMREAD_GRAYSCALE)
    if golden is None:
        pytest.skip("goldens not generated yet")
    shot = grey_small(win.hanging.area)
    diff = np.abs(shot.astype(np.int16) - golden.astype(np.int16))
    assert diff.mean() > MEAN_TOLERANCE or np.mean(diff > LARGE_DIFFERENCE) > LARGE_SHARE
