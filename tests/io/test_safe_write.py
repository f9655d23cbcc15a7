"""safe_write: atomic, never overwrites silently, no partial file on any failure."""

from __future__ import annotations

import errno
import os
import stat
import sys

import pytest

import app.io.safe_write as sw
from app.io.safe_write import (
    TargetExistsError,
    WriteError,
    describe_os_error,
    replacing,
    safe_write,
)


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writes_with_default_permissions(tmp_path) -> None:
    path = safe_write(tmp_path / "a.png", b"data")
    assert path.read_bytes() == b"data"
    assert listing(tmp_path) == ["a.png"]
    if sys.platform != "win32":
        mode = stat.S_IMODE(path.stat().st_mode)
        umask = os.umask(0)
        os.umask(umask)
        assert mode == 0o666 & ~umask  # not mkstemp's private 0600


def test_never_overwrites_silently(tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    with pytest.raises(TargetExistsError, match="already exists") as info:
        safe_write(path, b"new")
    assert info.value.path == path
    assert path.read_bytes() == b"old"
    safe_write(path, b"new", overwrite=True)
    assert path.read_bytes() == b"new"
    assert listing(tmp_path) == ["a.png"]


def test_a_file_appearing_while_writing_is_not_clobbered(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.png"
    real_write = sw._write_all

    def racing_write(fd: int, data: bytes) -> None:
        path.write_bytes(b"someone else's")  # appears after the up-front check
        real_write(fd, data)

    monkeypatch.setattr(sw, "_write_all", racing_write)
    with pytest.raises(TargetExistsError):
        safe_write(path, b"ours")
    assert path.read_bytes() == b"someone else's"
    assert listing(tmp_path) == ["a.png"]  # no temporary file left


def test_file_systems_without_hard_links_still_refuse_to_overwrite(tmp_path, monkeypatch) -> None:
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(sw.os, "link", no_link)
    safe_write(tmp_path / "a.png", b"one")
    assert (tmp_path / "a.png").read_bytes() == b"one"
    with pytest.raises(TargetExistsError):
        safe_write(tmp_path / "a.png", b"two")
    assert listing(tmp_path) == ["a.png"]


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    real_write = os.write
    calls = []

    def write_then_fail(fd: int, data) -> int:
        if calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(1)
        return real_write(fd, bytes(data[: len(data) // 2]))  # a short write, then the disk fills

    monkeypatch.setattr(sw.os, "write", write_then_fail)
    with pytest.raises(WriteError, match=r"could not write .*a\.png: the disk is full"):
        safe_write(tmp_path / "a.png", b"x" * 10_000)
    monkeypatch.undo()
    assert calls  # the partial write really happened
    assert listing(tmp_path) == []


def test_failure_at_the_final_rename_leaves_nothing(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.png").write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sw.os, "replace", failing_replace)
    with pytest.raises(WriteError, match="input/output error"):
        safe_write(tmp_path / "a.png", b"new", overwrite=True)
    assert listing(tmp_path) == ["a.png"]
    assert (tmp_path / "a.png").read_bytes() == b"old"


def test_interrupt_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    def interrupted(fd: int, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sw, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safe_write(tmp_path / "a.png", b"x")
    assert listing(tmp_path) == []


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="permission bits do not stop root (or Windows ACLs); the mocked EACCES test covers the message",
)
def test_read_only_folder(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="permission denied"):
            safe_write(folder / "a.png", b"x")
        assert listing(folder) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.EACCES, "permission denied"), (errno.EROFS, "the drive is read-only")],
)
def test_unwritable_folder_mocked(tmp_path, monkeypatch, code, words) -> None:
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(sw.tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=f"cannot write to .*: {words}"):
        safe_write(tmp_path / "a.png", b"x")
    assert listing(tmp_path) == []


def test_bad_targets(tmp_path) -> None:
    with pytest.raises(WriteError, match="does not exist"):
        safe_write(tmp_path / "missing" / "a.png", b"x")
    with pytest.raises(WriteError, match="it is a folder"):
        safe_write(tmp_path, b"x", overwrite=True)


def test_describe_os_error_falls_back_to_strerror() -> None:
    assert describe_os_error(OSError(errno.ENOSPC, "x")) == "the disk is full"
    assert (
        describe_os_error(OSError(errno.ECONNRESET, "Connection reset by peer"))
        == "Connection reset by peer"
    )


def test_replacing_renames_over_the_target_only_when_the_block_succeeds(tmp_path) -> None:
    target = tmp_path / "sub" / "model.bin"
    with replacing(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="half written"), replacing(target) as tmp:
        tmp.write_bytes(b"fir")
        raise RuntimeError("half written")
    assert target.read_bytes() == b"first"
    assert listing(target.parent) == ["model.bin"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_replacing_keeps_the_file_private_unless_public(tmp_path) -> None:
    with replacing(tmp_path / "cache.npz") as tmp:
        tmp.write_bytes(b"x")
    with replacing(tmp_path / "model.onnx", public=True) as tmp:
        tmp.write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "cache.npz").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == sw._FILE_MODE
