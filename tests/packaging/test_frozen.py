"""The standalone (PyInstaller) app: it is self-contained, decodes compressed DICOM,
matches like the installed app, and opens and closes its window cleanly.

Every test runs the frozen binary with the venv hidden: an environment with only
PATH=/usr/bin:/bin, a throw-away HOME and cache, and a working directory outside
the checkout, as on a radiologist's machine without this repository or a Python
environment. Skipped unless PRIORSYNC_TEST_FROZEN=1 (see conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

import app
from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.dicom_write import write_dicom_series

pytestmark = [pytest.mark.frozen, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CRASH_MARKERS = ("Fatal Python error", "Traceback", "Segmentation fault", "core dumped", "Aborted")
# Qt plugins the viewer needs: they and their dependencies must resolve from the
# bundle or from the Debian packages scripts/system-deps.sh installs. (The Wayland
# plugin is bundled too but links the desktop's libwayland-*, present only where
# a Wayland session runs; elsewhere Qt uses xcb.)
QT_PLUGINS = (
    "platforms/libqxcb.so",
    "platforms/libqoffscreen.so",
    "iconengines/libqsvgicon.so",
    "imageformats/libqsvg.so",
    "xcbglintegrations/libqxcb-glx-integration.so",
)


def hidden_env(tmp_path: Path, display: str | None = None, **extra: str) -> dict[str, str]:
    """An environment without the venv, the checkout or the user's caches."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PRIORSYNC_CACHE_DIR": str(tmp_path / "cache"),
    }
    if display is not None:
        env["DISPLAY"] = display
        env["QT_QPA_PLATFORM"] = "xcb"
    env.update(extra)
    return env


