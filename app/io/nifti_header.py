"""The few NIfTI header fields SimpleITK hides, and the raw voxels' non-finite values.

SimpleITK (through niftilib) reads a header-only or truncated ``.nii``/``.nii.gz``
as zeros, turns a voxel size (``pixdim``) of 0 into 1 mm, and replaces NaN and
infinite voxels with 0 (soft tissue in HU), all without a word. This module
reads the NIfTI-1/NIfTI-2 header itself so the volume reader can refuse such
files, and finds the non-finite voxels in the raw data so they get the same
rule as every other reader (air, with a warning).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NiftiHeader", "nonfinite_voxels", "read_nifti_header", "stored_data_problem"]

# NIfTI datatype code -> numpy dtype character (complex and RGB types are not CT).
_DTYPES = {
    2: "u1",
    4: "i2",
    8: "i4",
    16: "f4",
    64: "f8",
    256: "i1",
    512: "u2",
    768: "u4",
    1024: "i8",
    1280: "u8",
}
_CHUNK = 16 << 20  # bytes per read when scanning raw voxels


@dataclass(frozen=True)
class NiftiHeader:
    """What the checks need from a NIfTI header.

    Attributes
    ----------
    dims
        Sizes of the used dimensions (``dim[1:dim[0]+1]``).
    pixdim
        Voxel sizes of the first three dimensions, as stored (mm for CT).
    dtype
        numpy dtype of the stored voxels (with the file's byte order), or None
        for types this reader does not check.
    vox_offset
        Byte offset of the voxel data in the (decompressed) file.
    gzipped
        True for ``.nii.gz``.
    """

    dims: tuple[int, ...]
    pixdim: tuple[float, float, float]
    dtype: np.dtype | None
    vox_offset: int
    gzipped: bool

    @property
    def data_bytes(self) -> int | None:
        """Bytes of voxel data the header declares (None for unknown types)."""
        if self.dtype is None:
            return None
        return math.prod(self.dims) * self.dtype.itemsize


def _head(path: Path, n: int) -> tuple[bytes, bool]:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as g:
            try:
                return g.read(n), True
            except (OSError, EOFError, zlib.error):
                return b"", True
    with open(path, "rb") as f:
        return f.read(n), False


def read_nifti_header(path: Path) -> NiftiHeader | None:
    """Parse a NIfTI-1 or NIfTI-2 header; None when ``path`` is not a readable NIfTI file."""
    data, gzipped = _head(path, 540)
    if len(data) < 348:
        return None
    for endian in "<>":
        (size,) = struct.unpack_from(endian + "i", data, 0)
        if size == 348:
            ndim = struct.unpack_from(endian + "h", data, 40)[0]
            dim = struct.unpack_from(endian + "8h", data, 40)
            datatype = struct.unpack_from(endian + "h", data, 70)[0]
            pixdim = struct.unpack_from(endian + "8f", data, 76)
            vox_offset = struct.unpack_from(endian + "f", data, 108)[0]
            break
        if size == 540 and len(data) >= 540:
            ndim = struct.unpack_from(endian + "q", data, 16)[0]
            dim = struct.unpack_from(endian + "8q", data, 16)
            datatype = struct.unpack_from(endian + "h", data, 12)[0]
            pixdim = struct.unpack_from(endian + "8d", data, 104)
            vox_offset = struct.unpack_from(endian + "q", data, 168)[0]
            break
    else:
        return None
    if not 1 <= ndim <= 7 or not math.isfinite(vox_offset):
        return None
    code = _DTYPES.get(datatype)
    return NiftiHeader(
        dims=tuple(int(d) for d in dim[1 : ndim + 1]),
        pixdim=(float(pixdim[1]), float(pixdim[2]), float(pixdim[3])),
        dtype=np.dtype(endian + code) if code else None,
        vox_offset=max(int(vox_offset), 348),
        gzipped=gzipped,
    )


def stored_data_problem(path: Path, header: NiftiHeader) -> str | None:
    """Why the file cannot hold the voxels its header declares, or None.

    An uncompressed file must be at least ``vox_offset + data`` bytes; a
    gzip file's trailer records the decompressed size (modulo 2**32), which a
    truncated or damaged file does not match.
    """
    if min(header.dims) < 1:
        return f"invalid NIfTI header: dimension sizes {'x'.join(map(str, header.dims))}"
    need = header.data_bytes
    if need is None:
        return None
    total = header.vox_offset + need
    size = path.stat().st_size
    if not header.gzipped:
        if size <= header.vox_offset:
            return "header only: the file holds no voxel data"
        if size < total:
            return f"file is truncated: it holds {size - header.vox_offset} of {need} voxel bytes"
        return None
    with open(path, "rb") as f:
        f.seek(max(size - 4, 0))
        trailer = f.read(4)
    if len(trailer) < 4 or struct.unpack("<I", trailer)[0] != total % (1 << 32):
        return "file is truncated or damaged: its gzip data do not hold the declared voxels"
    return None


def nonfinite_voxels(path: Path, header: NiftiHeader) -> np.ndarray:
    """Flat indices (in file order, x fastest) of NaN or infinite voxels of a float file.

    The data are read in chunks, so memory stays bounded whatever the volume's size.
    """
    if header.dtype is None or header.dtype.kind != "f":
        return np.empty(0, dtype=np.int64)
    itemsize = header.dtype.itemsize
    n_values = math.prod(header.dims)
    found: list[np.ndarray] = []
    opener = gzip.open if header.gzipped else open
    with opener(path, "rb") as f:
        f.seek(header.vox_offset)
        done = 0
        while done < n_values:
            chunk = f.read(min(_CHUNK, (n_values - done) * itemsize))
            usable = len(chunk) - len(chunk) % itemsize
            if usable == 0:
                break
            values = np.frombuffer(chunk[:usable], dtype=header.dtype)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                found.append(bad + done)
            done += values.size
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
