"""packaging/bundle_trim.py: what the standalone app leaves out, and that the app runs without it.

The frozen tests (test_frozen.py) prove it on a real build; these run in every
test run: the rules never touch what the viewer needs, and the installed app
matches and exports with the excluded Python packages made unimportable.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.dicom_write import write_dicom_series

REPO = Path(__file__).resolve().parents[2]


def load_trim():
    spec = importlib.util.spec_from_file_location(
        "priorsync_bundle_trim_test", REPO / "packaging" / "bundle_trim.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rules_keep_what_the_viewer_needs() -> None:
    trim = load_trim()
    kept = [
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so",
        "PySide6/Qt/lib/libQt6Gui.so.6",
        "PySide6/Qt/lib/libQt6DBus.so.6",
        "SimpleITK/_SimpleITK.abi3.so",
        "cv2/cv2.abi3.so",
        "models/priorsync-embed.onnx",
        "pydicom/__init__.pyc",
    ]
    assert [p for p in kept if trim.dropped(p) is not None] == []
    assert trim.dropped("PySide6/Qt/translations/qtbase_de.qm").name == "Qt translations"
    assert trim.dropped("PySide6/Qt/plugins/platforms/libqvnc.so") is not None
    # The PACS client (DICOMweb over requests, TLS) needs these: never trimmed.
    assert trim.dropped("cryptography/hazmat/bindings/_rust.abi3.so") is None
    assert not {"requests", "urllib3", "certifi"} & set(trim.excluded_modules())


def test_the_cpu_flavour_leaves_out_the_gpu_providers_and_the_gpu_flavour_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trim = load_trim()
    cuda = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
    tensorrt = "onnxruntime/capi/libonnxruntime_providers_tensorrt.so"
    assert trim.dropped(cuda, "cpu").name == "CUDA and TensorRT providers"
    assert trim.dropped(tensorrt, "cpu") is not None
    assert trim.dropped(cuda, "gpu") is None and trim.dropped(tensorrt, "gpu") is None
    # The CPU provider itself (in the pybind module) and the shared bridge stay in both.
    for which in trim.FLAVOURS:
        assert trim.dropped("onnxruntime/capi/libonnxruntime_providers_shared.so", which) is None
        assert trim.dropped("PySide6/Qt/translations/qtbase_de.qm", which) is not None
    monkeypatch.delenv("PRIORSYNC_BUNDLE_FLAVOUR", raising=False)
    assert trim.flavour() == "cpu"  # what CI builds
    monkeypatch.setenv("PRIORSYNC_BUNDLE_FLAVOUR", "GPU")
    assert trim.flavour() == "gpu" and trim.dropped(cuda) is None
    monkeypatch.setenv("PRIORSYNC_BUNDLE_FLAVOUR", "cuda")
    with pytest.raises(ValueError, match="cpu, gpu"):
        trim.flavour()


def test_strip_debug_keeps_a_library_loadable(tmp_path: Path) -> None:
    """Debug sections go, the extension module still imports and works."""
    if shutil.which("strip") is None or shutil.which("readelf") is None:
        pytest.skip("needs binutils (strip, readelf)")
    import hnswlib

    original = Path(hnswlib.__file__)
    internal = tmp_path / "bundle" / "_internal"
    internal.mkdir(parents=True)
    copy = internal / original.name
    shutil.copy2(original, copy)
    trim = load_trim()
    had_debug = trim._has_debug_sections(copy, shutil.which("readelf"))
    files, saved = trim.strip_debug(tmp_path / "bundle")
    assert (files, saved > 0) == ((1, True) if had_debug else (0, False))
    assert copy.stat().st_size == original.stat().st_size - saved
    assert not trim._has_debug_sections(copy, shutil.which("readelf"))
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('hnswlib', {str(copy)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "i = m.Index(space='ip', dim=4); i.init_index(max_elements=2)\n"
        "i.add_items([[1, 0, 0, 0], [0, 1, 0, 0]], [0, 1])\n"
        "print(i.knn_query([[0, 1, 0, 0]], k=1)[0][0][0], m.__file__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    label, loaded = proc.stdout.split()
    assert label == "1" and loaded == str(copy)


def _series(folder: Path, first: int, seed: int, date: str) -> Path:
    rng = np.random.default_rng(seed)
    n, size = 24, 64
    y, x = np.mgrid[0:size, 0:size]
    vox = np.full((n, size, size), -1000, dtype=np.int16)
    for k in range(n):
        level = first + k
        body = ((x - 31.5) / (26 - 0.3 * level)) ** 2 + ((y - 31.5) / 22) ** 2 <= 1
        vox[k][body] = 40 + 8 * level
        vox[k] += rng.integers(-15, 16, size=(size, size), dtype=np.int16)
    volume = Volume(
        voxels=vox,
        geometry=Geometry(
            origin=(-100.0, -100.0, 5.0 * first), spacing=(3.0, 3.0, 5.0), direction=np.eye(3)
        ),
        info=SeriesInfo(patient_id="TRIM-1", patient_name="Trim^Test", study_date=date),
    )
    write_dicom_series(volume, folder)
    return folder


def test_the_app_matches_and_exports_without_the_excluded_packages(tmp_path: Path) -> None:
    current = _series(tmp_path / "current", 0, 1, "20260101")
    prior = _series(tmp_path / "prior", 4, 2, "20250101")
    blocked = load_trim().excluded_modules()
    code = (
        "import json, sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # `import name` now fails, as in the bundle\n"
        "from app.cli import main\n"
        f"a, b, out = {str(current)!r}, {str(prior)!r}, {str(tmp_path / 'pair.png')!r}\n"
        "status = main(['match', a, b, '--json', '--no-cache'])\n"
        "status = status or main(['export', a, b, '--slice', '10', '--out', out, '--no-cache'])\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    first_line = proc.stdout.splitlines()[0]
    assert len(json.loads(first_line)["matches"]) == 24
    assert (tmp_path / "pair.png").stat().st_size > 1000
