"""Start-up benchmark of ``priorsync match``: how much of a run is interpreter and imports.

Times, in this same run, each in fresh subprocesses (median of ``--repeats``):

* ``python -c pass`` (the interpreter alone: the baseline),
* ``python -c "import numpy, pydicom"`` (the least any DICOM command imports),
* the imports of ``priorsync match`` (``app.commands.match`` and what it runs:
  readers, matcher, ONNX runtime), without running anything,
* ``python -m app.cli match CURRENT PRIOR`` end to end on a small DICOM pair,
  with a warm index cache (the second of two runs).

Figures are printed as ratios to the first two, so machines of different
speed give comparable numbers.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MATCH_IMPORTS = "import app.commands.match, app.io.load, app.ml.anatomy.match, app.ml.runtime.model"


def _time(argv: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pair(folder: Path) -> tuple[Path, Path]:
    """A small current/prior DICOM pair (40 slices of 128 x 128 each)."""
    import numpy as np

    from app.core.volume import Geometry, SeriesInfo, Volume
    from app.io.dicom_write import write_dicom_series

    out = []
    # Both dates image the same body (its anatomy changes along z), so the pair matches.
    for name, seed in (("current", 1), ("prior", 2)):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:128, 0:128]
        voxels = np.full((40, 128, 128), -1000, np.int16)
        for k in range(40):
            ax, ay = 50 + 8 * np.sin(k / 6.0), 40 + 5 * np.cos(k / 9.0)
            body = ((x - 64) / ax) ** 2 + ((y - 64) / ay) ** 2 <= 1
            lungs = ((np.abs(x - 64) - 20) / 12.0) ** 2 + ((y - 60) / (10 + k / 4)) ** 2 <= 1
            voxels[k][body] = 40
            voxels[k][body & lungs] = -850
            voxels[k][((x - 64) / 6.0) ** 2 + ((y - 90) / 6.0) ** 2 <= 1] = 700
            voxels[k] += rng.integers(-15, 16, size=(128, 128), dtype=np.int16)
        volume = Volume(
            voxels=voxels,
            geometry=Geometry(origin=(-160, -160, 0), spacing=(2.5, 2.5, 5.0), direction=np.eye(3)),
            info=SeriesInfo(modality="CT"),
        )
        write_dicom_series(volume, folder / name)
        out.append(folder / name)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PRIORSYNC_CACHE_DIR": str(Path(tmp) / "cache")}
        current, prior = _pair(Path(tmp))
        match = [python, "-m", "app.cli", "match", str(current), str(prior)]
        subprocess.run(match, cwd=ROOT, env=env, check=True, capture_output=True)  # warm cache
        figures = {
            "python -c pass": _time([python, "-c", "pass"], env, args.repeats),
            "import numpy, pydicom": _time(
                [python, "-c", "import numpy, pydicom"], env, args.repeats
            ),
            "imports of priorsync match": _time([python, "-c", MATCH_IMPORTS], env, args.repeats),
            "priorsync match (warm cache)": _time(match, env, args.repeats),
        }
    base, plain = figures["python -c pass"], figures["import numpy, pydicom"]
    print(f"median of {args.repeats} runs each, fresh processes")
    print(f"{'':32} {'seconds':>8} {'x pass':>8} {'x numpy+pydicom':>16}")
    for name, seconds in figures.items():
        print(f"{name:32} {seconds:8.3f} {seconds / base:8.1f} {seconds / plain:16.2f}")


if __name__ == "__main__":
    main()