def run_frozen(
    app_dir: Path, args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(app_dir / "priorsync"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def assert_clean_exit(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit status {proc.returncode}:\n{output[-3000:]}"
    for marker in CRASH_MARKERS:
        assert marker not in output, f"{marker!r} in the app's output:\n{output[-3000:]}"


def phantom_series(first_level: int, n: int, seed: int, study_date: str) -> Volume:
    """A small chest-like CT whose shape changes with the anatomical level.

    Slice ``i`` shows level ``first_level + i`` (5 mm apart): the body narrows and
    the lungs widen with the level, so two series starting at different levels
    overlap in anatomy the way a current scan and a prior do.
    """
    rows = cols = 96
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    voxels = np.full((n, rows, cols), -1000, dtype=np.int16)
    for i in range(n):
        level = first_level + i
        body = ((x - cx) / (0.45 * cols * (1 - 0.012 * level))) ** 2 + (
            (y - cy) / (0.38 * rows)
        ) ** 2 <= 1
        half_width = (0.05 + 0.004 * level) * cols
        lungs = ((np.abs(x - cx) - 0.18 * cols) / half_width) ** 2 + (
            (y - cy) / (0.2 * rows)
        ) ** 2 <= 1
        spine = ((x - cx) / (0.06 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.06 * rows)) ** 2 <= 1
        voxels[i][body] = 40
        voxels[i][lungs & body] = -850
        voxels[i][spine] = 700
        voxels[i] += rng.integers(-20, 21, size=(rows, cols), dtype=np.int16)
    return Volume(
        voxels=voxels,
        geometry=Geometry(
            origin=(-120.0, -120.0, -200.0 + 5.0 * first_level),
            spacing=(2.5, 2.5, 5.0),
            direction=np.eye(3),
        ),
        info=SeriesInfo(
            patient_id="PACK-001",
            patient_name="Packaging^Test",
            study_date=study_date,
            study_time="100000",
            study_description="CT CHEST",
            series_number=2,
            series_description="Axial 5.0",
            body_part="CHEST",
            manufacturer="Synthetic",
            slice_thickness=5.0,
            convolution_kernel="B30f",
        ),
    )


@pytest.fixture(scope="module")
def compressed_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three overlapping phantom series, one per decoder plugin the bundle must carry."""
    root = tmp_path_factory.mktemp("series")
    specs = {
        "rle": (0, 1, "20261001", RLELossless),  # pylibjpeg-rle
        "jpeg2000": (6, 2, "20251001", JPEG2000Lossless),  # pylibjpeg-openjpeg
        "jpeg-lossless": (3, 3, "20241001", JPEGLosslessSV1),  # pylibjpeg-libjpeg
    }
    folders = {}
    for name, (level, seed, date, syntax) in specs.items():
        folders[name] = root / name
        write_dicom_series(
            phantom_series(level, 30, seed, date), folders[name], transfer_syntax=syntax
        )
    return folders


def test_bundle_holds_the_model_resources_and_plugins(frozen_app: Path) -> None:
    internal = frozen_app / "_internal"
    for model in (REPO / "models").glob("*.onnx"):
        shipped = internal / "models" / model.name
        assert shipped.is_file(), f"{model.name} is not in the bundle"
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        assert hashlib.sha256(shipped.read_bytes()).hexdigest() == digest, "stale model"
    assert (internal / "app" / "resources" / "priorsync.qss").is_file()
    assert (internal / "demo-data" / "chest-angio.nii.gz").is_file()
    assert (internal / "demo-data" / "NOTICE.md").is_file()
    icons = {p.name for p in (REPO / "app" / "resources" / "icons").iterdir()}
    assert icons <= {p.name for p in (internal / "app" / "resources" / "icons").iterdir()}
    assert (frozen_app / "priorsync.desktop").is_file()
    assert (frozen_app / "priorsync.svg").is_file()
    for plugin in QT_PLUGINS:
        assert (internal / "PySide6" / "Qt" / "plugins" / plugin).is_file(), plugin
    # Training-only packages stay out (they would add about a gigabyte).
    for package in ("torch", "captum", "matplotlib"):
        assert not (internal / package).exists(), f"{package} was bundled"


def test_bundle_does_not_depend_on_the_build_machines_python(frozen_app: Path) -> None:
    # Absolute paths of the venv or the checkout in any file would mean the app
    # still reads something from them (an RPATH, a .pth, a hard-coded path).
    needles = {os.fsencode(p) for p in (sys.prefix, REPO / ".venv", REPO / "app")}
    offenders = []
    for path in frozen_app.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            offenders += [f"{path}: {n.decode()}" for n in needles if n in data]
    assert not offenders, "\n".join(offenders[:20])


def test_every_loaded_library_resolves(frozen_app: Path) -> None:
    internal = frozen_app / "_internal"
    plugins = [internal / "PySide6" / "Qt" / "plugins" / p for p in QT_PLUGINS]
    extensions = [p for p in internal.rglob("*.so") if ".cpython-" in p.name or ".abi3." in p.name]
    # The bootloader puts _internal on the library path, so ldd gets the same.
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(internal)}
    unresolved = []
    for lib in plugins + extensions:
        out = subprocess.run(
            ["ldd", str(lib)], capture_output=True, text=True, env=env, check=False
        ).stdout
        unresolved += [
            f"{lib.relative_to(internal)}: {line.strip()}"
            for line in out.splitlines()
            if "not found" in line
        ]
    assert not unresolved, "\n".join(unresolved)


def test_version_and_help(frozen_app: Path, tmp_path: Path) -> None:
    proc = run_frozen(frozen_app, ["--version"], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == f"priorsync {app.__version__}"
    proc = run_frozen(frozen_app, ["--help"], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(proc)
    for command in ("view", "demo", "match", "export", "eval", "train"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    ("current", "prior"),
    [("rle", "jpeg2000"), ("jpeg-lossless", "rle")],
    ids=["rle-j2k", "ljpeg-rle"],
)
def test_match_decodes_compressed_dicom_and_agrees_with_the_installed_app(
    frozen_app: Path, compressed_series: dict[str, Path], tmp_path: Path, current: str, prior: str
) -> None:
    args = ["match", str(compressed_series[current]), str(compressed_series[prior]), "--json"]
    frozen = run_frozen(frozen_app, [*args, "--no-cache"], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(frozen)
    installed = subprocess.run(
        [sys.executable, "-m", "app", *args, "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert_clean_exit(installed)
    got, want = json.loads(frozen.stdout), json.loads(installed.stdout)
    assert got["model"] == want["model"], "the bundle ships another model than models/"
    assert len(got["matches"]) == 30
    for g, w in zip(got["matches"], want["matches"], strict=True):
        assert (g["current_index"], g["prior_index"], g["in_coverage"]) == (
            w["current_index"],
            w["prior_index"],
            w["in_coverage"],
        )
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)


def test_match_reports_unreadable_input_without_a_traceback(
    frozen_app: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    proc = run_frozen(frozen_app, ["match", str(junk), str(junk)], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(proc, code=2)
    assert "priorsync match: error:" in proc.stderr


def test_train_explains_that_the_standalone_app_cannot_train(
    frozen_app: Path, tmp_path: Path
) -> None:
    proc = run_frozen(frozen_app, ["train", "--steps", "1"], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(proc, code=1)
    assert "train extra" in proc.stderr  # a message that names the fix, not a traceback


@pytest.mark.xvfb
def test_viewer_opens_a_dicom_folder_and_exits_0(
    frozen_app: Path, compressed_series: dict[str, Path], x_display: str, tmp_path: Path
) -> None:
    shot = tmp_path / "view.png"
    proc = run_frozen(
        frozen_app,
        ["view", str(compressed_series["rle"]), "--screenshot", str(shot), "--quit-after", "120"],
        hidden_env(tmp_path, x_display),
        tmp_path,
        timeout_s=240,
    )
    assert_clean_exit(proc)
    layout = json.loads(shot.with_suffix(".layout.json").read_text())
    assert len(layout["viewports"]) == 1
    grey = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    x, y, w, h = layout["viewports"][0]["rect"]
    assert grey[y : y + h, x : x + w].std() > 20, "the viewport is blank"


def mapped_files(pid: int) -> set[str]:
    """Files mapped into a running process (its code and shared libraries)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return set()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


@pytest.mark.xvfb
def test_running_app_loads_no_code_from_the_build_machines_python(
    frozen_app: Path, compressed_series: dict[str, Path], x_display: str, tmp_path: Path
) -> None:
    # libpython and Python's own extension modules carry a RUNPATH to the Python
    # they were built by (e.g. /root/.pyenv/...). Harmless where that path does not
    # exist, but here it does, so check what the viewer really loads: two series
    # (so the ONNX model runs) on the real X server.
    proc = subprocess.Popen(
        [
            str(frozen_app / "priorsync"),
            "view",
            str(compressed_series["rle"]),
            str(compressed_series["jpeg2000"]),
            "--quit-after",
            "60",
        ],
        cwd=tmp_path,
        env=hidden_env(tmp_path, x_display),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= mapped_files(proc.pid)
            if any("libqxcb" in f for f in seen) and any("onnxruntime" in f for f in seen):
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    assert any("libqxcb" in f for f in seen), f"the xcb plugin never loaded:\n{stderr[-2000:]}"
    assert any("onnxruntime" in f for f in seen), f"the model never ran:\n{stderr[-2000:]}"
    bundle = str(frozen_app.resolve()) + "/"
    foreign = sorted(
        f
        for f in seen
        # libpython3.*, lib/python3.*/ (stdlib, site-packages of any venv), the checkout
        if f.startswith("/")
        and not f.startswith(bundle)
        and ("python3" in f or f.startswith(str(REPO) + "/"))
    )
    assert not foreign, "loaded from outside the bundle:\n" + "\n".join(foreign)


@pytest.mark.xvfb
def test_demo_shows_three_dates_and_exits_0(
    frozen_app: Path, x_display: str, tmp_path: Path
) -> None:
    # No shared data folder and no network needed: the demo is built from the CT
    # in the bundle (packaging/rthook_demo_data.py), into an empty cache.
    shot = tmp_path / "demo.png"
    proc = run_frozen(
        frozen_app,
        ["demo", "--screenshot", str(shot), "--quit-after", "400"],
        hidden_env(tmp_path, x_display),
        tmp_path,
        timeout_s=480,
    )
    assert_clean_exit(proc)
    layout = json.loads(shot.with_suffix(".layout.json").read_text())
    assert len(layout["viewports"]) >= 3, "the demo patient has three study dates"
    grey = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    for vp in layout["viewports"]:
        x, y, w, h = vp["rect"]
        assert grey[y : y + h, x : x + w].std() > 20, f"viewport at x={x} is blank"


def test_doctor_finds_everything_the_app_needs_inside_the_bundle(
    frozen_app: Path, tmp_path: Path
) -> None:
    # Every needed package, decoder, model and Qt itself (checked in a child
    # process of the frozen binary, headless here) must be found in the bundle.
    proc = run_frozen(frozen_app, ["doctor", "--json"], hidden_env(tmp_path), tmp_path)
    assert_clean_exit(proc)
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["missing"] == []
    findings = {f["label"]: f for s in report["sections"] for f in s["findings"]}
    assert findings["Python"]["value"].endswith("(standalone app)")
    assert findings["Qt platform plugin"]["value"] == "offscreen"
    assert findings["anatomy model"]["value"].startswith("priorsync-embed")
    assert "demo needs no download" in findings["demo CT"]["value"]


def test_match_reads_volume_files_through_simpleitk(frozen_app: Path, tmp_path: Path) -> None:
    from app.io.dicom_write import write_volume_file

    current = write_volume_file(phantom_series(0, 30, 1, "20261001"), tmp_path / "cur.nii.gz")
    prior = write_volume_file(phantom_series(5, 30, 2, "20251001"), tmp_path / "prior.nrrd")
    proc = run_frozen(
        frozen_app,
        ["match", str(current), str(prior), "--json", "--no-cache"],
        hidden_env(tmp_path),
        tmp_path,
    )
    assert_clean_exit(proc)
    matches = json.loads(proc.stdout)["matches"]
    assert len(matches) == 30 and any(m["in_coverage"] for m in matches)


def test_export_writes_a_png_of_the_matched_pair(
    frozen_app: Path, compressed_series: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "pair.png"
    proc = run_frozen(
        frozen_app,
        [
            "export",
            str(compressed_series["rle"]),
            str(compressed_series["jpeg2000"]),
            "--slice",
            "20",
            "--out",
            str(out),
            "--overlay",
            "--no-cache",
        ],
        hidden_env(tmp_path),
        tmp_path,
    )
    assert_clean_exit(proc)
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    # Two 96-pixel panels side by side (the current slice and its match), captioned.
    assert image is not None and image.shape[1] >= 2 * 96 and image.std() > 10
