"""Real CT volumes that the simulator, the model training and the demo start from.

Each source is a single real CT (no patient has two dates here; follow-ups are
simulated from one volume). They come from ``app.paths.shared_data_dir()`` when
present (development and CI). Otherwise the ones published inside public PyPI
source tarballs are fetched once with ``pip download`` and only the needed
members are extracted into ``cache_dir()/sources``. ``chest-lung1`` and
``chest-lung2`` come from pyradiomics, whose tarball pip refuses by name, and the
volumes added from GitHub repositories (``chest-4dlung``, ``chest-nsclc``,
``abdomen-pancreas``, ``head-neck-chus`` and the OpenKBP patients
``openkbp-NNN``), so those exist only in the shared folder. Which body
trains, validates or tests is :mod:`app.sim.roles`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.core.volume import Volume
from app.paths import cache_dir, shared_data_dir
from app.sim.roles import OPENKBP_NUMBERS, openkbp_name

__all__ = [
    "SOURCE_NAMES",
    "SourceError",
    "available_sources",
    "source_path",
    "load_source",
    "openkbp_labels_path",
]

_NAMED_SOURCES: tuple[str, ...] = (
    "chest-lung1",
    "chest-lung2",
    "abdomen-pelvis",
    "chest-angio",
    "upper-abdomen-dicom",
    "head-neck",
    "head",
    "chest-4dlung",
    "chest-nsclc",
    "abdomen-pancreas",
    "head-neck-chus",
)
SOURCE_NAMES: tuple[str, ...] = _NAMED_SOURCES + tuple(openkbp_name(n) for n in OPENKBP_NUMBERS)


class SourceError(Exception):
    """A source volume is unknown or cannot be obtained (message is user-facing)."""


@dataclass(frozen=True)
class _Origin:
    """Where a source lives: its file name in the shared folder and its public package."""

    filename: str  # file or folder name in shared_data_dir() and in cache_dir()/sources
    package: str | None = None  # "name==version" of the PyPI sdist carrying it
    member: str | None = None  # path inside the sdist (after its top folder); folder if DICOM


_ORIGINS: dict[str, _Origin] = {
    "chest-lung1": _Origin("chest-lung1.nrrd"),
    "chest-lung2": _Origin("chest-lung2.nrrd"),
    "abdomen-pelvis": _Origin(
        "abdomen-pelvis.nii.gz",
        "totalsegmentator==2.18.0",
        "tests/reference_files/example_ct.nii.gz",
    ),
    "chest-angio": _Origin(
        "chest-angio.nii.gz",
        "totalsegmentator==2.18.0",
        "tests/reference_files/aorta_report/example_ct.nii.gz",
    ),
    "upper-abdomen-dicom": _Origin(
        "upper-abdomen-dicom", "totalsegmentator==2.18.0", "tests/reference_files/example_ct_dicom"
    ),
    "head-neck": _Origin("head-neck.nii.gz", "dicom2stl==0.5.0", "examples/Data/ct_head.nii.gz"),
    "head": _Origin("head.nii.gz", "dicom2stl==0.5.0", "examples/Data/ct_example.nii.gz"),
    "chest-4dlung": _Origin("chest-4dlung.nii.gz"),
    "chest-nsclc": _Origin("chest-nsclc.nii.gz"),
    "abdomen-pancreas": _Origin("abdomen-pancreas.nii.gz"),
    "head-neck-chus": _Origin("head-neck-chus.nii.gz"),
    **{openkbp_name(n): _Origin(f"openkbp/pt_{n:03d}.nii.gz") for n in OPENKBP_NUMBERS},
}
assert set(_ORIGINS) == set(SOURCE_NAMES)
# More bodies that exist only in the shared data folder (see its SOURCES.md; the
# data roles of app.sim.roles name them); loadable by name, not in SOURCE_NAMES.
_SHARED_ONLY: dict[str, _Origin] = {
    "chest-4dlung": _Origin("chest-4dlung.nii.gz"),
    "chest-nsclc": _Origin("chest-nsclc.nii.gz"),
    "abdomen-pancreas": _Origin("abdomen-pancreas.nii.gz"),
    "head-neck-chus": _Origin("head-neck-chus.nii.gz"),
}

_PIP_TIMEOUT_S = 600


def _openkbp_origin(name: str) -> _Origin | None:
    """``openkbp-NNN`` (:func:`app.sim.roles.openkbp_name`): ``openkbp/pt_NNN.nii.gz`` of the shared folder."""
    from app.sim.roles import openkbp_number

    number = openkbp_number(name)
    return None if number is None else _Origin(f"openkbp/pt_{number:03d}.nii.gz")


def openkbp_labels_path(name: str) -> Path | None:
    """The label map beside an OpenKBP source in the shared folder, or ``None``."""
    origin = _openkbp_origin(name)
    shared = shared_data_dir()
    if origin is None or shared is None:
        return None
    path = shared / origin.filename.replace(".nii.gz", ".labels.nii.gz")
    return path if path.is_file() else None


def _check_name(name: str) -> _Origin:
    openkbp = _openkbp_origin(name)
    if openkbp is not None:
        return openkbp
    if name in _SHARED_ONLY:
        return _SHARED_ONLY[name]
    try:
        return _ORIGINS[name]
    except KeyError:
        raise SourceError(
            f"unknown CT source {name!r}; known sources: {', '.join(_NAMED_SOURCES)}"
            " and openkbp-NNN (OpenKBP patients)"
        ) from None


def _cached_dir() -> Path:
    return cache_dir() / "sources"


def _local_path(name: str) -> Path | None:
    """The source's path in the shared folder or the cache, without fetching."""
    origin = _check_name(name)
    shared = shared_data_dir()
    candidates = [shared / origin.filename] if shared is not None else []
    candidates.append(_cached_dir() / origin.filename)
    for path in candidates:
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return path
    return None


