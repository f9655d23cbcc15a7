"""Linked-cursor latency: a mouse move in the current until every prior has repainted its cursor.

Simulates a current scan and three priors (standard preset: other table
position, frame of reference, breathing, slice thickness) from a real CT when
the shared data is present (``chest-angio``), else from the synthetic torso of
``bench_points.py``, hangs the four dates in real :class:`ViewportView` widgets
(offscreen Qt unless a DISPLAY is set, e.g. under ``xvfb-run``) linked by the
cursor tool in its linked-cursor mode, prepares the three point pairs once (from
the simulator's true slice match: the slice engine's cost is ``bench_sync.py``'s),
and measures in this same run, for mouse moves along a path through the body
on one slice of the current:

* **baseline (repaint only)**: the driver's cross and the three priors'
  answers (computed beforehand) written to the states directly, until the
  four viewports have repainted: what painting the cursor costs by itself;
* **engine only**: the three :meth:`~app.ml.points.locate.PointPair.locate` calls of one move;
* **linked cursor**: a drag event in the current (the view box's
  ``dragged_to``, what a real left drag emits) through the ``CURSOR`` channel,
  the background job and the marks, until the three priors have repainted
  with their new cursor (p50 / p95, and as a ratio to the baseline);
* **dragging at 60 moves/s**: moves that do not wait for the answers; how many
  requests were dropped as stale, and the time from the last move until the
  priors show its answer.

Run: ``python benchmarks/bench_cursor.py [--moves 60] [--matrix 512]``
(``xvfb-run -a python benchmarks/bench_cursor.py`` for an X server).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")

DRAG_GAP_S = 1.0 / 60.0


def scans(matrix: int):
    """Current and three priors, with the source's name."""
    from app.sim.followup import SIM_PRESETS, identity_scan, simulate_followup
    from app.sim.sources import SourceError, available_sources, load_source

    name = "chest-angio"
    try:
        if name not in available_sources([name]):
            raise SourceError("not present")
        source = load_source(name)
    except SourceError:
        from bench_points import synthetic_source

        name, source = "synthetic torso", synthetic_source()
    params = replace(SIM_PRESETS["standard"], matrix_sizes=(matrix,), lesion_probability=0.0)
    out = [identity_scan(source)]
    for seed in (11, 12, 13):
        out.append(simulate_followup(source, params, np.random.default_rng(seed)))
    return name, out


class Screen:
    """The viewports on screen, as the mode switch sees them."""

    def __init__(self, views) -> None:
        self._views = views

    @property
    def views(self):
        return dict(enumerate(self._views))

    @property
    def active_view(self):
        return None

    def viewport_states(self):
        return [v.state for v in self._views]

    def target_view(self):
        return self._views[0]


class PaintCounter:
    """Counts Paint events of each viewport's image widget (as bench_ui.py does)."""

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


