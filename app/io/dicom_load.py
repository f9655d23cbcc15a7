"""Loading a scanned DICOM series into a :class:`Volume` (before display orientation).

Slices are ordered by their position along the slice normal (ImageOrientation
row x column direction, dotted with ImagePositionPatient); InstanceNumber and
file names are ignored because scanners and exporters get them wrong.

Pixels are decoded in parallel into one preallocated ``int16`` array. For
uncompressed little-endian 16-bit data, the scan already recorded where the
pixels start, so each slice is one ``readinto`` straight into the volume and
the modality LUT is applied in place; other syntaxes (JPEG Lossless, JPEG 2000,
RLE, deflate, big endian) go through pydicom's ``pixel_array`` and pylibjpeg.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
from pydicom import dcmread
from pydicom.uid import UID

from app.core.imaging import apply_rescale, rescale_in_place
from app.core.volume import Geometry, Volume
from app.io.bounded_pool import run_bounded
from app.io.dicom_header import human_reason
from app.io.dicom_series import slice_normal
from app.io.errors import LoadError
from app.io.limits import check_series_memory
from app.io.records import DicomSlice, PixelFormat, SeriesRef

__all__ = ["decode_reason", "load_dicom_series", "series_geometry", "io_workers"]

Progress = Callable[[int, int], None] | None

# Tolerances for geometry warnings.
GAP_FACTOR = 1.5  # a step this many times the median spacing means missing slices
UNEVEN_REL, UNEVEN_ABS_MM = 0.05, 0.05
TILT_DEG = 0.5


def io_workers() -> int:
    """Threads for file IO: reads release the GIL, so a few more than the cores."""
    return max(2, min(8, (os.cpu_count() or 2) + 2))


def series_geometry(slices: list[DicomSlice]) -> tuple[Geometry, np.ndarray, list[str]]:
    """Geometry, slice positions and warnings of slices already sorted along the normal.

    Spacing along the stack is the mean step (first to last slice), so the first
    and last slices are placed exactly even when slices are missing. A gantry
    tilt keeps the true, sheared geometry: the slice index axis follows the
    stacking direction instead of the plane normal.
    """
    iop = np.asarray(slices[0].orientation, dtype=np.float64)
    row_dir = iop[:3] / (np.linalg.norm(iop[:3]) or 1.0)
    col_dir = iop[3:] / (np.linalg.norm(iop[3:]) or 1.0)
    normal = slice_normal(iop)
    positions = np.array([s.position for s in slices], dtype=np.float64)
    row_spacing, col_spacing = slices[0].pixel_spacing
    warnings: list[str] = []
    n = len(slices)
    if n == 1:
        z_spacing = 1.0
        stack_dir = normal
        warnings.append("single slice: not a volume")
    else:
        z = positions @ normal
        steps = np.diff(z)
        median = float(np.median(steps))
        if median <= 1e-3:
            raise LoadError("slices of this series share one position: it is not a volume")
        gaps = steps > GAP_FACTOR * median
        if np.any(gaps):
            missing = int(sum(round(s / median) - 1 for s in steps[gaps]))
            where = ", ".join(f"{z[i]:.1f}" for i in np.flatnonzero(gaps)[:3])
            warnings.append(
                f"{max(missing, 1)} missing slice(s): gap(s) after z = {where} mm "
                f"(spacing {median:.2f} mm)"
            )
        regular = steps[~gaps]
        if regular.size and float(regular.max() - regular.min()) > max(
            UNEVEN_ABS_MM, UNEVEN_REL * median
        ):
            warnings.append(f"uneven slice spacing ({regular.min():.2f} to {regular.max():.2f} mm)")
        stack = positions[-1] - positions[0]
        length = float(np.linalg.norm(stack))
        z_spacing = length / (n - 1)
        stack_dir = stack / length
        tilt = float(np.degrees(np.arccos(np.clip(abs(stack_dir @ normal), 0.0, 1.0))))
        if tilt > TILT_DEG:
            warnings.append(f"gantry tilt of {tilt:.1f}°: slices are sheared, shown as acquired")
        else:
            # Straight stack: use the exact normal; the spacing is the step along it.
            z_spacing = float(z[-1] - z[0]) / (n - 1)
            stack_dir = normal
    geometry = Geometry(
        origin=positions[0],
        spacing=np.array([col_spacing, row_spacing, z_spacing]),
        direction=np.column_stack([row_dir, col_dir, stack_dir]),
    )
    return geometry, positions, warnings


class _Decoder:
    """Decodes the slices of one file into their rows of the output volume."""

    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def __call__(self, path: str, items: list[tuple[int, DicomSlice]]) -> int:
        pixel = items[0][1].pixel
        if self._fast(pixel):
            self._read_native(path, items)
        else:
            self._read_pydicom(path, items)
        return len(items)

    @staticmethod
    def _fast(pixel: PixelFormat) -> bool:
        return (
            pixel.offset is not None
            and pixel.bits_allocated == 16
            and pixel.samples_per_pixel == 1
            and sys.byteorder == "little"
        )

    def _read_native(self, path: str, items: list[tuple[int, DicomSlice]]) -> None:
        frame_bytes = items[0][1].pixel.rows * items[0][1].pixel.cols * 2
        with open(path, "rb", buffering=0) as f:
            for index, s in sorted(items, key=lambda it: it[1].frame):
                offset = s.pixel.offset
                assert offset is not None  # _fast() chose this path because it is known
                f.seek(offset + s.frame * frame_bytes)
                target = self.out[index]
                got = f.readinto(memoryview(target).cast("B"))
                if got != frame_bytes:
                    raise LoadError("file is truncated (it changed since it was scanned)")
                _rescale_in_place(target, s)

    def _read_pydicom(self, path: str, items: list[tuple[int, DicomSlice]]) -> None:
        pixel = items[0][1].pixel
        try:
            ds = dcmread(path)
            pixels = ds.pixel_array
        except Exception as exc:  # name the real cause, not "corrupt header"
            raise LoadError(decode_reason(exc, pixel.transfer_syntax)) from None
        if pixels.ndim == 2:
            pixels = pixels[np.newaxis]
        if pixels.shape[1:] != (pixel.rows, pixel.cols) or pixels.shape[0] < max(
            s.frame + 1 for _, s in items
        ):
            raise LoadError(
                f"decoded pixels ({'x'.join(map(str, pixels.shape))}) do not match the "
                f"header ({pixel.n_frames} frame(s) of {pixel.rows}x{pixel.cols})"
            )
        for index, s in items:
            self.out[index] = apply_rescale(pixels[s.frame], s.slope, s.intercept)


def decode_reason(exc: BaseException, transfer_syntax: str) -> str:
    """A user-facing reason for a failed pixel decode: codec, truncation or size.

    Parameters
    ----------
    exc
        What pydicom or its decoder plugin raised.
    transfer_syntax
        The file's transfer syntax UID (named in the reason).

    Returns
    -------
    str
        One line, no traceback and no patient data.
    """
    name = UID(transfer_syntax).name if transfer_syntax else "unknown transfer syntax"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lower = text.lower()
    if isinstance(exc, MemoryError):
        return f"too large to decode ({name})"
    if (
        isinstance(exc, NotImplementedError)
        or "no available plugin" in lower
        or ("unable to decompress" in lower or "not supported" in lower or "missing" in lower)
    ):
        return f"unsupported codec: {name} cannot be decoded here"
    if isinstance(exc, EOFError) or any(
        word in lower
        for word in (
            "truncat",
            "fragment",
            "end of",
            "insufficient",
            "too short",
            "no 'pixel data'",
        )
    ):
        return f"truncated or damaged pixel data ({name}: {text[:100]})"
    return f"pixel data could not be decoded ({name}: {text[:100]})"


def _rescale_in_place(target: np.ndarray, s: DicomSlice) -> None:
    """Turn raw stored values already in ``target`` (int16 memory) into HU, in place.

    The stored bits are unpacked here (sign extension, masking of unused high
    bits); :func:`app.core.imaging.rescale_in_place` does the modality LUT.
    """
    pixel = s.pixel
    bits = pixel.bits_stored
    if pixel.signed:
        stored = target
        if bits < 16:
            shift = 16 - bits  # sign-extend from BitsStored
            np.left_shift(stored, shift, out=stored)
            np.right_shift(stored, shift, out=stored)
    else:
        stored = target.view(np.uint16)
        if bits < 16:
            np.bitwise_and(stored, (1 << bits) - 1, out=stored)
    rescale_in_place(target, stored, s.slope, s.intercept)


def load_dicom_series(
    ref: SeriesRef, progress: Progress = None, cancel: threading.Event | None = None
) -> Volume:
    """Load a DICOM :class:`SeriesRef` into a volume in acquisition axes.

    Parameters
    ----------
    ref
        A ``kind == "dicom"`` series from :func:`app.io.scan.scan_paths`.
    progress
        Called with ``(slices_done, n_slices)`` from the calling thread.
    cancel
        When set, loading stops and :class:`~app.io.errors.Cancelled` is raised.

    Returns
    -------
    Volume
        Voxels sorted along the slice normal; not yet display-oriented.

    Raises
    ------
    LoadError
        When no slice could be decoded, or slices share one position.
    """
    if not ref.slices:
        raise LoadError("the series has no image slices")
    normal = slice_normal(ref.slices[0].orientation)
    slices = sorted(ref.slices, key=lambda s: float(np.dot(s.position, normal)))
    geometry, positions, warnings = series_geometry(slices)
    rows, cols = slices[0].pixel.rows, slices[0].pixel.cols
    too_large = check_series_memory(len(slices) * rows * cols)
    if too_large is not None:
        raise LoadError(f"{too_large} ({len(slices)} slices of {rows}x{cols})")
    out = np.empty((len(slices), rows, cols), dtype=np.int16)
    by_file: dict[str, list[tuple[int, DicomSlice]]] = defaultdict(list)
    for i, s in enumerate(slices):
        by_file[s.path].append((i, s))

    decoder = _Decoder(out)
    failed: dict[str, str] = {}
    done = 0
    total = len(slices)

    def on_result(path: str, fut: Future[int]) -> None:
        nonlocal done
        try:
            done += fut.result()
        except Exception as exc:  # one bad slice must not sink the series
            failed[path] = human_reason(exc)
            done += len(by_file[path])

    workers = io_workers()
    run_bounded(
        decoder,
        ((path, (path, items)) for path, items in by_file.items()),
        on_result,
        workers=workers,
        window=workers * 4,
        cancel=cancel,
        after_round=None if progress is None else lambda: progress(done, total),
        thread_name_prefix="dicom-load",
    )

    if failed:
        bad = np.array([s.path in failed for s in slices])
        if bad.all():
            first = next(iter(failed.values()))
            raise LoadError(f"none of the {len(slices)} slices could be decoded ({first})")
        keep = ~bad
        out = out[keep]
        slices = [s for s, k in zip(slices, keep, strict=True) if k]
        geometry, positions, warnings = series_geometry(slices)
        warnings.insert(0, f"{int(bad.sum())} slice(s) could not be decoded and were left out")
    return Volume(
        voxels=out,
        geometry=geometry,
        info=ref.info,
        slice_positions=positions,
        source=ref.source,
        warnings=[*ref.warnings, *warnings],
    )
