"""scripts/install-command.sh: after set-up, ``priorsync`` is on the PATH (or the user is told how)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-command.sh"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """A stand-in for .venv/bin/priorsync (in a folder with a space) that echoes its arguments."""
    folder = tmp_path / "my checkout" / ".venv" / "bin"
    folder.mkdir(parents=True)
    prog = folder / "priorsync"
    prog.write_text('#!/bin/sh\necho "called with: $*"\n')
    prog.chmod(0o755)
    return prog


def install(tmp_path: Path, program: Path, path_has_bin: bool, **extra: str):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    bin_dir = home / ".local" / "bin"
    path = "/usr/bin:/bin" + (f":{bin_dir}" if path_has_bin else "")
    env = {"HOME": str(home), "PATH": path, **extra}
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc, bin_dir / "priorsync", env


def test_wrapper_runs_the_checkout_command_and_says_it_is_on_the_path(
    tmp_path: Path, program: Path
) -> None:
    proc, wrapper, env = install(tmp_path, program, path_has_bin=True)
    assert proc.returncode == 0, proc.stderr
    assert "priorsync is on your PATH" in proc.stdout
    run = subprocess.run(
        ["priorsync", "doctor", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert run.stdout.strip() == "called with: doctor --json"
    # Run again (set-up is repeatable): the wrapper it wrote is simply replaced.
    again, _, _ = install(tmp_path, program, path_has_bin=True)
    assert again.returncode == 0 and os.access(wrapper, os.X_OK)


def test_without_the_folder_on_path_it_prints_the_export_line(
    tmp_path: Path, program: Path
) -> None:
    proc, wrapper, _ = install(tmp_path, program, path_has_bin=False)
    assert proc.returncode == 0 and wrapper.is_file()
    assert f'export PATH="{wrapper.parent}:$PATH"' in proc.stdout
    assert f"or call it as {program}" in proc.stdout


def test_a_priorsync_it_did_not_write_is_left_alone(tmp_path: Path, program: Path) -> None:
    bin_dir = tmp_path / "home" / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    theirs = bin_dir / "priorsync"
    theirs.write_text("#!/bin/sh\necho someone else's\n")
    proc, _, _ = install(tmp_path, program, path_has_bin=True)
    assert proc.returncode == 0
    assert "left as it is" in proc.stdout
    assert theirs.read_text() == "#!/bin/sh\necho someone else's\n"


def test_an_unwritable_home_never_fails_the_set_up(tmp_path: Path, program: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".local").write_text("a file where the folder should be")
    proc, wrapper, _ = install(tmp_path, program, path_has_bin=True)
    assert proc.returncode == 0
    assert f"Could not write {wrapper}; call PriorSync as {program}" in proc.stdout


def test_opt_out(tmp_path: Path, program: Path) -> None:
    proc, wrapper, _ = install(tmp_path, program, path_has_bin=True, PRIORSYNC_NO_COMMAND="1")
    assert proc.returncode == 0 and not wrapper.exists()
