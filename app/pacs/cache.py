"""The local study cache: retrieved studies kept by UID, bounded in size, least recently used evicted.

Layout under ``cache_dir()/pacs``::

    studies/<StudyInstanceUID>/manifest.json          what is complete, with file sizes
    studies/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    staging/<pid>-<random>/...                         transfers in progress

A transfer writes into its own staging folder; only when every series has
arrived is the manifest written (atomically, :func:`app.io.safe_write.safe_write`)
and the folder renamed into ``studies/`` in one step. So a study folder with
a manifest is complete by construction, and a transfer that fails, is
cancelled or is killed leaves at most a staging folder, which is removed
(on failure at once, after a crash by the next cache user). A study whose
files no longer match its manifest (disk trouble, a user's hands) is
dropped and fetched again. The manifest's modification time is the study's
last use (least recently used = evicted first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from app.io.safe_write import describe_os_error, safe_write
from app.pacs.backend import Instance
from app.pacs.errors import BadInstances, CacheFailed
from app.pacs.servers import ServerStore
from app.paths import cache_dir

__all__ = ["CachedStudy", "StagedStudy", "StudyCache"]

log = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_VERSION = 1
_UID = re.compile(r"^[0-9.]{1,64}$")


def _check_uid(uid: str, what: str) -> str:
    # UIDs become folder and file names: only digits and dots may pass.
    if not _UID.match(uid):
        raise BadInstances(f"the server sent an invalid {what} UID")
    return uid


@dataclass(frozen=True)
class CachedStudy:
    """A complete study in the cache.

    Attributes
    ----------
    study_uid
        Its Study Instance UID.
    folder
        The study folder (one sub-folder per series).
    series_folders
        Series sub-folders, in the order they were fetched.
    n_instances, n_bytes
        What it holds.
    """

    study_uid: str
    folder: Path
    series_folders: tuple[Path, ...]
    n_instances: int
    n_bytes: int


def _pixel_bytes_expected(ds: Dataset) -> int | None:
    """Bytes native (uncompressed) pixel data must hold, or None when not checkable."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return rows * cols * samples * frames * bits // 8


