"""Grouping DICOM image headers into loadable series.

Files are grouped by SeriesInstanceUID, then split by matrix size, pixel
spacing, orientation, slice thickness and convolution kernel (as mature
viewers split two reconstructions stored under one UID), so that a stray slice (a scout stored in the axial
series, a lone slice at another matrix) is skipped with its reason instead of
making the whole series unloadable. Large enough subgroups (a second
reconstruction stored under the same UID) become series of their own.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.core.orientation import axis_permutation
from app.core.volume import SeriesInfo
from app.io.dicom_header import DicomHeader
from app.io.records import DicomSlice, SeriesRef, SkippedFile

__all__ = ["MIN_SPLIT_SLICES", "build_dicom_series", "slice_normal"]

# A subgroup with fewer slices than this is treated as stray files, not a series.
MIN_SPLIT_SLICES = 3
_ORIENTATION_TOL = 1e-3  # direction cosine difference still counted as "same plane"


def slice_normal(orientation: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Unit normal (row direction x column direction) of an ImageOrientationPatient."""
    iop = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _frame_key(s: DicomSlice) -> tuple[object, ...]:
    return (
        s.pixel.rows,
        s.pixel.cols,
        round(s.pixel_spacing[0], 3),
        round(s.pixel_spacing[1], 3),
        None if s.thickness is None else round(s.thickness, 2),
        s.kernel.upper(),
    )


