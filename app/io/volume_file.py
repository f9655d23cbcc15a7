"""NIfTI, NRRD and MetaImage volumes through SimpleITK.

ITK reports geometry in LPS already (it converts NIfTI's RAS), so origin,
spacing and direction are used as given; voxels become ``int16`` HU (floats
rounded, wider integers clipped).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from app.core.orientation import axis_permutation
from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.errors import LoadError, SkipFile
from app.io.records import FileProbe, SeriesRef

__all__ = ["VOLUME_SUFFIXES", "is_volume_file", "read_volume_header", "load_volume_file"]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(name: str) -> bool:
    """True when ``name`` ends with a volume-file suffix SimpleITK reads."""
    return name.lower().endswith(VOLUME_SUFFIXES)


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with the source location; the description is last.
    text = lines[-1] if lines else type(exc).__name__
    return text[:160]


def read_volume_header(probe: FileProbe) -> SeriesRef:
    """Read a volume file's header (no voxels) into a :class:`SeriesRef`.

    Raises
    ------
    SkipFile
        For unreadable files and images that are not one 3-D scalar volume.
    """
    if probe.size == 0:
        raise SkipFile("empty file (0 bytes)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(probe.path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise SkipFile(f"unreadable volume file ({_first_line(exc)})") from None
    size = reader.GetSize()
    if reader.GetNumberOfComponents() != 1:
        raise SkipFile("multi-component image (not a CT volume)")
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if len(size) != 3:
        raise SkipFile(f"{len(size)}-D image (a 3-D volume is needed)")
    direction = np.array(reader.GetDirection(), dtype=np.float64)[:9].reshape(3, 3)
    if len(reader.GetDirection()) != 9:
        direction = np.eye(3)
    perm, _ = axis_permutation(direction)
    stat = os.stat(probe.path)
    name = probe.path.name
    return SeriesRef(
        kind="volume",
        key=f"file:{probe.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
        # Volume files carry no patient or study data; the user chose them as CT.
        info=SeriesInfo(series_description=_stem(name), modality="CT"),
        n_slices=int(size[perm[2]]),
        source=str(probe.path),
        path=probe.path,
    )


def _to_hu(array: np.ndarray) -> np.ndarray:
    """Voxel values to int16 HU: floats rounded, out-of-range values clipped."""
    if array.dtype == np.int16:
        return np.array(array, copy=True)
    if np.issubdtype(array.dtype, np.floating):
        out = np.rint(array)
        np.clip(out, -32768, 32767, out=out)
        hu: np.ndarray = out.astype(np.int16)
        return hu
    info = np.iinfo(array.dtype)
    if info.min >= -32768 and info.max <= 32767:
        hu = array.astype(np.int16)
    else:
        hu = np.clip(array, -32768, 32767).astype(np.int16)
    return hu


def load_volume_file(
    ref: SeriesRef,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Volume:
    """Read a volume file's voxels (in file axes; display orientation is applied later)."""
    assert ref.path is not None
    if progress is not None:
        progress(0, 1)
    try:
        image = sitk.ReadImage(str(ref.path))
    except RuntimeError as exc:
        raise LoadError(f"could not read {ref.path.name}: {_first_line(exc)}") from None
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    view = sitk.GetArrayViewFromImage(image)
    if view.ndim != 3:
        raise LoadError(f"{ref.path.name} is not a 3-D volume")
    warnings = []
    if np.issubdtype(view.dtype, np.floating) and not np.all(np.isfinite(view)):
        warnings.append("non-finite voxel values were set to -1024 HU")
        view = np.where(np.isfinite(view), view, -1024.0)
    voxels = _to_hu(view)
    geometry = Geometry(
        origin=image.GetOrigin(),
        spacing=image.GetSpacing(),
        direction=np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3),
    )
    if progress is not None:
        progress(1, 1)
    return Volume(
        voxels=voxels, geometry=geometry, info=ref.info, source=ref.source, warnings=warnings
    )
