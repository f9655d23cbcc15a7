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

REPO = Path(__file__).resolve().parents[2]

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