def _same_orientation(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < _ORIENTATION_TOL


def _subgroups(slices: list[DicomSlice]) -> list[list[DicomSlice]]:
    """Split by matrix/spacing and orientation; largest first."""
    groups: list[tuple[tuple[object, ...], tuple[float, ...], list[DicomSlice]]] = []
    for s in slices:
        key = _frame_key(s)
        for gkey, orient, members in groups:
            if gkey == key and _same_orientation(orient, s.orientation):
                members.append(s)
                break
        else:
            groups.append((key, s.orientation, [s]))
    return [m for _, _, m in sorted(groups, key=lambda g: -len(g[2]))]


def _stray_reason(stray: DicomSlice, main: DicomSlice) -> str:
    if not _same_orientation(stray.orientation, main.orientation):
        return "orientation differs from the rest of its series (scout or reformat)"
    if (stray.pixel.rows, stray.pixel.cols) != (main.pixel.rows, main.pixel.cols):
        return (
            f"matrix size {stray.pixel.rows}x{stray.pixel.cols} differs from its series' "
            f"{main.pixel.rows}x{main.pixel.cols}"
        )
    if stray.pixel_spacing != main.pixel_spacing:
        return "pixel spacing differs from the rest of its series"
    if stray.thickness != main.thickness:
        return (
            f"slice thickness {stray.thickness} mm differs from its series' {main.thickness} mm "
            "(another reconstruction)"
        )
    return (
        f"convolution kernel {stray.kernel or '(none)'} differs from its series' "
        f"{main.kernel or '(none)'} (another reconstruction)"
    )


def _split_duplicates(
    members: list[DicomSlice], acquisition: dict[str, int | None]
) -> tuple[list[list[DicomSlice]], list[tuple[DicomSlice, str]]]:
    """Separate slices that repeat a position (several acquisitions in one series)."""
    normal = slice_normal(members[0].orientation)
    z = np.round(np.array([s.position for s in members]) @ normal, 2)
    if len(np.unique(z)) == len(members):
        return [members], []
    by_acq: dict[int | None, list[DicomSlice]] = defaultdict(list)
    for s in members:
        by_acq[acquisition.get(s.path)].append(s)
    if len(by_acq) > 1 and all(_unique_positions(g, normal) for g in by_acq.values()):
        return sorted(by_acq.values(), key=len, reverse=True), []
    # Keep one slice per position (lowest InstanceNumber); the rest are duplicates.
    keep: dict[float, DicomSlice] = {}
    dropped = []
    order = sorted(
        range(len(members)), key=lambda i: (members[i].instance_number or 0, members[i].path)
    )
    for i in order:
        if z[i] in keep:
            dropped.append((members[i], "same position as another slice of its series"))
        else:
            keep[z[i]] = members[i]
    return [list(keep.values())], dropped


def _unique_positions(group: list[DicomSlice], normal: np.ndarray) -> bool:
    z = np.round(np.array([s.position for s in group]) @ normal, 2)
    return len(np.unique(z)) == len(group)


def _display_slice_count(members: list[DicomSlice]) -> int:
    """Slices along the patient's head-foot axis once shown in display orientation."""
    iop = np.asarray(members[0].orientation)
    direction = np.column_stack([iop[:3], iop[3:], slice_normal(iop)])
    perm, _ = axis_permutation(direction)
    return (members[0].pixel.cols, members[0].pixel.rows, len(members))[perm[2]]


def _part_info(info: SeriesInfo, first: DicomSlice, split: bool) -> SeriesInfo:
    """Series metadata of one part: its own thickness and kernel when a UID was split."""
    if not split:
        return info
    return replace(
        info,
        slice_thickness=first.thickness,
        convolution_kernel=first.kernel or info.convolution_kernel,
    )


def _series_key(series_uid: str, members: list[DicomSlice]) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for uid, frame in sorted((s.sop_instance_uid, s.frame) for s in members):
        digest.update(f"{uid}/{frame};".encode())
    return f"dicom:{series_uid}:{digest.hexdigest()[:12]}"


def build_dicom_series(headers: list[DicomHeader]) -> tuple[list[SeriesRef], list[SkippedFile]]:
    """Group image headers into :class:`SeriesRef` objects.

    Parameters
    ----------
    headers
        Headers of usable image files (in a stable order, e.g. by path).

    Returns
    -------
    series, skipped
        The series found, and the files left out with the reason.
    """
    skipped: list[SkippedFile] = []
    seen_instances: set[tuple[str, int]] = set()
    by_series: dict[str, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        first = h.slices[0]
        if (first.sop_instance_uid, first.frame) in seen_instances and first.sop_instance_uid:
            skipped.append(
                SkippedFile(Path(h.path), "duplicate of another file (same SOP Instance UID)")
            )
            continue
        seen_instances.add((first.sop_instance_uid, first.frame))
        # Files without a series UID are grouped per folder, the best guess left.
        by_series[h.series_uid or f"folder:{os.path.dirname(h.path)}"].append(h)

    refs: list[SeriesRef] = []
    for series_uid, group in by_series.items():
        acquisition = {h.path: h.acquisition_number for h in group}
        slices = [s for h in group for s in h.slices]
        parts = _subgroups(slices)
        main, rest = parts[0], parts[1:]
        kept = [main]
        n_stray = 0
        for part in rest:
            if len(part) >= MIN_SPLIT_SLICES:
                kept.append(part)
            else:
                reason = _stray_reason(part[0], main[0])
                n_stray += len(part)
                skipped.extend(
                    SkippedFile(Path(p), reason) for p in dict.fromkeys(s.path for s in part)
                )
        for part in kept:
            info = _part_info(group[0].info, part[0], len(kept) > 1)
            volumes, dropped = _split_duplicates(part, acquisition)
            n_dup = len(dropped)
            skipped.extend(SkippedFile(Path(s.path), reason) for s, reason in dropped)
            for members in volumes:
                warnings = []
                if info.modality and info.modality != "CT":
                    warnings.append(
                        f"modality {info.modality} is not CT: HU windows and anatomical "
                        "sync may not apply"
                    )
                if n_stray or n_dup:
                    warnings.append(
                        f"{n_stray + n_dup} file(s) of this series were left out "
                        "(see the skipped files)"
                    )
                normal = slice_normal(members[0].orientation)
                members = sorted(members, key=lambda s: float(np.dot(s.position, normal)))
                paths = [s.path for s in members]
                refs.append(
                    SeriesRef(
                        kind="dicom",
                        key=_series_key(series_uid, members),
                        info=info,
                        n_slices=_display_slice_count(members),
                        source=os.path.commonpath(paths)
                        if len(set(paths)) > 1
                        else os.path.dirname(paths[0]),
                        warnings=tuple(warnings),
                        slices=tuple(members),
                    )
                )
    return refs, skipped
