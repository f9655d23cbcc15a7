"""NIfTI, NRRD and MetaImage volumes through SimpleITK.

ITK reports geometry in LPS already (it converts NIfTI's RAS), so origin,
spacing and direction are used as given; voxels become ``int16`` HU (floats
rounded, wider integers clipped with a warning, NaN/inf set to air with a
warning). NIfTI headers are also read directly (:mod:`app.io.nifti_header`)
to refuse what SimpleITK would silently fill in.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np

from app.core.imaging import AIR_HU
from app.core.orientation import axis_permutation
from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.errors import LoadError, SkipFile
from app.io.limits import MAX_SERIES_VOXELS, check_series_memory
from app.io.nifti_header import nonfinite_voxels, read_nifti_header, stored_data_problem
from app.io.records import FileProbe, SeriesRef

__all__ = ["VOLUME_SUFFIXES", "is_volume_file", "read_volume_header", "load_volume_file"]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@functools.cache
def _sitk() -> ModuleType:
    """SimpleITK, imported on first use: DICOM-only runs never pay for its import."""
    import SimpleITK

    # ITK prints its warnings from C++ straight to stderr, past logging (e.g.
    # "unexpected scales in sform" for a NIfTI file this reader then refuses
    # with its own reason); every problem the readers know of becomes a
    # reason or a volume warning instead.
    SimpleITK.ProcessObject.SetGlobalWarningDisplay(False)
    return cast(ModuleType, SimpleITK)


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
    sitk = _sitk()
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
    n_voxels = math.prod(int(v) for v in size)
    if n_voxels > MAX_SERIES_VOXELS:
        raise SkipFile(
            f"too large: declares {'x'.join(map(str, size))} voxels "
            f"(at most {MAX_SERIES_VOXELS} are read)"
        )
    if probe.path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti(probe.path)
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


def _check_nifti(path: Path) -> None:
    """Refuse NIfTI files SimpleITK would read with invented voxels or geometry."""
    header = read_nifti_header(path)
    if header is None:
        return  # SimpleITK parsed it; nothing more is known
    problem = stored_data_problem(path, header)
    if problem is not None:
        raise SkipFile(problem)
    bad = [i + 1 for i, v in enumerate(header.pixdim[: len(header.dims)]) if not v > 0 or v != v]
    if bad or not all(math.isfinite(v) for v in header.pixdim[: len(header.dims)]):
        raise SkipFile(
            f"no voxel size in the NIfTI header (pixdim[{', '.join(map(str, bad))}] = "
            f"{', '.join(f'{header.pixdim[i - 1]:g}' for i in bad)}): the geometry is unknown"
        )


def _to_hu(array: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Voxel values to int16 HU: floats rounded; values beyond int16 clipped, with a warning."""
    if array.dtype == np.int16:
        return np.array(array, copy=True)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min >= -32768 and info.max <= 32767:
            return array.astype(np.int16)
    lo, hi = array.min(), array.max()
    if lo < -32768 or hi > 32767:
        n_out = int(np.count_nonzero((array < -32768) | (array > 32767)))
        warnings.append(
            f"{n_out} voxel(s) outside the int16 range ({lo:g} .. {hi:g}) were clipped to "
            "-32768 .. 32767"
        )
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


def _non_finite_warning(n: int) -> str:
    """The one message every reader gives for NaN/inf voxels (set to air)."""
    return f"{n} non-finite voxel value(s) (NaN or infinity) were set to {AIR_HU} HU (air)"


def load_volume_file(
    ref: SeriesRef,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Volume:
    """Read a volume file's voxels (in file axes; display orientation is applied later)."""
    assert ref.path is not None
    if progress is not None:
        progress(0, 1)
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(ref.path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise LoadError(f"could not read {ref.path.name}: {_first_line(exc)}") from None
    n_voxels = math.prod(int(v) for v in reader.GetSize()[:3])
    itemsize = max(2, sitk.GetArrayViewFromImage(sitk.Image([1, 1], reader.GetPixelID())).itemsize)
    # ITK's own buffer, its float copy for NaN handling and the int16 result.
    too_large = check_series_memory(n_voxels, bytes_per_voxel=2 * itemsize + 2)
    if too_large is not None:
        raise LoadError(f"{ref.path.name} is {too_large}")
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
    warnings: list[str] = []
    n_bad = 0
    if np.issubdtype(view.dtype, np.floating):
        finite = np.isfinite(view)
        if not finite.all():
            n_bad = int(finite.size - np.count_nonzero(finite))
            view = np.where(finite, view, float(AIR_HU))
    voxels = _to_hu(view, warnings)
    is_nifti = ref.path.name.lower().endswith((".nii", ".nii.gz"))
    header = read_nifti_header(ref.path) if is_nifti else None
    if header is not None:
        # SimpleITK has already turned NaN/inf into 0; find them in the raw data.
        bad = nonfinite_voxels(ref.path, header)
        bad = bad[bad < voxels.size]
        if bad.size:
            voxels.reshape(-1)[bad] = AIR_HU
            n_bad += int(bad.size)
    if n_bad:
        warnings.insert(0, _non_finite_warning(n_bad))
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
