"""Viewer repaint cost with MPR: scroll and click with three synced priors in other planes.

Builds four synthetic CT series in memory (one current, three priors; 512 x 512
pixels, ``--slices`` slices), shows each in a real :class:`ViewportView`
(offscreen Qt unless a DISPLAY is set) linked by a :class:`SyncGroup` (the
core's position mapper: this measures painting, not matching; see
``bench_sync.py`` for the engine), and measures in this same run:

* scrolling the current at 20 slices/s with the priors in coronal, sagittal
  and coronal planes (MPR): the dropped frames (a step after which a viewport
  whose picture changed had not repainted within the step's 50 ms) and the
  per-step time until every such viewport has repainted;
* click -> all planes repainted: a click that moves the level (the cursor)
  in the current, until every viewport whose picture changed has repainted,
  p50 / p95;
* the baseline, in the same run: the same scroll and clicks with every
  viewport in the axial plane (the viewer before MPR), against which the MPR
  figures are given as ratios.

A viewport whose picture did not change in a step (a prior with thicker
slices often maps two steps of the current to one slice; an axial plane
without crosshair lines does not show the cursor's row and column) has
nothing to repaint; it is neither waited for nor counted as dropped (until
issue 19's second session it was, which made 60 % of the steps "dropped"
whatever the painting cost, and the wait for it the step time).

Every figure is given as wall time and as this process's CPU time: on a
machine shared with other work the wall time also holds the waiting.

Run: ``python benchmarks/bench_ui.py [--slices 200] [--steps 100] [--clicks 40]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")

STEP_MS = 50  # 20 slices per second


def phantom(n: int, seed: int) -> np.ndarray:
    """A body-like int16 volume: soft-tissue ellipse, lungs, a spine, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512]
    body = ((x - 256) / 210.0) ** 2 + ((y - 256) / 170.0) ** 2 <= 1
    lungs = (((np.abs(x - 256) - 95) / 60.0) ** 2 + ((y - 230) / 90.0) ** 2) <= 1
    spine = ((x - 256) / 25.0) ** 2 + ((y - 370) / 25.0) ** 2 <= 1
    plane = np.full((512, 512), -1000, np.int16)
    plane[body] = 40
    plane[lungs] = -850
    plane[spine] = 900
    out = np.repeat(plane[None], n, axis=0)
    out += rng.integers(-20, 21, size=out.shape, dtype=np.int16)
    return out


def build(n: int):
    from app.core.state import Channel, SyncGroup, ViewportState
    from app.core.volume import Geometry, SeriesInfo, Volume
    from app.ui.viewer.viewport import ViewportView

    sync = SyncGroup()
    sync.set_enabled(Channel.SLICE, True)
    views = []
    for i in range(4):
        geometry = Geometry(
            origin=np.array([-200.0, -200.0, -300.0 + 7.0 * i]),
            spacing=np.array([0.78, 0.78, 1.25 + 0.25 * i]),
            direction=np.eye(3),
        )
        info = SeriesInfo(study_date=f"202{4 - i}0101")
        volume = Volume(voxels=phantom(n, i), geometry=geometry, info=info)
        state = ViewportState(volume)
        view = ViewportView(state, f"date {i}")
        view.hold_sync = sync.held
        view.resize(480, 520)
        view.show()
        sync.add(state)
        views.append(view)
    return sync, views


class PaintCounter:
    """Counts Paint events of each viewport's image widget."""

    def __init__(self, views) -> None:
        from PySide6 import QtCore

        self.counts = [0] * len(views)
        counts = self.counts

        class Hook(QtCore.QObject):
            def __init__(self, index: int) -> None:
                super().__init__()
                self.index = index

            def eventFilter(self, _obj, event) -> bool:  # noqa: N802 (Qt override)
                if event.type() == QtCore.QEvent.Type.Paint:
                    counts[self.index] += 1
                return False

        self._hooks = [Hook(i) for i in range(len(views))]
        for view, hook in zip(views, self._hooks, strict=True):
            view.graphics.viewport().installEventFilter(hook)


def picture(view) -> tuple:
    """What a viewport shows: a change of it needs a repaint, nothing else does."""
    from app.core.planes import Plane

    state = view.state
    k, r, c = view.cursor
    lines = view.crosshair_visible
    return (
        view.plane,
        k,
        state.window,
        state.camera,
        r if view.plane is Plane.CORONAL or lines else None,
        c if view.plane is Plane.SAGITTAL or lines else None,
    )


