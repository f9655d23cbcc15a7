"""First `priorsync demo` from a clean cache: seconds until the three dates are synced.

Each run starts the real app (``python -m app demo --screenshot``) on a private
Xvfb with a fresh ``PRIORSYNC_CACHE_DIR``. The app saves its screenshot once the
window has settled: every series loaded, indexed and aligned (the dates synced),
plus a fixed 0.4 s settle delay; the time of that file is the figure. The child's
log, timed from its start, gives the stages (source CT, each study written,
each series indexed).

Measured in the same run:

* **first run**: a clean cache (nothing built, nothing indexed). By default the
  demo's source CT is already on the machine (the shared data folder, or a copy
  fetched once before the timed runs), so the figure is the app's own work;
  ``--download`` leaves it out too, so the first run also downloads it with pip,
  as on a new user's machine;
* **baseline: warm run**, the same command again on the cache the first run
  left (what every later start costs). The first run is given as a ratio to it.
Beside the wall-clock seconds, each run's CPU seconds (user + system, of the
child and its threads) are given: on a machine shared with other work the wall
clock mostly measures the others' load (the load average is printed), the CPU
seconds what this checkout itself costs.

* with ``--baseline-checkout DIR`` (another checkout of PriorSync, e.g. the
  commit before a speed-up, unpacked with ``git archive``), also that
  checkout's first run, alternating with this one's, and this one's as a ratio to it.

Run: ``.venv/bin/python benchmarks/bench_first_demo.py [--runs 2] [--download]
[--baseline-checkout DIR]``
(needs Xvfb: ``bash scripts/system-deps.sh --tests``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT_S = 600
# The child: log with seconds since its start, then run the CLI as `python -m app` does.
CHILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="@%(relativeCreated)d %(name)s: %(message)s")
from app.cli import main
sys.exit(main(sys.argv[1:]))
"""
STAGES = (
    ("first study written", "demo study 1/3 written", "first"),
    ("demo patient built", "demo study 3/3 written", "last"),
    ("first series indexed", "series indexed", "first"),
    ("last series indexed", "series indexed", "last"),
)


