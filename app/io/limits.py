"""Size budgets checked before any pixels are decoded or allocated.

A file's header states how large its image is; a damaged or hostile file can
claim 65535 x 65535 pixels in 78 kB, and decoders (pylibjpeg, OpenJPEG,
SimpleITK) allocate what the header claims before they find out the data is
not there. Every reader therefore checks the declared size against these
budgets, and against what the file can physically hold, and refuses with a
reason instead.
"""

from __future__ import annotations

__all__ = [
    "MAX_FILE_DECODED_BYTES",
    "MAX_MATRIX",
    "MAX_SERIES_VOXELS",
    "RLE_MAX_RATIO",
    "check_series_memory",
    "format_bytes",
]

# Largest rows or columns of one image. CT is 512 or 1024 (2048 for micro-CT
# and some detectors); beyond 8192 a CT slice is not plausible.
MAX_MATRIX = 8192
# Largest decoded pixel data of one file (all frames of a multi-frame file are
# decoded at once by pydicom): 1 GiB is 2000 frames of 512 x 512 x 16 bit.
MAX_FILE_DECODED_BYTES = 1 << 30
# Largest loaded volume (int16 voxels): 2 GiB, e.g. 4000 slices of 512 x 512.
MAX_SERIES_VOXELS = 1 << 30
# DICOM RLE (PackBits per byte plane) turns at most 2 bytes into 128, so the
# decoded image is never more than 64 times the encoded data.
RLE_MAX_RATIO = 64
# A volume may take at most this share of the memory available when it is loaded.
_AVAILABLE_SHARE = 0.8


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 kB"``: sizes in user messages (binary units, one decimal)."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_series_memory(n_voxels: int, bytes_per_voxel: int = 2) -> str | None:
    """Why a volume of ``n_voxels`` cannot be loaded here, or None when it fits.

    Parameters
    ----------
    n_voxels
        Voxels of the volume to allocate.
    bytes_per_voxel
        Bytes each voxel takes while loading (2 for the int16 result).

    Returns
    -------
    str or None
        A user-facing reason (size needed and the budget), or None.
    """
    need = n_voxels * bytes_per_voxel
    if n_voxels > MAX_SERIES_VOXELS:
        return (
            f"too large: {format_bytes(need)} of voxels, more than the "
            f"{format_bytes(MAX_SERIES_VOXELS * bytes_per_voxel)} a series may take"
        )
    import psutil  # only when a volume is about to be allocated

    available = psutil.virtual_memory().available
    if need > _AVAILABLE_SHARE * available:
        return (
            f"too large for the free memory: {format_bytes(need)} needed, "
            f"{format_bytes(available)} available"
        )
    return None
