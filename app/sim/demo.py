"""The demo patient: one fictitious patient scanned on three dates.

The current study is a real CT re-sliced; the two priors are simulated from
it (:mod:`app.sim.followup`, preset ``"demo"``) with another table position,
frame of reference, field of view, slice thickness, breathing state and noise,
and a lesion that is absent in 2024, small in 2025 and larger now. Everything
is written as DICOM and read back by the viewer like any user's folder.

The build is cached under ``cache_dir()/demo/<DEMO_VERSION>``: it is made in a
temporary sibling folder, gets its completion marker last, and is moved into
place in one rename, so an interrupted build is never mistaken for a finished
one and is simply rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.volume import Volume
from app.io.safe_write import safe_write
from app.paths import cache_dir
from app.sim.followup import SIM_PRESETS, SimParams, SimulatedScan, simulate_followup
from app.sim.sources import SourceError, available_sources, load_source

__all__ = ["DEMO_VERSION", "DEMO_PATIENT_NAME", "DEMO_PATIENT_ID", "build_demo_patient"]

log = logging.getLogger(__name__)

DEMO_VERSION = "v2"
DEMO_PATIENT_NAME = "DEMO^PRIORSYNC"
DEMO_PATIENT_ID = "DEMO0001"
_MARKER = "complete.json"
# Neck to upper abdomen with contrast first; the others as they are available.
_SOURCE_PREFERENCE = ("chest-angio", "chest-lung2", "chest-lung1", "abdomen-pelvis")
_SEED = 20261014

Progress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class _Study:
    date: str  # YYYYMMDD
    time: str
    accession: str
    folder: str
    lesion_radius_mm: float  # 0: no lesion yet


_STUDIES = (
    _Study("20261014", "091500", "DEMO26001", "2026-10-14_CT-chest", 11.0),
    _Study("20251007", "143000", "DEMO25001", "2025-10-07_CT-chest", 6.0),
    _Study("20240918", "104500", "DEMO24001", "2024-09-18_CT-chest", 0.0),
)

# The current scan: the source itself re-sliced at 2 mm, no motion, a little noise.
_CURRENT = SimParams(
    rotation_deg=(0.0, 0.0, 0.0),
    shift_mm=(0.0, 0.0),
    deformation_mm=(0.0, 0.0),
    coverage=(1.0, 1.0),
    thickness_mm=(2.0, 2.0),
    spacing_ratio=(1.0, 1.0),
    fov_margin=(1.2, 1.2),
    fov_crop=(1.0, 1.0),
    matrix_sizes=(512,),
    kernel_blur_mm=(0.0, 0.0),
    sharpen_probability=0.0,
    noise_hu=(3.0, 3.0),
    contrast_delta_hu=(0.0, 0.0),
    lesion_probability=1.0,
    lesion_radius_mm=(11.0, 11.0),
    lesion_hu=(55.0, 55.0),
    sample_at_source_resolution=True,
)


def _pick_source() -> tuple[str, Volume]:
    local = available_sources(list(_SOURCE_PREFERENCE))
    ordered = [n for n in _SOURCE_PREFERENCE if n in local] or ["chest-angio"]  # fetches
    last: SourceError | None = None
    for name in ordered:
        try:
            return name, load_source(name)
        except SourceError as exc:
            last = exc
    raise SourceError(f"no CT source for the demo patient: {last}")


def _read_marker(root: Path) -> list[Path] | None:
    """The series folders of a complete build, or None when absent or damaged."""
    try:
        meta = json.loads((root / _MARKER).read_text(encoding="utf-8"))
        folders = [root / f for f in meta["series"]]
        counts = [int(n) for n in meta["n_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if meta.get("version") != DEMO_VERSION or len(folders) != len(counts):
        return None
    for folder, n in zip(folders, counts, strict=True):
        if not folder.is_dir() or sum(1 for p in folder.iterdir() if p.is_file()) != n:
            return None
    return folders


def build_demo_patient(
    root: Path | None = None,
    progress: Progress = None,
    *,
    source: Volume | None = None,
    matrix: int = 512,
) -> list[Path]:
    """Build (once) and return the demo patient's DICOM series folders, newest first.

    Parameters
    ----------
    root
        Where the demo lives; default ``cache_dir()/demo/<DEMO_VERSION>``.
    progress
        ``progress(done, total)`` after each step.
    source
        CT to build from (tests use a small phantom); default the first
        available of chest-angio, chest-lung2, chest-lung1, abdomen-pelvis.
    matrix
        In-plane matrix of every series (tests use a small one).

    Returns
    -------
    list of Path
        One DICOM series folder per study date (three dates).

    Raises
    ------
    app.sim.sources.SourceError
        When no CT source can be found or fetched.
    """
    root = Path(root) if root is not None else cache_dir() / "demo" / DEMO_VERSION
    done = _read_marker(root)
    if done is not None:
        if progress:
            progress(1, 1)
        return done
    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-build-"))
    try:
        _build(build, progress, source, matrix)
        if root.exists():  # an incomplete or outdated build
            stale = root.with_name(f".{root.name}-stale-{os.getpid()}")
            os.replace(root, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(build, root)
        except OSError:
            # Another process finished first; use its build if it is complete.
            if _read_marker(root) is None:
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    folders = _read_marker(root)
    if folders is None:
        raise OSError(f"the demo patient in {root} could not be completed")
    return folders


def _study_params(number: int, matrix: int, lesion_center: Any) -> SimParams:
    """What study ``number`` of :data:`_STUDIES` is simulated with."""
    study = _STUDIES[number]
    if number == 0:
        params = _CURRENT
    else:
        params = replace(
            SIM_PRESETS["demo"],
            lesion_probability=0.0,
            lesion_center=lesion_center if study.lesion_radius_mm > 0 else None,
            lesion_radius_mm=(study.lesion_radius_mm, study.lesion_radius_mm),
            lesion_hu=_CURRENT.lesion_hu,
            # Where the demo's pixels (0.7 mm) are finer than the source's
            # (chest-angio: 1.5 mm), the anatomy is sampled at the source's
            # resolution: 3x less CPU for the same detail.
            sample_at_source_resolution=True,
        )
    return replace(params, matrix_sizes=(matrix,))


def _simulate_study(
    number: int, source: Volume, matrix: int, lesion_center: Any = None
) -> SimulatedScan:
    """Study ``number``, from its own generator: the same scan whichever thread makes it."""
    study = _STUDIES[number]
    overrides: dict[str, Any] = {
        "patient_name": DEMO_PATIENT_NAME,
        "patient_id": DEMO_PATIENT_ID,
        "patient_birth_date": "19580312",
        "study_time": study.time,
        "accession_number": study.accession,
        "study_description": "CT CHEST WITH CONTRAST",
        "body_part": "CHEST",
        "series_number": 3 + number,
    }
    return simulate_followup(
        source,
        _study_params(number, matrix, lesion_center),
        np.random.default_rng([_SEED, number]),
        study_date=study.date,
        info_overrides=overrides,
    )


def _build(folder: Path, progress: Progress, source: Volume | None, matrix: int) -> None:
    from app.io.dicom_write import write_dicom_series

    total = 2 * len(_STUDIES) + 1
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        if progress:
            progress(step, total)

    source_name, source = ("given", source) if source is not None else _pick_source()
    tick()
    names: list[str] = []
    counts: list[int] = []
    lesions: list[dict[str, Any] | None] = []

    # Simulating is mostly numpy and SimpleITK, which release the GIL; writing DICOM
    # is pure Python. Each study has its own generator, so they are made side by
    # side: a prior without the lesion needs nothing from the current and starts at
    # once, the others as soon as the current's lesion is placed; one writer thread
    # writes the studies in order meanwhile. At most the three studies are in memory.
    sims = ThreadPoolExecutor(max_workers=2, thread_name_prefix="demo-sim")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-writer")
    try:
        scans: dict[int, Future[SimulatedScan]] = {
            n: sims.submit(_simulate_study, n, source, matrix)
            for n, study in enumerate(_STUDIES)
            if n > 0 and study.lesion_radius_mm <= 0
        }
        current = _simulate_study(0, source, matrix)
        lesion = current.params_used.get("lesion")
        center = tuple(lesion["center_lps"]) if lesion else None
        for n in range(1, len(_STUDIES)):
            if n not in scans:
                scans[n] = sims.submit(_simulate_study, n, source, matrix, center)
        written: list[tuple[Future[list[Path]], dict[str, Any] | None]] = []
        for n, study in enumerate(_STUDIES):
            scan = current if n == 0 else scans.pop(n).result()
            tick()
            target = folder / study.folder
            written.append(
                (
                    writer.submit(write_dicom_series, scan.volume, target, naming="index"),
                    scan.params_used.get("lesion"),
                )
            )
            del scan
        del current
        for n, (files_future, study_lesion) in enumerate(written):
            files = files_future.result()
            lesions.append(study_lesion)
            names.append(_STUDIES[n].folder)
            counts.append(len(files))
            tick()
            log.info("demo study %d/%d written (%d slices)", n + 1, len(_STUDIES), len(files))
    finally:
        # An error (or a stopped build): queued work is dropped, running work ends.
        sims.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
    marker = {
        "version": DEMO_VERSION,
        "source": source_name,
        "series": names,
        "n_files": counts,
        "lesions": lesions,  # per study, where the simulated lesion is (None: absent)
    }
    safe_write(folder / _MARKER, json.dumps(marker, indent=1).encode("utf-8"), overwrite=True)
