"""Run ``priorsync demo --pacs`` in this process and check that the priors hang synced by anatomy.

Used by test_pacs_app.py in a child process on Xvfb. Once the window has
settled (every study fetched from the local Orthanc, loaded and indexed), it
checks that slice sync came on by itself, scrolls the newest study, and checks
that each prior then shows the slice the anatomical engine matches to the
current one, with its match shown. Prints one "PACS-SYNC-OK ..." line, or
"PACS-SYNC-FAILED ..." with the reason, and quits.

usage: drive_pacs_demo.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The checkout this script lies in, not whichever copy of the app is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from input_events import wheel  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.commands.pacs_demo import run_pacs_demo  # noqa: E402
from app.core.state import Channel  # noqa: E402

NOTCHES = 12


def check(window) -> str:
    """What is wrong with the hanging, or "" when the priors follow the current study."""
    views = list(window.views.values())
    if len(views) != 3:
        return f"{len(views)} viewports, not the current study and 2 priors"
    if not window.sync.enabled[Channel.SLICE] or not window.sync_slices_action.isChecked():
        return "slice sync did not come on by itself once the studies were indexed"
    current = max(views, key=lambda v: v.state.volume.info.study_date)
    priors = [v for v in views if v is not current]
    before = [v.state.slice_index for v in views]
    host = current.graphics.viewport()
    for _ in range(NOTCHES):
        wheel(host, 1)
    QtWidgets.QApplication.processEvents()
    if [v.state.slice_index for v in views] == before:
        return "scrolling the current study moved nothing"
    engine = window.anatomy.engine
    for prior in priors:
        found = engine.map_slice(
            current.state.volume, current.state.slice_index, prior.state.volume
        )
        if found is None:
            return f"the prior of {prior.state.volume.info.study_date} has no anatomical index"
        if prior.state.slice_index != found[0]:
            return (
                f"the prior of {prior.state.volume.info.study_date} shows slice "
                f"{prior.state.slice_index}, the anatomical match is {found[0]}"
            )
        if prior.state.match is None:
            return f"the prior of {prior.state.volume.info.study_date} shows no match"
    moves = ", ".join(f"{b}->{v.state.slice_index}" for b, v in zip(before, views, strict=True))
    print(f"PACS-SYNC-OK viewports=3 slices {moves}", flush=True)
    return ""


def drive(window) -> None:
    done = {"started": False}

    def exercise() -> None:
        if done["started"] or not window.is_settled():
            return
        done["started"] = True
        problem = check(window)
        if problem:
            print(f"PACS-SYNC-FAILED {problem}", flush=True)
        QtWidgets.QApplication.quit()

    window.settled.connect(lambda: QtCore.QTimer.singleShot(300, exercise))


if __name__ == "__main__":
    args = argparse.Namespace(screenshot=None, quit_after=500.0, pacs=True)
    sys.exit(run_pacs_demo(args, on_start=drive))
