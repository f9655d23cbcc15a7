"""The command line runs without PyTorch: training commands reach it lazily, via app.ml.train.

The import contract forbids ``import torch`` outside ``app.ml.train``; this
checks the other half, that nothing imports the training packages at module
level, by running the CLI in a fresh interpreter where torch cannot be
imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.commands.exit_codes import EXIT_FAILURE

ROOT = Path(__file__).resolve().parents[2]

# Make `import torch` (and captum) fail as on an install without the train extra.
_BLOCK_TORCH = """
import sys
sys.modules["torch"] = None
sys.modules["captum"] = None
from app.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRIORSYNC_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_command_parses_without_torch(tmp_path) -> None:
    proc = _cli("--help", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("train", "train-sketch", "eval", "match", "index"):
        assert name in proc.stdout


@pytest.mark.parametrize("command", ["train", "train-sketch"])
def test_training_says_it_needs_the_train_extra(command, tmp_path) -> None:
    proc = _cli(command, "--steps", "1", "--run-dir", str(tmp_path / "run"), tmp_path=tmp_path)
    assert proc.returncode == EXIT_FAILURE, proc.stdout + proc.stderr
    assert "needs the train extra" in proc.stderr
    assert "Traceback" not in proc.stderr
