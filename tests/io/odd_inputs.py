"""Damaged and unusual inputs, made on the fly from small synthetic CT series.

Used by the per-item robustness tests and by the CLI fuzz test: every maker
writes one input (a file or a folder) under a given folder and returns its
path. Nothing here needs network or the shared data.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from io_helpers import make_volume
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.dicom_write import (
    ct_slice_dataset,
    write_dicom_series,
    write_enhanced_ct,
    write_volume_file,
)

Maker = Callable[[Path], Path]

# Base series: 24 axial slices of 64 x 64 at 5 mm (120 mm, enough to match).
BASE_SHAPE = (24, 64, 64)
BASE_SPACING = (5.0, 5.0, 5.0)


def base_volume(seed: int = 0, shape=BASE_SHAPE, spacing=BASE_SPACING) -> Volume:
    """A small CT-like volume (lungs, spine) used as the valid part of every input."""
    return make_volume(shape=shape, spacing=spacing, origin=(-160.0, -160.0, -60.0), seed=seed)


def series_folder(folder: Path, seed: int = 0, **kwargs) -> list[Path]:
    """Write the base volume as a DICOM series into ``folder``."""
    return write_dicom_series(base_volume(seed), folder, **kwargs)


def one_slice(folder: Path, transfer_syntax=ExplicitVRLittleEndian, name="slice.dcm") -> Path:
    """One valid slice file of the base volume (any writable transfer syntax)."""
    tmp = folder / f".{name}.d"
    paths = write_dicom_series(base_volume(), tmp, transfer_syntax=transfer_syntax)
    out = folder / name
    shutil.move(str(sorted(paths)[len(paths) // 2]), out)
    shutil.rmtree(tmp)
    return out


def truncated(src: Path, out: Path, keep: int) -> Path:
    """``src`` cut after ``keep`` bytes (negative: that many bytes short of the end)."""
    data = src.read_bytes()
    out.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])
    return out


def edited_slice(
    folder: Path, edit: Callable[[pydicom.Dataset], None], name: str, **write_kwargs
) -> Path:
    """One base slice (uncompressed) with ``edit`` applied to its dataset before writing."""
    vol = base_volume()
    ds = ct_slice_dataset(vol, BASE_SHAPE[0] // 2)
    edit(ds)
    out = folder / name
    ds.save_as(out, enforce_file_format=False, **write_kwargs)
    return out


def reencoded(src: Path, out: Path, edit: Callable[[pydicom.Dataset], None]) -> Path:
    """Read ``src``, ``edit`` the dataset (header only, pixels untouched), write ``out``."""
    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(out)
    return out


def with_header_size(src: Path, out: Path, rows: int, cols: int, frames: int | None = None) -> Path:
    """``src`` re-written claiming another matrix (and frame count): the data stay as they are."""

    def edit(ds: pydicom.Dataset) -> None:
        ds.Rows, ds.Columns = rows, cols
        if frames is not None:
            ds.NumberOfFrames = frames

    return reencoded(src, out, edit)


def deflated_series(folder: Path) -> Path:
    """The base series, every file rewritten in Deflated Explicit VR Little Endian."""
    for path in series_folder(folder):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path)
    return folder


def big_endian_series(folder: Path) -> Path:
    """The base series in Explicit VR Big Endian (pixels byte-swapped as the syntax says)."""
    for path in series_folder(folder):
        ds = pydicom.dcmread(path)
        pixels = np.frombuffer(ds.PixelData, dtype="<u2" if ds.PixelRepresentation == 0 else "<i2")
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return folder


def axial_plus_coronal(folder: Path, n_axial: int = 24) -> Path:
    """An axial series plus one 256 x 256 coronal key image stored under the same series UID."""
    vol = base_volume(shape=(n_axial, 64, 64))
    paths = write_dicom_series(vol, folder)
    series_uid = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
    coronal = np.column_stack([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    key = make_volume(
        shape=(1, 256, 256), spacing=(0.5, 0.5, 1.0), direction=coronal, origin=(-64, 0, 60)
    )
    ds = ct_slice_dataset(key, 0)
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.save_as(folder / "coronal_key.dcm")
    return folder


def two_reconstructions(folder: Path) -> Path:
    """A 1.5 mm and a 3 mm reconstruction of one body under one SeriesInstanceUID."""
    uid = generate_uid()
    thin = make_volume(shape=(40, 48, 48), spacing=(5.0, 5.0, 1.5), origin=(-120, -120, 0.0))
    thick = make_volume(shape=(20, 48, 48), spacing=(5.0, 5.0, 3.0), origin=(-120, -120, 0.75))
    thin = _with_info(thin, thickness=1.5, kernel="B30f")
    thick = _with_info(thick, thickness=3.0, kernel="B30f")
    write_dicom_series(thin, folder / "thin", series_uid=uid)
    write_dicom_series(thick, folder / "thick", series_uid=uid)
    return folder


def _with_info(vol: Volume, thickness: float, kernel: str) -> Volume:
    from dataclasses import replace

    return replace(
        vol, info=replace(vol.info, slice_thickness=thickness, convolution_kernel=kernel)
    )


def short_enhanced(folder: Path, n: int = 2) -> Path:
    """An Enhanced CT file of ``n`` slices (too short an extent to match)."""
    vol = base_volume(shape=(n, 64, 64))
    return write_enhanced_ct(vol, folder / "short_enhanced.dcm")


def nifti(
    folder: Path,
    name: str,
    voxels: np.ndarray,
    spacing=(5.0, 5.0, 5.0),
) -> Path:
    """A NIfTI file of ``voxels`` (any dtype SimpleITK writes)."""
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(spacing)
    out = folder / name
    sitk.WriteImage(image, str(out), useCompression=name.endswith(".gz"))
    return out


def nifti_from_base(folder: Path, name: str) -> Path:
    """The base volume as a NIfTI file."""
    return write_volume_file(base_volume(), folder / name)


def nifti_with_pixdim(src: Path, out: Path, pixdim: tuple[float, float, float]) -> Path:
    """An uncompressed NIfTI-1 copy of ``src`` with its voxel sizes overwritten."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<3f", data, 80, *pixdim)
    out.write_bytes(bytes(data))
    return out


