"""Load-speed and memory benchmark for DICOM series.

Makes a 512 x 512 x 300 CT series (uncompressed, one file per slice) in a temp
folder from real CT (chest-lung2 resampled along z when the shared data is
present, else a synthetic phantom), then times, in this same run and with a
warm file cache for all:

* ours: ``scan_paths`` + ``load_series`` (what the app does when a folder is opened),
* SimpleITK: ``ImageSeriesReader`` (GDCM file discovery + read),
* pydicom loop: ``dcmread`` + ``pixel_array`` + ``np.stack`` (no sorting, no HU).

Each measurement runs in its own subprocess so caches and allocator state of
one do not help or hurt another. Peak RSS with four such series open in one
process is compared to the goal 1.5 x int16 voxel bytes + 400 MB.

Run: ``.venv/bin/python benchmarks/bench_load.py [--slices 300] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_series(folder: Path, n_slices: int) -> str:
    """Write the benchmark series; returns a description of its content."""
    import cv2

    from app.core.volume import Geometry, SeriesInfo, Volume
    from app.io.dicom_write import write_dicom_series
    from app.io.load import load_volume
    from app.paths import shared_data_dir

    shared = shared_data_dir()
    source = shared / "chest-lung2.nrrd" if shared else None
    if source is not None and source.exists():
        src = load_volume(source)
        # Resample along z (linear) to n_slices; in-plane it is already 512 x 512.
        z = np.linspace(0, src.n_slices - 1, n_slices)
        lo = np.floor(z).astype(int)
        hi = np.minimum(lo + 1, src.n_slices - 1)
        w = (z - lo)[:, None, None].astype(np.float32)
        vox = np.rint(src.voxels[lo] * (1 - w) + src.voxels[hi] * w).astype(np.int16)
        if vox.shape[1:] != (512, 512):
            vox = np.stack([cv2.resize(s, (512, 512)) for s in vox])
        spacing = (
            *src.geometry.spacing[:2],
            src.geometry.spacing[2] * (src.n_slices - 1) / (n_slices - 1),
        )
        what = f"chest-lung2 resampled to {n_slices} slices"
    else:
        sys.path.insert(0, str(ROOT / "tests" / "io"))
        from conftest import phantom  # the test phantom: body, lungs, spine, noise

        vox = phantom((n_slices, 512, 512))
        spacing = (0.7, 0.7, 1.0)
        what = f"synthetic phantom, {n_slices} slices"
    volume = Volume(
        vox,
        Geometry(origin=(-180.0, -180.0, -300.0), spacing=spacing, direction=np.eye(3)),
        SeriesInfo(patient_id="BENCH", study_date="20240101", series_description="bench"),
    )
    write_dicom_series(volume, folder, naming="uid", shuffle=True)
    return what


def warm(folder: Path) -> None:
    """Read every file once so all methods start with a warm page cache."""
    for p in folder.iterdir():
        p.read_bytes()


def run_ours(folder: Path) -> np.ndarray:
    from app.io.load import load_series
    from app.io.scan import scan_paths

    result = scan_paths([folder])
    return load_series(result.series[0]).voxels


def run_sitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def run_pydicom(folder: Path) -> np.ndarray:
    import pydicom

    return np.stack([pydicom.dcmread(p).pixel_array for p in sorted(folder.iterdir())])


METHODS = {"ours": run_ours, "sitk": run_sitk, "pydicom": run_pydicom}


def child_time(method: str, folder: Path, repeats: int) -> dict:
    fn = METHODS[method]
    warm(folder)
    fn(folder)  # first call imports and warms caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(folder)
        times.append(time.perf_counter() - t0)
        del out
    return {"method": method, "best": min(times), "median": statistics.median(times)}


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes.

    Linux's VmHWM belongs to the process image; ``ru_maxrss`` survives exec and
    would report the parent's peak (the parent builds the series) instead.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child_memory(folder: Path, copies: int) -> dict:
    from app.io.load import load_series
    from app.io.scan import scan_paths

    import_rss = peak_rss()
    volumes = []
    for _ in range(copies):
        ref = scan_paths([folder]).series[0]
        volumes.append(load_series(ref))
    peak = peak_rss()
    voxel_bytes = sum(v.voxels.nbytes for v in volumes)
    return {"peak_rss": peak, "import_rss": import_rss, "voxel_bytes": voxel_bytes}


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=[*METHODS, "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "memory":
        print(json.dumps(child_memory(args.folder, 4)))
        return 0
    if args.child:
        print(json.dumps(child_time(args.child, args.folder, args.repeats)))
        return 0

    with tempfile.TemporaryDirectory(prefix="priorsync-bench-") as tmp:
        folder = Path(tmp) / "series"
        t0 = time.perf_counter()
        what = make_series(folder, args.slices)
        n_bytes = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"series: 512x512x{args.slices} ({what}), {n_bytes / 1e6:.0f} MB on disk, "
            f"written in {time.perf_counter() - t0:.1f} s"
        )
        res = {
            m: _child(["--child", m, "--folder", str(folder), "--repeats", str(args.repeats)])
            for m in METHODS
        }
        for m, r in res.items():
            print(f"  {m:8s} best {r['best']:.3f} s   median {r['median']:.3f} s")
        ours = res["ours"]["best"]
        for m in ("sitk", "pydicom"):
            print(f"  ours / {m:8s} = {ours / res[m]['best']:.2f}x")
        faster = min(res["sitk"]["best"], res["pydicom"]["best"])
        print(f"  ours / faster baseline = {ours / faster:.2f}x (goal <= 1.00x)")

        mem = _child(["--child", "memory", "--folder", str(folder)])
        goal = 1.5 * mem["voxel_bytes"] + 400e6
        print(
            f"memory, 4 series open: peak RSS {mem['peak_rss'] / 1e6:.0f} MB "
            f"(after imports {mem['import_rss'] / 1e6:.0f} MB; voxels {mem['voxel_bytes'] / 1e6:.0f} MB); "
            f"goal {goal / 1e6:.0f} MB -> {mem['peak_rss'] / goal:.2f}x of goal"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
