"""Writing a user's file without ever leaving a partial file or silently overwriting one.

The bytes go to a temporary file in the target's own folder (same file system,
so the final step is an atomic rename, never a copy), are flushed to disk, and
only then appear under the target name. Without ``overwrite`` the final step is
a hard link, which the operating system refuses atomically when the name is
taken, so a file that appears while we write (another export, another user)
is not clobbered either. Any failure removes the temporary file and raises
:class:`WriteError` with the reason in words.

Exported images and saved sketches both go through here; their layers turn
these errors into their own (``WriteError``, ``SketchFileError``). Files that
a library writes to a path itself (models, checkpoints, training caches) use
:func:`replacing`: the same temporary-file-and-rename, always replacing.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TargetExistsError", "WriteError", "describe_os_error", "replacing", "safe_write"]


class WriteError(Exception):
    """A file that could not be written; ``str(error)`` is a user-facing message."""


class TargetExistsError(WriteError):
    """The target file exists and overwriting was not allowed (a UI asks the user).

    Attributes
    ----------
    path
        The existing file.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path} already exists; choose another name or allow overwriting it")


# errno -> the reason a user can act on. Anything else falls back to strerror.
_REASONS: dict[int, str] = {
    errno.ENOSPC: "the disk is full",
    errno.EACCES: "permission denied (you may not write to this folder)",
    errno.EPERM: "the operating system does not allow this operation here",
    errno.EROFS: "the drive is read-only",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "the target is a folder",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EFBIG: "the file is too large for this drive",
    errno.EIO: "a hardware or network input/output error occurred",
    errno.EINVAL: "the file name is not valid on this drive",
    errno.EMFILE: "too many files are open",
}
for _name, _reason in (
    ("EDQUOT", "your disk quota is exceeded"),
    ("ESTALE", "the network drive is no longer available"),
    ("ETXTBSY", "the file is in use"),
):
    if hasattr(errno, _name):
        _REASONS[getattr(errno, _name)] = _reason

# A hard link is how a no-clobber write stays atomic; these errors mean the file
# system cannot link (FAT, some network shares), not that the write is denied.
_NO_LINK = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS}
if hasattr(errno, "EOPNOTSUPP"):
    _NO_LINK.add(errno.EOPNOTSUPP)


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, when no
    # other thread of ours writes files yet.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()


def describe_os_error(exc: OSError) -> str:
    """A short, human reason for an ``OSError`` (``"the disk is full"``)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return exc.strerror or str(exc) or type(exc).__name__


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        # Nothing better to do: the original error is the one to report.
        pass


def _publish_no_clobber(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless ``path`` exists (atomically where possible)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise TargetExistsError(path) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        # No hard links here: check, then rename. The gap between the two is
        # the only window in which a file appearing concurrently could be lost.
        if os.path.lexists(path):
            raise TargetExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def safe_write(path: Path | str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; never overwrite unless asked.

    Parameters
    ----------
    path
        Target file. Its folder must exist.
    data
        The complete file contents.
    overwrite
        Replace an existing file. When ``False`` an existing file (even one
        that appears while writing) raises :class:`TargetExistsError`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TargetExistsError
        ``path`` exists and ``overwrite`` is ``False``.
    WriteError
        The file could not be written (no space, no permission, read-only
        drive, ...). No partial or temporary file is left behind.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder")
    if not overwrite and os.path.lexists(path):
        # Checked first so that the common case costs no write; the final
        # link re-checks atomically.
        raise TargetExistsError(path)
    if not folder.is_dir():
        raise WriteError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise WriteError(f"cannot write to {folder}: {describe_os_error(exc)}") from None
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        # mkstemp creates the file private (0600); an exported image is an
        # ordinary document, so give it the user's default permissions.
        os.chmod(tmp, _FILE_MODE)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_no_clobber(tmp, path)
    except WriteError:
        _remove_quietly(tmp)
        raise
    except OSError as exc:
        _remove_quietly(tmp)
        raise WriteError(f"could not write {path}: {describe_os_error(exc)}") from None
    except BaseException:
        # KeyboardInterrupt and the like: still leave no temporary file behind.
        _remove_quietly(tmp)
        raise
    return path


@contextmanager
def replacing(path: Path | str, *, public: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over ``path`` when the block succeeds.

    For writers that need a file name rather than bytes (``torch.save``,
    ``torch.onnx.export``, ``np.savez``): readers of ``path`` see the old file
    or the complete new one, never a partial one. On any error the temporary
    file is removed and the error propagates unchanged.

    Parameters
    ----------
    path
        Target file; its folder is created if needed. Always replaced.
    public
        Give the new file the user's default permissions (``mkstemp`` makes
        it private, 0600), e.g. for a model file others may read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if public:
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