def available_sources(names: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """Sources (of ``names``, default all) present locally, in ``SOURCE_NAMES`` order.

    Nothing is fetched; use :func:`source_path` or :func:`load_source` for that.
    """
    wanted = set(SOURCE_NAMES if names is None else names)
    for n in wanted:
        _check_name(n)
    return [n for n in SOURCE_NAMES if n in wanted and _local_path(n) is not None]


def source_path(name: str, *, fetch: bool = True) -> Path:
    """Path of a source volume file or DICOM folder, fetching it from PyPI if needed.

    Raises
    ------
    SourceError
        Unknown name, a source that only exists in the shared folder, or a fetch
        that failed (offline, package gone).
    """
    origin = _check_name(name)
    path = _local_path(name)
    if path is not None:
        return path
    if origin.package is None:
        raise SourceError(
            f"CT source {name!r} is only available in the shared data folder, which is absent"
        )
    if not fetch:
        raise SourceError(f"CT source {name!r} is not present locally")
    _fetch_package(origin.package)
    path = _local_path(name)
    if path is None:  # the sdist did not carry it: a different release than pinned
        raise SourceError(f"{origin.package} did not contain the CT source {name!r}")
    return path


def _fetch_package(package: str) -> None:
    """Download one sdist and extract every source it carries into the cache."""
    dest = _cached_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--quiet",
            package,
            "-d",
            tmp,
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"could not download {package} from PyPI: {exc}") from None
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
            raise SourceError(
                f"could not download {package} from PyPI (offline?): {last[0]}"
            ) from None
        wanted = {o.member: o.filename for o in _ORIGINS.values() if o.package == package}
        _extract(archives[0], wanted, dest, Path(tmp))


def _extract(archive: Path, wanted: dict[str | None, str], dest: Path, tmp: Path) -> None:
    """Extract the ``wanted`` members (file or folder) and move each into place atomically."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member_path, filename in wanted.items():
                assert member_path is not None
                # sdists have one top folder ("name-version/"); match what follows it.
                picked = [
                    m
                    for m in members
                    if (m.isfile())
                    and "/" in m.name
                    and (
                        m.name.split("/", 1)[1] == member_path
                        or m.name.split("/", 1)[1].startswith(member_path + "/")
                    )
                ]
                if not picked:
                    continue
                staging = Path(tempfile.mkdtemp(dir=tmp, prefix="x-"))
                tar.extractall(staging, members=picked, filter="data")
                top = picked[0].name.split("/", 1)[0]
                extracted = staging / top / member_path
                target = dest / filename
                if target.exists():  # another process got there first
                    continue
                # os.replace of a file or of a not-yet-existing folder is atomic,
                # so a reader never sees a half-written source.
                os.replace(extracted, target)
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"could not unpack {archive.name}: {exc}") from None


def load_source(name: str) -> Volume:
    """Load a source CT as a display-oriented :class:`Volume` (int16 HU).

    Goes through the application's own reader (:func:`app.io.load.load_volume`)
    so sources are read exactly as a user's files are.

    Raises
    ------
    SourceError
        When the source cannot be found, fetched or read.
    """
    path = source_path(name)
    from app.io.errors import LoadError
    from app.io.load import load_volume

    try:
        volume = load_volume(path)
    except LoadError as exc:
        raise SourceError(f"could not read CT source {name!r}: {exc}") from None
    return volume