def path_points(pairs, current, n: int) -> np.ndarray:
    """``n`` body points on one current slice that every prior images, in walking order."""
    grid = pairs[0].current_grid
    covered = np.logical_and.reduce([p.alignment.in_coverage for p in pairs])
    k = int(np.flatnonzero(covered)[len(np.flatnonzero(covered)) // 2])
    z = float(current.slice_z[k])
    zs, ys, xs = np.nonzero(grid.body)
    level = np.rint(grid.fine.index_of(np.array([0.0, 0.0, z]))[2]).astype(int)
    sel = np.flatnonzero(zs == level)
    rng = np.random.default_rng(0)
    pts = grid.fine.lps_of(np.column_stack([xs[sel], ys[sel], zs[sel]]).astype(float))
    pts = pts[rng.choice(len(pts), size=min(n, len(pts)), replace=False)]
    pts[:, 2] = z
    order = np.argsort(np.arctan2(pts[:, 1] - pts[:, 1].mean(), pts[:, 0] - pts[:, 0].mean()))
    return pts[order]


UNPAINTED: list[str] = []  # moves after which a changed viewport did not repaint (reported)


def wait_painted(app, counter, before, which, t0, limit_s=2.0) -> None:
    while not all(counter.counts[i] > before[i] for i in which):
        app.processEvents()
        if time.perf_counter() - t0 > limit_s:
            late = [i for i in which if counter.counts[i] <= before[i]]
            UNPAINTED.append(f"viewports {late} did not repaint within {limit_s:.0f} s")
            return


def idle_until_event(app) -> None:
    """Sleep in the event loop until something arrives, as the app's GUI thread does.

    A busy ``processEvents`` loop would hold the GIL the worker thread needs
    and slow the very job it waits for.
    """
    from PySide6 import QtCore

    app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents)


def moved(views, marks, among=None) -> list[int]:
    """Viewports whose cursor changed since ``marks`` (only those repaint)."""
    pool = range(len(views)) if among is None else among
    return [i for i in pool if views[i].state.cursor_mark != marks[i]]


def pct(values, q) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=60)
    parser.add_argument("--matrix", type=int, default=512)
    args = parser.parse_args()

    from PySide6 import QtCore, QtWidgets

    from app.core.cursor import CursorMark, plane_position
    from app.core.state import Channel, SyncGroup, ViewportState
    from app.ml.anatomy.sync_service import SyncEngine
    from app.ml.evaluation.truth import truth_alignment
    from app.ml.points.cursor_pairs import CursorPairs, PairStatus
    from app.ui.points.tool import LinkedCursorTool
    from app.ui.shell.shutdown import configure_pyqtgraph
    from app.ui.sync.anatomical_sync import AnatomicalSync
    from app.ui.viewer.mode_switch import ModeSwitch
    from app.ui.viewer.slice_view_box import InteractionMode
    from app.ui.viewer.viewport import ViewportView

    configure_pyqtgraph()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    name, dates = scans(args.matrix)
    t = time.perf_counter()
    cursor_pairs = CursorPairs()
    # As the viewer does (CursorPairs.prepare): fitted and registered before the first move.
    pairs = [
        cursor_pairs.prepare(dates[0].volume, d.volume, truth_alignment(dates[0], d))
        for d in dates[1:]
    ]
    prepare_s = time.perf_counter() - t

    window = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(window)
    sync = SyncGroup()
    views = []
    for i, scan in enumerate(dates):
        state = ViewportState(scan.volume)
        sync.add(state)
        view = ViewportView(state, f"date {i}")
        layout.addWidget(view)
        views.append(view)
    screen = Screen(views)
    anatomy = AnatomicalSync(SyncEngine(cache=False), window)
    modes = ModeSwitch(screen, window)
    tool = LinkedCursorTool(sync, anatomy, screen, modes, window)
    tool.linked.pairs = cursor_pairs
    for view in views:
        tool.attach(view)
    for j, pair in enumerate(pairs, start=1):
        cursor_pairs.add_pair(dates[0].volume, dates[j].volume, PairStatus(pair))
    modes.set_mode(InteractionMode.CROSSHAIR)
    window.resize(1680, 600)
    window.show()
    for _ in range(30):
        app.processEvents()

    current = views[0]
    points = path_points(pairs, dates[0].volume, args.moves)
    k = int(np.argmin(np.abs(dates[0].volume.slice_z - points[0][2])))
    with sync.held():
        current.state.set_slice(k)
    xy = [plane_position(current.state.volume, current.plane, current.cursor, p) for p in points]
    counter = PaintCounter(views)
    priors = [1, 2, 3]

    # Engine alone, and the answers the baseline writes.
    engine_ms, answers = [], []
    for p in points:
        t0 = time.perf_counter()
        found = CursorPairs.locate(pairs, p)
        engine_ms.append((time.perf_counter() - t0) * 1000.0)
        answers.append(found)
    answered = sum(m.in_coverage for row in answers for m in row)

    # Baseline: the same marks written directly (no engine, no job), until all repainted.
    sync.set_enabled(Channel.CURSOR, False)
    base_ms = []
    for p, row in zip(points, answers, strict=True):
        before = list(counter.counts)
        marks = [v.state.cursor_mark for v in views]
        t0 = time.perf_counter()
        current.state.set_cursor(CursorMark(tuple(p), 0.0, True, driving=True))
        with sync.held():
            for j, m in zip(priors, row, strict=True):
                state = views[j].state
                if m.in_coverage and m.prior_slice is not None:
                    state.set_slice(m.prior_slice, match=state.match)
                state.set_cursor(
                    CursorMark(m.prior_point, m.radius_mm, True, "", m.confidence)
                    if m.in_coverage
                    else CursorMark.outside(m.message)
                )
        wait_painted(app, counter, before, moved(views, marks), t0)
        base_ms.append((time.perf_counter() - t0) * 1000.0)
    tool.linked.clear()
    sync.set_enabled(Channel.CURSOR, True)
    for _ in range(10):
        app.processEvents()

    # Linked cursor: a drag event through the channel, the job and the marks.
    linked = tool.linked
    heartbeat = QtCore.QTimer()  # wakes the waiting loop should an answer never come
    heartbeat.start(100)
    done: list[int] = []
    # Paint counts when each answer was written: the priors' next paint shows it.
    at_answer: dict[int, list[int]] = {}
    linked.answered.connect(lambda g: at_answer.__setitem__(g, list(counter.counts)))
    linked.answered.connect(done.append)
    cursor_ms = []
    for pos in xy:
        marks = [v.state.cursor_mark for v in views]
        t0 = time.perf_counter()
        current.view_box.dragged_to.emit(pos.x_mm, pos.y_mm)
        generation = linked.generation
        while generation not in done:
            idle_until_event(app)
            if time.perf_counter() - t0 > 5.0:
                raise RuntimeError("no answer within 5 s")
        wait_painted(app, counter, at_answer[generation], moved(views, marks, priors), t0)
        cursor_ms.append((time.perf_counter() - t0) * 1000.0)

    # Dragging at 60 moves/s: nobody waits; stale requests are dropped.
    linked.dropped = 0
    t_start = time.perf_counter()
    for pos in xy:
        current.view_box.dragged_to.emit(pos.x_mm, pos.y_mm)
        until = time.perf_counter() + DRAG_GAP_S
        while time.perf_counter() < until:
            app.processEvents()
            time.sleep(0.001)
    last = linked.generation
    marks = [v.state.cursor_mark for v in views]
    t_last = time.perf_counter()
    while last not in done:
        idle_until_event(app)
        if time.perf_counter() - t_last > 5.0:
            raise RuntimeError("the last move got no answer within 5 s")
    wait_painted(app, counter, at_answer[last], moved(views, marks, priors), t_last)
    settle_ms = (time.perf_counter() - t_last) * 1000.0
    drag_s = t_last - t_start

    platform = QtWidgets.QApplication.platformName()
    shape = dates[0].volume.shape
    print(f"linked cursor, 4 dates (current + 3 priors), source {name}, platform {platform}")
    print(
        f"  current {shape[0]} slices of {shape[1]} x {shape[2]}; priors "
        + ", ".join(f"{d.volume.shape[0]} x {d.volume.shape[1]}" for d in dates[1:])
    )
    print(f"  point pairs prepared once: {prepare_s:.1f} s for 3 pairs (grids included)")
    print(f"  {len(points)} mouse moves on one slice, {answered}/{3 * len(points)} answers covered")
    print(
        f"  baseline (repaint only):  p50 {pct(base_ms, 50):6.1f} ms  p95 {pct(base_ms, 95):6.1f} ms"
    )
    print(
        f"  engine only (3 locates):  p50 {pct(engine_ms, 50):6.1f} ms  "
        f"p95 {pct(engine_ms, 95):6.1f} ms"
    )
    b95 = pct(base_ms, 95)
    c95 = pct(cursor_ms, 95)
    print(
        f"  linked cursor:            p50 {pct(cursor_ms, 50):6.1f} ms  p95 {c95:6.1f} ms  "
        f"({c95 / b95:.2f}x the baseline p95; goal p95 <= 30 ms: "
        f"{'met' if c95 <= 30.0 else 'NOT met'})"
    )
    print(
        f"  dragging at 60 moves/s:   {len(points)} moves in {drag_s:.2f} s, "
        f"{linked.dropped} requests dropped as stale, last move answered and painted "
        f"{settle_ms:.1f} ms after it"
    )
    if UNPAINTED:
        print(f"  note: {len(UNPAINTED)} moves left a changed viewport unpainted: {UNPAINTED[0]}")
    tool.shutdown()
    anatomy.shutdown()
    for view in views:
        view.detach()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
