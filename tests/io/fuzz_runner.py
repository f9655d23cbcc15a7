"""Runs ``priorsync match`` on many inputs, each in its own child process, and records results.

Usage: ``python tests/io/fuzz_runner.py MANIFEST RESULTS``. ``MANIFEST`` is a
JSON list of ``{"name", "current", "prior"}``; one JSON line per case is
appended to ``RESULTS``: ``{"name", "rc", "stdout", "stderr", "peak_rss_kb",
"timed_out"}``.

The heavy imports happen once here; each case then runs in a forked child
(``os.fork``), which calls the real command-line entry point
(``app.cli.main(["match", ...])``, what ``python -m app.cli match`` runs) with
its stdout and stderr sent to files. ``os.wait4`` gives each child's own peak
resident memory; a child that runs past the time limit is killed. A child that
crashes (a signal, an uncaught exception) is recorded as such, so one bad
input cannot hide the results of the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Heavy modules first, so each forked child starts warm.
import numpy  # noqa: F401
import onnxruntime  # noqa: F401
import pydicom  # noqa: F401
import SimpleITK  # noqa: F401

import app.commands.match  # noqa: F401
import app.io.load  # noqa: F401
import app.ml.anatomy.match  # noqa: F401
from app.cli import main as cli_main

CASE_TIMEOUT_S = 90.0
# Address-space cap of each child: a guard for the machine, far above the
# 1.5 GB resident-memory bound the test asserts.
ADDRESS_SPACE_CAP = 8 << 30


def _child(argv: list[str], out_path: str, err_path: str) -> None:
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
    code = 70
    try:
        code = int(cli_main(argv) or 0)
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_case(case: dict, workdir: Path) -> dict:
    """Run one case in a forked child; its exit status, output and peak RSS."""
    out_path = workdir / "stdout"
    err_path = workdir / "stderr"
    argv = ["match", case["current"], case["prior"], "--json", "--no-cache"]
    pid = os.fork()
    if pid == 0:
        _child(argv, str(out_path), str(err_path))
    deadline = time.monotonic() + CASE_TIMEOUT_S
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.02)
    rc = os.waitstatus_to_exitcode(status)
    return {
        "name": case["name"],
        "rc": rc,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
        "peak_rss_kb": usage.ru_maxrss,
        "timed_out": timed_out,
    }


def main(manifest: str, results: str) -> int:
    cases = json.loads(Path(manifest).read_text())
    with tempfile.TemporaryDirectory() as tmp, open(results, "a") as sink:
        for case in cases:
            record = run_case(case, Path(tmp))
            sink.write(json.dumps(record) + "\n")
            sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