def nifti_header_only(src: Path, out: Path) -> Path:
    """The first 352 bytes of an uncompressed NIfTI file: header, no voxels."""
    out.write_bytes(src.read_bytes()[:352])
    return out


def nifti_claiming(src: Path, out: Path, dims: tuple[int, int, int]) -> Path:
    """An uncompressed NIfTI-1 copy of ``src`` whose header claims other dimensions."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<4h", data, 40, 3, *dims)
    out.write_bytes(bytes(data))
    return out


def truncated_gzip(src: Path, out: Path, fraction: float = 0.5) -> Path:
    """A ``.nii.gz`` cut at ``fraction`` of its compressed length."""
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def gzip_of(data: bytes, out: Path) -> Path:
    """``data`` gzip-compressed to ``out``."""
    out.write_bytes(gzip.compress(data))
    return out


def rle_claiming_huge(folder: Path, name: str = "huge_rle.dcm", size: int = 65535) -> Path:
    """A small RLE file whose header claims ``size`` x ``size`` pixels."""
    src = one_slice(folder, RLELossless, name=f"src_{name}")
    out = with_header_size(src, folder / name, size, size)
    src.unlink()
    return out


def j2k_claiming_huge(folder: Path, name: str = "huge_j2k.dcm", size: int = 65535) -> Path:
    """A small JPEG 2000 file whose header claims ``size`` x ``size`` pixels."""
    src = one_slice(folder, JPEG2000Lossless, name=f"src_{name}")
    out = with_header_size(src, folder / name, size, size)
    src.unlink()
    return out


def enhanced_claiming_frames(folder: Path, frames: int, name: str) -> Path:
    """An RLE Enhanced CT file whose NumberOfFrames is ``frames`` (the data hold 4)."""
    vol = base_volume(shape=(4, 64, 64))
    src = write_enhanced_ct(vol, folder / f"src_{name}", transfer_syntax=RLELossless)
    out = reencoded(src, folder / name, lambda ds: setattr(ds, "NumberOfFrames", frames))
    src.unlink()
    return out


def dicomdir_folder(folder: Path, keep_images: bool = True) -> Path:
    """A pydicom FileSet (DICOMDIR plus images under PT*/ST*/SE*/) of the base series.

    Returns the DICOMDIR file; without ``keep_images`` the images are deleted.
    """
    from pydicom.fileset import FileSet

    staging = folder.parent / f".{folder.name}-staging"
    paths = series_folder(staging)
    fs = FileSet()
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.StudyID = "1"  # the STUDY record requires it
        fs.add(ds)
    fs.write(folder)
    # FileSet stages in a TemporaryDirectory it only removes when collected
    # (with a ResourceWarning, an error under pytest): remove it now.
    fs._stage["t"].cleanup()
    shutil.rmtree(staging)
    if not keep_images:
        for p in folder.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
    return folder / "DICOMDIR"


def with_unknown_charset(path: Path) -> Path:
    """``path`` rewritten to declare a character set no decoder knows (``ISO_IR 999``)."""
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.save_as(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ISO_IR 100", b"ISO_IR 999"))
    return path


def info_with(**kwargs) -> SeriesInfo:
    """Default synthetic series info with some fields changed."""
    from dataclasses import replace

    return replace(make_volume().info, **kwargs)


def volume_of(voxels: np.ndarray, spacing=(5.0, 5.0, 5.0)) -> Volume:
    """A display-oriented volume of the given voxels at the base origin."""
    return Volume(
        voxels=voxels,
        geometry=Geometry(origin=(-160.0, -160.0, -60.0), spacing=spacing, direction=np.eye(3)),
        info=make_volume().info,
    )
