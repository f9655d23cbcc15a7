"""A command's result printed into a pipe whose reader went away (``| head``) is no error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_pipe_gives_no_traceback_and_exit_status_zero() -> None:
    # 2 MB: far more than a pipe buffer, so the child blocks until the reader is gone.
    code = "from app.commands.options import print_result\nprint_result('x' * 2_000_000)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before reading anything
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert stderr == ""


def test_the_text_reaches_an_open_pipe_whole() -> None:
    code = "from app.commands.options import print_result\nprint_result('line 1\\nline 2')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout == "line 1\nline 2\n"