@dataclass
class Run:
    synced_s: float
    stages: dict[str, float] = field(default_factory=dict)
    cpu_s: float = float("nan")  # user + system seconds of the child


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_xvfb() -> tuple[subprocess.Popen, str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("bench_first_demo: needs Xvfb (bash scripts/system-deps.sh --tests)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1680x1050x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        sys.exit("bench_first_demo: Xvfb did not start")
    return proc, f":{number}"


def run_demo(
    cache: Path, display: str, shared: Path | None, work: Path, checkout: Path = ROOT
) -> Run:
    """One ``priorsync demo`` (of ``checkout``) until its screenshot exists; seconds, stages."""
    shot = work / f"shot-{time.monotonic_ns()}.png"
    env = dict(os.environ)
    env.update(
        PRIORSYNC_CACHE_DIR=str(cache),
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        PYTHONPATH=str(checkout),
    )
    env.pop("WAYLAND_DISPLAY", None)
    if shared is not None:
        env["PRIORSYNC_SHARED_DATA"] = str(shared)
    log = work / "child.log"
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, "demo", "--screenshot", str(shot), "--quit-after", "500"],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        synced = None
        while proc.poll() is None and time.perf_counter() - t0 < TIMEOUT_S:
            if synced is None and shot.exists():
                synced = time.perf_counter() - t0
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    cpu = _children_cpu_s() - cpu0
    if synced is None and shot.exists():
        synced = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if synced is None or proc.returncode != 0:
        sys.exit(f"bench_first_demo: the demo failed ({proc.returncode}):\n{text[-3000:]}")
    return Run(synced, parse_stages(text), cpu)


def parse_stages(text: str) -> dict[str, float]:
    """Stage name -> seconds after the child started, from its ``@ms`` log lines."""
    times: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith("@"):
            continue
        stamp, _, message = line.partition(" ")
        try:
            seconds = int(stamp[1:]) / 1000
        except ValueError:
            continue
        for name, needle, _ in STAGES:
            if needle in message:
                times.setdefault(name, []).append(seconds)
    return {
        name: (times[name][0] if which == "first" else times[name][-1])
        for name, _, which in STAGES
        if name in times
    }


def local_source(args: argparse.Namespace, work: Path) -> Path | None:
    """A folder holding the demo's CT, so timed runs need no download (None: download)."""
    if args.download:
        # A shared-data folder without the CT, so no checkout's ../shared is used.
        empty = work / "no-shared-data"
        empty.mkdir(exist_ok=True)
        (empty / "README").write_text("intentionally without CT volumes\n")
        return empty
    from app.paths import shared_data_dir
    from app.sim.sources import source_path

    shared = shared_data_dir()
    if shared is not None and (shared / "chest-angio.nii.gz").is_file():
        return shared
    os.environ["PRIORSYNC_CACHE_DIR"] = str(work / "fetch-cache")
    folder = work / "source"
    folder.mkdir(exist_ok=True)
    shutil.copy2(source_path("chest-angio"), folder / "chest-angio.nii.gz")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="first/warm pairs to time")
    parser.add_argument(
        "--download", action="store_true", help="the first run also downloads the source CT"
    )
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        default=None,
        metavar="DIR",
        help="another PriorSync checkout whose first run is timed alternately, as a baseline",
    )
    args = parser.parse_args()
    other = args.baseline_checkout.resolve() if args.baseline_checkout else None
    if other is not None and not (other / "app" / "cli.py").is_file():
        sys.exit(f"bench_first_demo: {other} is not a PriorSync checkout")
    work = Path(tempfile.mkdtemp(prefix="bench-first-demo-"))
    load_before = os.getloadavg()[0]
    xvfb, display = start_xvfb()
    firsts: list[Run] = []
    warms: list[Run] = []
    others: list[Run] = []
    try:
        shared = local_source(args, work)
        for i in range(args.runs):
            if other is not None:
                cache = work / f"cache-baseline-{i}"
                cache.mkdir()
                others.append(run_demo(cache, display, shared, work, other))
                print(f"run {i + 1}: baseline checkout first {others[-1].synced_s:.1f} s")
            cache = work / f"cache-{i}"
            cache.mkdir()
            firsts.append(run_demo(cache, display, shared, work))
            warms.append(run_demo(cache, display, shared, work))
            print(
                f"run {i + 1}: first {firsts[-1].synced_s:.1f} s ({firsts[-1].cpu_s:.1f} s CPU), "
                f"warm {warms[-1].synced_s:.1f} s ({warms[-1].cpu_s:.1f} s CPU)",
                flush=True,
            )
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]
    first = statistics.median(r.synced_s for r in firsts)
    warm = statistics.median(r.synced_s for r in warms)
    first_cpu = statistics.median(r.cpu_s for r in firsts)
    warm_cpu = statistics.median(r.cpu_s for r in warms)
    what = "downloads the source CT" if args.download else "source CT already local"
    print(f"\nfirst `priorsync demo`, clean cache ({what}), {os.cpu_count()} CPUs,")
    print(f"load average {load_before:.1f} before and {load_after:.1f} after the runs:")
    print(
        f"  dates synced after      {first:6.1f} s   (median of {len(firsts)}; CPU {first_cpu:.1f} s)"
    )
    print(f"  baseline: warm start    {warm:6.1f} s   (CPU {warm_cpu:.1f} s)")
    print(f"  first / warm            {first / warm:6.2f} x   (CPU {first_cpu / warm_cpu:.2f} x)")
    if others:
        base = statistics.median(r.synced_s for r in others)
        base_cpu = statistics.median(r.cpu_s for r in others)
        print(f"  baseline checkout first {base:6.1f} s   (CPU {base_cpu:.1f} s; {other})")
        print(
            f"  first / baseline first  {first / base:6.2f} x   (CPU {first_cpu / base_cpu:.2f} x)"
        )
    for label, runs in (("this checkout", firsts), ("baseline checkout", others)):
        if not runs:
            continue
        print(f"  stages of the first run, {label} (s after start, median):")
        for name, _, _ in STAGES:
            values = [r.stages[name] for r in runs if name in r.stages]
            if values:
                print(f"    {name:<22} {statistics.median(values):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
