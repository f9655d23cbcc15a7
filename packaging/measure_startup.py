"""Start-up time of the standalone app against the venv install, measured in the same run.

Usage (from the repository root, after ``bash packaging/build.sh``)::

    .venv/bin/python packaging/measure_startup.py [--app dist/priorsync] [--repeat 5]

Both variants run on one private Xvfb server, alternating so that load from
other processes hits both alike. The frozen app runs with the venv hidden
(``PATH=/usr/bin:/bin``, a throw-away HOME, outside the checkout). Each case is
a whole process lifetime, so it includes the teardown:

- ``--version``: interpreter start and the command-line imports;
- ``view --quit-after 0.05``: until the empty main window is shown and closed;
- ``demo --quit-after 1``: the demo window (1 s of it) with the demo cached.

Prints the median wall time of each and the frozen/venv ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "--version": ["--version"],
    "view (empty window)": ["view", "--quit-after", "0.05"],
    "demo --quit-after 1": ["demo", "--quit-after", "1"],
}


def start_xvfb() -> tuple[subprocess.Popen, str]:
    """A private Xvfb; ``-displayfd`` picks a free display number."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("Xvfb is not installed (bash scripts/system-deps.sh --tests)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1680x1050x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        return proc, ":" + pipe.readline().strip()


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of one run; exits when the run fails, as its time would mean nothing."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=REPO / "dist" / "priorsync")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    binary = args.app.resolve() / "priorsync"
    if not binary.is_file():
        sys.exit(f"{binary} does not exist: run bash packaging/build.sh first")

    xvfb, display = start_xvfb()
    scratch = Path(tempfile.mkdtemp(prefix="priorsync-startup-"))
    try:
        home = scratch / "home"
        home.mkdir()
        common = {"DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "LANG": "C.UTF-8"}
        # One cache for both, so the demo is built once (below) and then only opened.
        common["PRIORSYNC_CACHE_DIR"] = str(scratch / "cache")
        venv_env = {**os.environ, **common}
        venv_env.pop("WAYLAND_DISPLAY", None)
        frozen_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **common}
        shared = os.environ.get("PRIORSYNC_SHARED_DATA")
        if shared:
            frozen_env["PRIORSYNC_SHARED_DATA"] = shared
        variants = {
            "venv": ([sys.executable, "-m", "app"], venv_env, REPO),
            "frozen": ([str(binary)], frozen_env, scratch),
        }
        # Warm-up: builds the cached demo and fills the page cache for both
        # (with --screenshot the app quits as soon as the demo is shown).
        for name, (prefix, env, cwd) in variants.items():
            shot = scratch / f"warm-up-{name}.png"
            timed([*prefix, "demo", "--screenshot", str(shot), "--quit-after", "300"], env, cwd)

        print(f"median of {args.repeat} runs, seconds (frozen: {args.app})")
        print(f"{'case':<22} {'venv':>7} {'frozen':>7} {'frozen/venv':>12}")
        for case, case_args in CASES.items():
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.repeat):
                for name, (prefix, env, cwd) in variants.items():
                    times[name].append(timed([*prefix, *case_args], env, cwd))
            venv, frozen = (statistics.median(times[n]) for n in ("venv", "frozen"))
            print(f"{case:<22} {venv:>7.2f} {frozen:>7.2f} {frozen / venv:>12.2f}")
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