def check_ct_instance(ds: Dataset, study_uid: str, series_uid: str) -> str:
    """Reject what the viewer could not use; return the SOP Instance UID.

    Raises
    ------
    BadInstances
        Not a CT image of this series, or its pixel data is missing or short.
    """
    sop = _check_uid(str(ds.get("SOPInstanceUID", "") or ""), "SOP instance")
    if (
        str(ds.get("StudyInstanceUID", "")) != study_uid
        or str(ds.get("SeriesInstanceUID", "")) != series_uid
    ):
        raise BadInstances("the server sent an instance of another series than was asked for")
    modality = str(ds.get("Modality", "") or "?")
    if modality != "CT":
        raise BadInstances(f"the server sent a {modality} instance in a CT series")
    if "PixelData" not in ds:
        raise BadInstances("the server sent a CT instance without pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        expected = _pixel_bytes_expected(ds)
        actual = len(ds.PixelData)
        if expected is None or actual < expected:
            raise BadInstances("the server sent a corrupt CT instance (pixel data cut short)")
    return sop


class StagedStudy:
    """A transfer in progress: instances go to a private folder until :meth:`commit`.

    Use as a context manager: leaving the block without a commit removes
    everything staged.
    """

    def __init__(self, cache: StudyCache, study_uid: str) -> None:
        self.cache = cache
        self.study_uid = _check_uid(study_uid, "study")
        try:
            cache.staging_root.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(dir=cache.staging_root, prefix=f"{os.getpid()}-"))
        except OSError as exc:
            raise cache.failed(exc) from None
        self._series: dict[str, list[tuple[str, int]]] = {}
        self.n_bytes = 0

    def __enter__(self) -> StagedStudy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove whatever is staged (nothing of it ever looked complete)."""
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, series_uid: str, instance: Instance) -> Path:
        """Check one instance of ``series_uid`` and write it into the staging folder.

        Raises
        ------
        BadInstances
            Corrupt, not CT, or of another series.
        CacheFailed
            The disk is full or the folder read-only.
        """
        series_uid = _check_uid(series_uid, "series")
        ds: Dataset
        if instance.data is not None:
            data = instance.data
            try:
                ds = pydicom.dcmread(BytesIO(data), force=False)
            except Exception:  # noqa: BLE001 - any parse failure means a corrupt file
                raise BadInstances(
                    "the server sent a corrupt instance (not readable DICOM)"
                ) from None
        elif instance.dataset is not None:
            ds = instance.dataset
            data = b""
        else:
            raise BadInstances("the server sent an empty instance")
        sop = check_ct_instance(ds, self.study_uid, series_uid)
        if not data:
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
        folder = self.folder / series_uid
        path = folder / f"{sop}.dcm"
        try:
            folder.mkdir(exist_ok=True)
            # No temporary name needed: the folder is private until the commit,
            # and the manifest (with every size) is what makes it count as complete.
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except FileExistsError:
            return path  # the same instance sent twice
        except OSError as exc:
            raise self.cache.failed(exc) from None
        self._series.setdefault(series_uid, []).append((path.name, len(data)))
        self.n_bytes += len(data)
        return path

    def count(self, series_uid: str) -> int:
        return len(self._series.get(series_uid, ()))

    def commit(self) -> CachedStudy:
        """Write the manifest and move the study into the cache in one rename.

        Raises
        ------
        CacheFailed
            The manifest or the rename failed (the staged files are removed).
        """
        manifest = {
            "version": _VERSION,
            "study_uid": self.study_uid,
            "series": [{"series_uid": uid, "files": files} for uid, files in self._series.items()],
            "n_bytes": self.n_bytes,
        }
        target = self.cache.study_folder(self.study_uid)
        try:
            safe_write(self.folder / _MANIFEST, json.dumps(manifest).encode("utf-8"))
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                # A complete copy (another transfer's) stays: readers may be using it.
                # A damaged one is removed by the lookup.
                existing = self.cache.lookup(self.study_uid, touch=False)
                if existing is not None:
                    self.discard()
                    return existing
            os.replace(self.folder, target)
        except OSError as exc:
            self.discard()
            # Another process may have committed the same study meanwhile: use its copy.
            theirs = self.cache.lookup(self.study_uid, touch=False)
            if theirs is not None:
                return theirs
            raise self.cache.failed(exc) from None
        except Exception:
            self.discard()
            raise
        found = self.cache.lookup(self.study_uid, touch=False)
        if found is None:
            raise CacheFailed("the study cache lost a study just written (disk trouble?)")
        self.cache.evict(keep={self.study_uid})
        return found


class StudyCache:
    """Retrieved studies by UID under ``root`` (default ``cache_dir()/pacs``).

    Parameters
    ----------
    root
        The cache folder.
    max_bytes
        Size bound; after each commit the least recently used studies are
        evicted until the cache fits (the newest study is always kept).
        Default: the user's setting (:class:`~app.pacs.servers.PacsOptions`).
    """

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "pacs"
        if max_bytes is None:
            max_bytes = ServerStore().options().cache_max_bytes
        self.max_bytes = int(max_bytes)
        self._clear_dead_staging()

    @property
    def studies_root(self) -> Path:
        return self.root / "studies"

    @property
    def staging_root(self) -> Path:
        return self.root / "staging"

    def failed(self, exc: OSError) -> CacheFailed:
        return CacheFailed(
            f"the study cache in {self.root} cannot be written: {describe_os_error(exc)}"
        )

    def study_folder(self, study_uid: str) -> Path:
        return self.studies_root / _check_uid(study_uid, "study")

    def _clear_dead_staging(self) -> None:
        # Staging folders of processes that no longer run are left-overs of a crash.
        try:
            entries = list(self.staging_root.iterdir())
        except OSError:
            return
        for entry in entries:
            pid_text = entry.name.split("-", 1)[0]
            if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
                continue
            if pid_text.isdigit() and int(pid_text) == os.getpid():
                continue
            shutil.rmtree(entry, ignore_errors=True)

    def stage(self, study_uid: str) -> StagedStudy:
        """A new :class:`StagedStudy` for ``study_uid``."""
        return StagedStudy(self, study_uid)

    def lookup(self, study_uid: str, *, touch: bool = True) -> CachedStudy | None:
        """The complete cached study, or None (a damaged one is removed).

        With ``touch`` the study counts as just used (for the LRU order).
        """
        folder = self.study_folder(study_uid)
        manifest_path = folder / _MANIFEST
        if not manifest_path.is_file():
            if folder.exists():
                self.remove(study_uid)
            return None
        study = self._read(folder, study_uid)
        if study is None:
            log.warning("a cached study was damaged; it will be fetched again")
            self.remove(study_uid)
            return None
        if touch:
            # A read-only cache still serves its studies.
            with contextlib.suppress(OSError):
                os.utime(manifest_path)
        return study

    def _read(self, folder: Path, study_uid: str) -> CachedStudy | None:
        try:
            meta = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
            if meta.get("version") != _VERSION or meta.get("study_uid") != study_uid:
                return None
            series_folders = []
            n = 0
            total = 0
            for series in meta["series"]:
                sub = folder / _check_uid(str(series["series_uid"]), "series")
                for name, size in series["files"]:
                    if (sub / str(name)).stat().st_size != int(size):
                        return None
                    n += 1
                    total += int(size)
                series_folders.append(sub)
        except (OSError, ValueError, KeyError, TypeError, BadInstances):
            return None
        return CachedStudy(study_uid, folder, tuple(series_folders), n, total)

    def studies(self) -> list[tuple[float, str, int]]:
        """``(last_used, study_uid, n_bytes)`` of each complete study, least recent first."""
        out = []
        try:
            entries = list(self.studies_root.iterdir())
        except OSError:
            return []
        for entry in entries:
            manifest = entry / _MANIFEST
            try:
                used = manifest.stat().st_mtime
                n_bytes = int(json.loads(manifest.read_text(encoding="utf-8"))["n_bytes"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            out.append((used, entry.name, n_bytes))
        return sorted(out)

    def size(self) -> int:
        return sum(n for _t, _uid, n in self.studies())

    def evict(self, keep: set[str] | None = None) -> list[str]:
        """Remove least recently used studies until the cache fits; return their UIDs."""
        keep = keep or set()
        studies = self.studies()
        total = sum(n for _t, _uid, n in studies)
        removed = []
        for _used, uid, n_bytes in studies:
            if total <= self.max_bytes:
                break
            if uid in keep:
                continue
            self.remove(uid)
            total -= n_bytes
            removed.append(uid)
        if removed:
            log.info("study cache: evicted %d least recently used studies", len(removed))
        return removed

    def remove(self, study_uid: str) -> None:
        """Drop one study (its manifest first, so a half-removed study never looks complete)."""
        folder = self.study_folder(study_uid)
        with contextlib.suppress(OSError):
            (folder / _MANIFEST).unlink(missing_ok=True)
        trash = folder.with_name(f".{folder.name}.{os.getpid()}.{time.monotonic_ns()}.trash")
        try:
            os.replace(folder, trash)
        except OSError:
            trash = folder
        shutil.rmtree(trash, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
