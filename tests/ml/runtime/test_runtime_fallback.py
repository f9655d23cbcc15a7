"""The CPU execution provider as the working fallback of either onnxruntime build.

On Linux x86_64 and Windows the dependency is ``onnxruntime-gpu``, whose
CUDA provider is listed even where no GPU or CUDA libraries exist; the model
must then run on the CPU, quietly (no onnxruntime errors on stderr), and say
so. With the CPU build (other platforms, or a CPU-only environment) the same
must hold trivially. Runs in a subprocess so onnxruntime's own C++ output on
stderr is seen.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]  # tests/ml/runtime/ -> the checkout

_PROBE = textwrap.dedent(
    """
    import json
    import numpy as np
    import onnxruntime as ort
    from app.ml.runtime.model import EmbeddingModel
    model = EmbeddingModel.load(None, device="auto")
    size = model.spec.size
    channels = len(model.spec.windows)
    inputs = np.random.default_rng(0).random((2, channels, size, size), dtype=np.float32)
    emb = model.embed_inputs(inputs)
    print(json.dumps({
        "available": ort.get_available_providers(),
        "provider": model.provider,
        "shape": list(emb.shape),
        "norms": [float(v) for v in np.linalg.norm(emb, axis=1)],
    }))
    """
)


def _has_cuda_device() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def test_auto_device_runs_the_model_and_falls_back_to_the_cpu_quietly():
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "CPUExecutionProvider" in result["available"]
    assert result["shape"][0] == 2
    assert all(abs(n - 1.0) < 1e-3 for n in result["norms"])
    if not _has_cuda_device():
        assert result["provider"] == "CPUExecutionProvider"
        assert "onnxruntime" not in proc.stderr, proc.stderr  # no C++ error/warning lines


_PROVIDER_LIBRARIES = ("libonnxruntime_providers_cuda.so", "libonnxruntime_providers_tensorrt.so")

_PROBE_WITHOUT_GPU_PROVIDERS = textwrap.dedent(
    """
    import json
    import numpy as np
    import onnxruntime as ort
    from app.ml.runtime.model import EmbeddingModel, ModelError, available_providers
    model = EmbeddingModel.load(None, device="auto")
    size = model.spec.size
    inputs = np.zeros((1, len(model.spec.windows), size, size), dtype=np.float32)
    try:
        EmbeddingModel.load(None, device="cuda")
        refused = ""
    except ModelError as exc:
        refused = str(exc)
    print(json.dumps({
        "onnxruntime": ort.__file__,
        "compiled": ort.get_available_providers(),
        "available": available_providers(),
        "provider": model.provider,
        "shape": list(model.embed_inputs(inputs).shape),
        "refused": refused,
    }))
    """
)


def test_without_the_cuda_and_tensorrt_libraries_the_model_runs_on_the_cpu(tmp_path):
    """The standalone app's CPU flavour leaves both provider libraries out (bundle_trim)."""
    import onnxruntime as ort

    package = Path(ort.__file__).parent
    if not any((package / "capi" / name).is_file() for name in _PROVIDER_LIBRARIES):
        pytest.skip("this onnxruntime ships no CUDA/TensorRT provider library to leave out")
    # The package as the CPU bundle holds it: every file linked, but those two.
    copy = tmp_path / "onnxruntime"
    copy.mkdir()
    for entry in package.iterdir():
        if entry.name != "capi":
            (copy / entry.name).symlink_to(entry)
    (copy / "capi").mkdir()
    for entry in (package / "capi").iterdir():
        if entry.name not in _PROVIDER_LIBRARIES:
            (copy / "capi" / entry.name).symlink_to(entry)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE_WITHOUT_GPU_PROVIDERS],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["onnxruntime"].startswith(str(tmp_path))
    assert "CUDAExecutionProvider" in result["compiled"]  # the build still names it ...
    assert result["available"] == ["CPUExecutionProvider"]  # ... but it is not there
    assert result["provider"] == "CPUExecutionProvider"
    assert result["shape"][0] == 1
    assert "no CUDA support" in result["refused"]
    assert "onnxruntime" not in proc.stderr, proc.stderr  # quiet: no C++ error lines