def run_scroll(app, views, steps: int) -> tuple[int, list[float], list[float]]:
    """Scroll the current ``steps`` slices at 20 slices/s.

    Returns (dropped frames, wall ms per step, CPU ms per step). The CPU time
    (this process's, all threads) is what the step cost; on a machine shared
    with other work the wall time is larger by however long the process waited.
    """
    counter = PaintCounter(views)
    driver = views[0].state
    dropped = 0
    per_step = []
    cpu_step = []
    deadline = time.perf_counter()
    for s in range(steps):
        before = list(counter.counts)
        shown = [picture(v) for v in views]
        t0 = time.perf_counter()
        c0 = time.process_time()
        driver.step(+1 if (s // 40) % 2 == 0 else -1)
        changed = [i for i, v in enumerate(views) if picture(v) != shown[i]]
        while True:
            app.processEvents()
            if all(counter.counts[i] > before[i] for i in changed):
                break
            if time.perf_counter() - t0 > STEP_MS / 1000.0:
                break
        done = time.perf_counter()
        cpu_step.append((time.process_time() - c0) * 1000.0)
        per_step.append((done - t0) * 1000.0)
        # Dropped: not every changed viewport was repainted within the frame's 50 ms
        # (one processEvents call may paint everything, yet take longer than that).
        late = done - t0 > STEP_MS / 1000.0
        if late or not all(counter.counts[i] > before[i] for i in changed):
            dropped += 1
        deadline += STEP_MS / 1000.0
        while time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.001)
    return dropped, per_step, cpu_step


def run_clicks(app, views, clicks: int) -> tuple[list[float], list[float]]:
    """Click-like cursor moves in the current; (wall, CPU) ms until every viewport repainted."""
    counter = PaintCounter(views)
    current = views[0]
    w_mm, h_mm = current.plane_extent_mm()
    rng = np.random.default_rng(1)
    out = []
    cpu = []
    for _ in range(clicks):
        before = list(counter.counts)
        shown = [picture(v) for v in views]
        t0 = time.perf_counter()
        c0 = time.process_time()
        # In the current's coronal plane a click moves the level: all dates follow.
        current.view_box.clicked_at.emit(
            float(rng.uniform(0.2, 0.8) * w_mm), float(rng.uniform(0.2, 0.8) * h_mm)
        )
        changed = [i for i, v in enumerate(views) if picture(v) != shown[i]]
        while not all(counter.counts[i] > before[i] for i in changed):
            app.processEvents()
            if time.perf_counter() - t0 > 2.0:
                break
        out.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
        app.processEvents()
    return out, cpu


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--clicks", type=int, default=40)
    args = parser.parse_args()

    from PySide6 import QtWidgets

    from app.core.planes import Plane
    from app.ui.shell.shutdown import configure_pyqtgraph

    configure_pyqtgraph()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    sync, views = build(args.slices)
    for _ in range(20):
        app.processEvents()

    # Baseline: every date axial (the viewer before MPR).
    base_drops, base_steps, base_steps_cpu = run_scroll(app, views, args.steps)
    views[0].set_plane(Plane.CORONAL)  # clicks in coronal move the level
    base_clicks, base_clicks_cpu = run_clicks(app, views, args.clicks)
    views[0].set_plane(Plane.AXIAL)

    # MPR: the priors in coronal, sagittal, coronal, with crosshair lines.
    for view, plane in zip(views[1:], (Plane.CORONAL, Plane.SAGITTAL, Plane.CORONAL), strict=True):
        view.set_plane(plane)
        view.set_crosshair_visible(True)
    for _ in range(20):
        app.processEvents()
    mpr_drops, mpr_steps, mpr_steps_cpu = run_scroll(app, views, args.steps)
    views[0].set_plane(Plane.CORONAL)
    mpr_clicks, mpr_clicks_cpu = run_clicks(app, views, args.clicks)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 else "n/a (baseline 0)"

    def figures(wall: list[float], cpu: list[float]) -> str:
        return (
            f"wall p50 {statistics.median(wall):.1f} ms, p95 {p95(wall):.1f} ms; "
            f"CPU p50 {statistics.median(cpu):.1f} ms, p95 {p95(cpu):.1f} ms"
        )

    print(f"4 viewports (current + 3 synced priors), {args.slices} slices of 512 x 512, offscreen")
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"scroll at 20 slices/s, {args.steps} steps")
    print(
        f"  baseline (all axial): dropped frames {base_drops}; {figures(base_steps, base_steps_cpu)}"
    )
    print(
        f"  MPR (priors coronal/sagittal/coronal): dropped frames {mpr_drops}; "
        f"{figures(mpr_steps, mpr_steps_cpu)}"
    )
    print(
        f"  MPR / baseline: wall p95 {ratio(p95(mpr_steps), p95(base_steps))}, "
        f"CPU p50 {ratio(statistics.median(mpr_steps_cpu), statistics.median(base_steps_cpu))}"
    )
    print(f"click -> all planes repainted, {args.clicks} clicks")
    print(f"  baseline: {figures(base_clicks, base_clicks_cpu)}")
    print(f"  MPR: {figures(mpr_clicks, mpr_clicks_cpu)}")
    print(
        f"  MPR / baseline: wall p95 {ratio(p95(mpr_clicks), p95(base_clicks))}, "
        f"CPU p50 {ratio(statistics.median(mpr_clicks_cpu), statistics.median(base_clicks_cpu))}"
    )
    for view in views:
        view.detach()
        view.close()
    del sync
    return 0


if __name__ == "__main__":
    sys.exit(main())
