"""Anatomical sync latency in the real viewer widgets: click and scroll with 3 synced priors.

Opens four CT series of 300 slices (512 x 512; one current, three priors with
other frames of reference, spacings and coverage) in the real main window
(offscreen Qt unless a DISPLAY is set, shipped ONNX model, hnswlib indexes in a
temporary cache), waits until every series is indexed and aligned, then
measures in this same run:

* click -> synced: from sending the mouse press/release on the current
  viewport to the end of the last of the four viewports' repaints (Paint
  events are hooked on each viewport; the end of a paint is taken when the
  event loop next runs after it, so the figure is conservative);
* scroll at 20 slices/s with sync on: per wheel event, the same latency, and
  the dropped frames (a viewport that had not repainted the previous step
  when the next wheel event came);
* the baseline, in the same run: the same scroll with slice sync off (only
  the driver repaints), against which the figures are given as ratios;
* the engine alone: one slice query (``map_slice`` for three priors, indexed
  source) and the single-slice ONNX embedding used for a series not yet indexed;
* the GUI's responsiveness while the four series are indexed in the background
  (gaps of a 10 ms timer);
* click -> saliency overlays in all four viewports, once the overlay worker
  has prefetched the feature maps.

Run: ``.venv/bin/python benchmarks/bench_sync.py [--slices 300] [--clicks 60] [--steps 100]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


# -- data --------------------------------------------------------------------------------------
def phantom(n: int, matrix: int, dz: float, level0: float, z0: float, seed: int):
    """A CT-like torso whose anatomy changes with the level (level0 + k dz mm)."""
    from app.core.volume import Geometry, SeriesInfo, Volume

    rng = np.random.default_rng(seed)
    px = 360.0 / matrix
    y, x = np.mgrid[0:matrix, 0:matrix].astype(np.float32)
    c = (matrix - 1) / 2.0
    xm, ym = (x - c) * px, (y - c) * px
    vox = np.empty((n, matrix, matrix), dtype=np.int16)
    for k in range(n):
        t = level0 + k * dz
        sl = np.full((matrix, matrix), -1000, dtype=np.int16)
        ax, ay = 150 + 25 * np.sin(t / 45.0), 105 + 12 * np.cos(t / 60.0)
        body = (xm / ax) ** 2 + (ym / ay) ** 2 <= 1
        sl[body] = 40
        if t > 120:
            r = 55 * np.sin(np.clip((t - 120) / 160.0, 0, 1) * np.pi) + 5
            for side in (-1, 1):
                lung = ((xm - side * 70) / (0.7 * r + 10)) ** 2 + (ym / (r + 15)) ** 2 <= 1
                sl[lung & body] = -850
        if t < 150:
            ox, oy = -60 + 40 * np.sin(t / 30.0), 10 * np.cos(t / 25.0)
            sl[(((xm - ox) / 45) ** 2 + ((ym - oy) / 35) ** 2 <= 1) & body] = 90
        sl[(xm / 18) ** 2 + ((ym - 70) / 18) ** 2 <= 1] = 650 + int(80 * np.sin(t / 20.0))
        vox[k] = sl + rng.integers(-8, 9, size=sl.shape, dtype=np.int16)
    geometry = Geometry(origin=(-c * px, -c * px, z0), spacing=(px, px, dz), direction=np.eye(3))
    date = f"20{20 + seed:02d}0101"
    info = SeriesInfo(
        modality="CT",
        patient_id="BENCH",
        study_uid=f"1.2.3.{seed}",
        study_date=date,
        study_description="CT CHEST",
        series_uid=f"1.2.3.{seed}.1",
        series_description=f"bench {seed}",
    )
    return Volume(vox, geometry, info=info, source=f"bench-{seed}")


@dataclass
class Ref:
    volume: object
    key: str
    kind: str = "volume"
    warnings: list = field(default_factory=list)

    @property
    def info(self):
        return self.volume.info

    @property
    def n_slices(self) -> int:
        return self.volume.n_slices


@dataclass
class Study:
    series: list


@dataclass
class Patient:
    studies: list


@dataclass
class Scan:
    series: list
    skipped: list


def backend_for(refs):
    from app.ui.loading.loader import Backend

    return Backend(
        scan=lambda paths, progress=None, cancel=None: Scan(list(refs), []),
        group=lambda series: [Patient([Study([r]) for r in series])],
        load=lambda ref, progress=None, cancel=None: ref.volume,
        thumbnail=lambda volume, size=64: None,
        build_demo=lambda progress=None: [],
    )


# -- measurement -------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class PaintClock:
    """Records, per viewport, when its last repaint ended (event loop's next turn after Paint)."""

    def __init__(self, views) -> None:
        from PySide6 import QtCore

        self.QtCore = QtCore
        self.ended: dict[int, float] = {}
        self.hosts = [v.graphics.viewport() for v in views]

        clock = self

        class Filter(QtCore.QObject):
            def eventFilter(self, watched, event):  # noqa: N802 (Qt override)
                if event.type() == QtCore.QEvent.Type.Paint:
                    key = id(watched)
                    QtCore.QTimer.singleShot(0, lambda: clock.ended.__setitem__(key, clock.now()))
                return False

        self.filter = Filter()
        for host in self.hosts:
            host.installEventFilter(self.filter)

    @staticmethod
    def now() -> float:
        return time.perf_counter()

    def reset(self) -> None:
        self.ended.clear()

    def wait_all(self, hosts, timeout_s: float = 2.0) -> float | None:
        """Run the event loop until every host repainted; the time of the last end, or None."""
        from PySide6 import QtWidgets

        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            QtWidgets.QApplication.processEvents()
            if all(id(h) in self.ended for h in hosts):
                return max(self.ended[id(h)] for h in hosts)
        return None


def click(host) -> None:
    from PySide6 import QtCore, QtGui, QtWidgets

    pos = QtCore.QPointF(host.width() / 2, host.height() / 2)
    glob = QtCore.QPointF(host.mapToGlobal(pos.toPoint()))
    left, none = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.NoButton
    mods = QtCore.Qt.KeyboardModifier.NoModifier
    for kind, buttons in (
        (QtCore.QEvent.Type.MouseButtonPress, left),
        (QtCore.QEvent.Type.MouseButtonRelease, none),
    ):
        QtWidgets.QApplication.sendEvent(
            host, QtGui.QMouseEvent(kind, pos, glob, left, buttons, mods)
        )


def wheel(host, notches: int) -> None:
    from PySide6 import QtCore, QtGui, QtWidgets

    pos = QtCore.QPointF(host.width() / 2, host.height() / 2)
    event = QtGui.QWheelEvent(
        pos,
        QtCore.QPointF(host.mapToGlobal(pos.toPoint())),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * notches),
        QtCore.Qt.MouseButton.NoButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(host, event)


def measure_clicks(win, clock, n: int) -> list[float]:
    """Click latency (ms): the current viewport is set to a new slice unsynced, then clicked.

    The levels clicked lie inside every prior, so every prior moves; the
    latency ends with the last repaint of the viewports whose slice changed.
    """
    from app.core.state import Channel

    views = [win.views[i] for i in sorted(win.views)]
    driver = views[0]
    hosts = [v.graphics.viewport() for v in views]
    win.sync.set_enabled(Channel.SLICE, True)
    rng = np.random.default_rng(0)
    n_slices = driver.state.volume.n_slices
    out = []
    for _ in range(n):
        with win.sync.held():
            driver.state.set_slice(int(rng.integers(50, n_slices - 50)))
        clock.wait_all(hosts[:1])
        clock.reset()
        before = [v.state.slice_index for v in views]
        t0 = clock.now()
        click(hosts[0])
        moved = [
            h for h, v, b in zip(hosts, views, before, strict=True) if v.state.slice_index != b
        ]
        end = clock.wait_all(moved) if moved else clock.now()
        if end is None:
            raise RuntimeError("a viewport did not repaint after a click")
        out.append((end - t0) * 1000.0)
    return out


def measure_scroll(
    win, clock, steps: int, rate_hz: float, synced: bool
) -> tuple[list[float], int, float]:
    """Wheel events at ``rate_hz`` through the running event loop: latencies (ms) and drops.

    A step is dropped when a viewport whose slice it changed had not finished
    repainting within the frame interval (``1 / rate_hz``), or not at all when
    the next wheel event came (which the timer may deliver late when the event
    loop is busy: the achieved rate is printed too).
    """
    from PySide6 import QtCore

    from app.core.state import Channel

    views = [win.views[i] for i in sorted(win.views)]
    hosts = [v.graphics.viewport() for v in views]
    driver = views[0]
    win.sync.set_enabled(Channel.SLICE, synced)
    with win.sync.held():
        driver.state.set_slice(60)
    clock.wait_all(hosts)
    latencies: list[float] = []
    dropped = 0
    frame_ms = 1000.0 / rate_hz
    state: dict = {"i": 0, "t0": 0.0, "watched": []}
    loop = QtCore.QEventLoop()

    def settle_previous() -> None:
        nonlocal dropped
        if state["i"] == 0:
            return
        watched = state["watched"]
        if all(id(h) in clock.ended for h in watched):
            ends = [clock.ended[id(h)] for h in watched]
            latency = (max(ends) - state["t0"]) * 1000.0
            latencies.append(latency)
            dropped += latency > frame_ms
        else:
            dropped += 1

    def tick() -> None:
        settle_previous()
        if state["i"] >= steps:
            timer.stop()
            loop.quit()
            return
        clock.reset()
        before = [v.state.slice_index for v in views]
        state["t0"] = clock.now()
        wheel(hosts[0], +1 if (state["i"] // 50) % 2 == 0 else -1)
        state["watched"] = [
            h for h, v, b in zip(hosts, views, before, strict=True) if v.state.slice_index != b
        ]
        state["i"] += 1

    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(int(round(frame_ms)))
    start = time.perf_counter()
    loop.exec()
    achieved = steps / (time.perf_counter() - start)
    return latencies, dropped, achieved


def measure_saliency(win, n: int) -> list[float]:
    """Click -> saliency overlays on the driver and the 3 priors painted (ms).

    Waits in an idle event loop (no busy polling, which would compete with the
    worker for the interpreter) until the overlays for the new pair are in.
    """
    from PySide6 import QtCore

    from app.core.state import Channel

    views = [win.views[i] for i in sorted(win.views)]
    driver = views[0]
    win.sync.set_enabled(Channel.SLICE, True)
    win.saliency_action.setChecked(True)
    rng = np.random.default_rng(2)
    loop = QtCore.QEventLoop()

    def all_in() -> bool:
        return all(
            v.overlay is not None and v.overlay_key.index == v.state.slice_index for v in views
        )

    def check(*_args) -> None:
        if all_in():
            loop.quit()

    win.saliency.ready.connect(check)  # after the window's own handler has painted them
    guard = QtCore.QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    # First sync, then let the worker prefetch every slice's feature maps (steady state).
    click(driver.graphics.viewport())
    t0 = time.perf_counter()
    while not win.saliency.is_idle():
        QtCore.QCoreApplication.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > 300:
            raise RuntimeError("the saliency prefetch did not finish")
    out = []
    for _ in range(n):
        with win.sync.held():
            driver.state.set_slice(int(rng.integers(50, driver.state.volume.n_slices - 50)))
        t0 = time.perf_counter()
        click(driver.graphics.viewport())
        guard.start(10000)
        if not all_in():
            loop.exec()
        guard.stop()
        if not all_in():
            raise RuntimeError("the saliency overlays did not arrive")
        for v in views:
            v.graphics.viewport().repaint()
        out.append((time.perf_counter() - t0) * 1000.0)
    win.saliency.ready.disconnect(check)
    win.saliency_action.setChecked(False)
    return out


def wait_indexed(win, timeout_s: float) -> list[float] | None:
    """Run the event loop until the series are indexed and aligned; the loop's stalls (ms).

    A 10 ms timer ticks meanwhile; each gap beyond its period is time the GUI
    thread could not react (a stall a user would feel as a frozen window).
    """
    from PySide6 import QtCore

    loop = QtCore.QEventLoop()
    gaps: list[float] = []
    last = [time.perf_counter()]
    start = last[0]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000.0)
        last[0] = now
        if (len(win.views) == 4 and win.is_settled()) or now - start > timeout_s:
            loop.quit()

    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(10)
    loop.exec()
    timer.stop()
    return gaps if len(win.views) == 4 and win.is_settled() else None


def measure_engine(win, repeats: int = 200) -> dict[str, list[float]]:
    engine = win.anatomy.engine
    states = win.viewport_states()
    source, targets = states[0], states[1:]
    rng = np.random.default_rng(1)
    mapping, onnx = [], []
    for _ in range(repeats):
        k = int(rng.integers(0, source.volume.n_slices))
        t0 = time.perf_counter()
        for t in targets:
            engine.map_slice(source.volume, k, t.volume)
        mapping.append((time.perf_counter() - t0) * 1000.0)
    model = engine.model
    for _ in range(min(repeats, 60)):
        k = int(rng.integers(0, source.volume.n_slices))
        t0 = time.perf_counter()
        model.embed_slices(source.volume, [k])
        onnx.append((time.perf_counter() - t0) * 1000.0)
    return {"map 3 priors (indexed)": mapping, "single-slice ONNX": onnx}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="scroll rate, slices/s")
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="priorsync-bench-")
    os.environ["PRIORSYNC_CACHE_DIR"] = cache

    from PySide6 import QtWidgets

    from app.ml.anatomy.index import IndexCache
    from app.ml.anatomy.sync_service import SyncEngine
    from app.ui.loading.loader import Loader
    from app.ui.shell.main_window import MainWindow
    from app.ui.shell.shutdown import configure_pyqtgraph, teardown

    n = args.slices
    t0 = time.perf_counter()
    vols = [
        phantom(n, args.matrix, 1.0, 0.0, -150.0, 5),  # current: 1 mm, levels 0..299
        phantom(n, args.matrix, 0.9, 20.0, 400.0, 4),
        phantom(n, args.matrix, 0.8, 40.0, -900.0, 3),
        phantom(n, args.matrix, 1.1, -10.0, 35.0, 2),
    ]
    print(f"made 4 series of {n} x {args.matrix}^2 in {time.perf_counter() - t0:.1f} s")

    configure_pyqtgraph()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    refs = [Ref(v, f"s{i}") for i, v in enumerate(vols)]
    engine = SyncEngine(cache=IndexCache(Path(cache) / "index"))
    win = MainWindow(Loader(backend_for(refs)), engine)
    win.resize(1600, 900)
    win.show()
    t0 = time.perf_counter()
    win.open_paths(["bench"])
    gaps = wait_indexed(win, timeout_s=600)
    if gaps is None:
        print("indexing did not finish within 10 minutes", file=sys.stderr)
        return 1
    index_s = time.perf_counter() - t0
    info = win.anatomy.model_info
    print(
        f"platform {app.platformName()}; model {info.name if info else '?'} on "
        f"{info.provider if info else '?'}; indexed + aligned 4 series in {index_s:.1f} s; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"GUI event loop while indexing (10 ms timer): gap p50 {pct(gaps, 50):.1f} ms, "
        f"p95 {pct(gaps, 95):.1f} ms, max {max(gaps):.1f} ms"
    )
    views = [win.views[i] for i in sorted(win.views)]
    # The viewport showing the 1 mm series (the newest date) drives.
    assert views[0].state.volume is vols[0], "the newest study should hang first"
    clock = PaintClock(views)

    for _ in range(5):  # warm-up: first paints allocate textures and caches
        measure_clicks(win, clock, 1)
    base_lat, base_drop, base_rate = measure_scroll(win, clock, args.steps, args.rate, False)
    clicks = measure_clicks(win, clock, args.clicks)
    sync_lat, sync_drop, sync_rate = measure_scroll(win, clock, args.steps, args.rate, True)
    engine_times = measure_engine(win)
    overlay = measure_saliency(win, max(10, args.clicks // 3))

    base_p50, base_p95 = pct(base_lat, 50), pct(base_lat, 95)
    print(f"\nbaseline: scroll without sync, driver repaint only ({len(base_lat)} steps)")
    print(
        f"  p50 {base_p50:.1f} ms  p95 {base_p95:.1f} ms  dropped {base_drop}/{args.steps}  "
        f"(achieved {base_rate:.1f} slices/s)"
    )
    print(f"\nclick -> 3 priors synced and all 4 viewports repainted ({len(clicks)} clicks)")
    print(
        f"  p50 {pct(clicks, 50):.1f} ms  p95 {pct(clicks, 95):.1f} ms  "
        f"(goal p95 <= 30 ms)  = {pct(clicks, 50) / base_p50:.2f}x / "
        f"{pct(clicks, 95) / base_p95:.2f}x baseline p50/p95"
    )
    print(f"\nscroll at {args.rate:.0f} slices/s with 3 synced priors ({args.steps} wheel events)")
    print(
        f"  p50 {pct(sync_lat, 50):.1f} ms  p95 {pct(sync_lat, 95):.1f} ms  "
        f"= {pct(sync_lat, 50) / base_p50:.2f}x / {pct(sync_lat, 95) / base_p95:.2f}x baseline; "
        f"dropped frames {sync_drop}/{args.steps} (goal 0; achieved {sync_rate:.1f} slices/s)"
    )
    print(
        f"\nclick -> saliency overlays on all 4 viewports painted ({len(overlay)} clicks, "
        "feature maps prefetched)"
    )
    print(
        f"  p50 {pct(overlay, 50):.1f} ms  p95 {pct(overlay, 95):.1f} ms  "
        f"= {pct(overlay, 50) / base_p50:.2f}x / {pct(overlay, 95) / base_p95:.2f}x baseline "
        "(computed in a worker; the grey slices show at once)"
    )
    print("\nengine alone (GUI thread)")
    for name, values in engine_times.items():
        print(
            f"  {name:24s} p50 {statistics.median(values):.2f} ms  p95 {pct(values, 95):.2f} ms"
            f"  = {statistics.median(values) / base_p50:.3f}x baseline p50"
        )
    teardown(app, [win], delete_app=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
