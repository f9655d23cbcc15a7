"""Writing volumes as DICOM CT series and as single volume files.

The writer is used by the demo-data builder, the exporter and the tests (which
make every odd input they need from it). It produces standard CT Image Storage
objects, one file per slice, that SimpleITK/GDCM and pydicom both read, and an
Enhanced CT (multi-frame) variant. Compression goes through pydicom's encoders,
RLE Lossless (native) and JPEG 2000 Lossless (pylibjpeg-openjpeg), and, as
pydicom has no JPEG Lossless (process 14) encoder, through GDCM in SimpleITK
for JPEG Lossless SV1, the syntax most archives send.
"""

from __future__ import annotations

import datetime as _dt
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filereader import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_encoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    generate_uid,
)

from app.core.volume import Volume

__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "Naming",
    "ct_slice_dataset",
    "writable_transfer_syntaxes",
    "write_dicom_series",
    "write_enhanced_ct",
    "write_volume_file",
]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")

Naming = Literal["uid", "index", "none-ext", "random"]

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def writable_transfer_syntaxes() -> list[UID]:
    """Transfer syntaxes :func:`write_dicom_series` can produce in this installation."""
    out = [*_UNCOMPRESSED, JPEGLosslessSV1]
    for uid in (UID("1.2.840.10008.1.2.5"), UID("1.2.840.10008.1.2.4.90")):
        if get_encoder(uid).is_available:
            out.append(uid)
    return out


def _fmt(value: float) -> str:
    """Decimal String value: at most 16 characters, no needless digits."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{value:.9g}"
    return text


def _stored_values(
    hu: np.ndarray, slope: float, intercept: float, signed: bool | None
) -> tuple[np.ndarray, float, bool]:
    """HU to stored pixel values; returns ``(stored, intercept, signed)``.

    Falls back to intercept 0 with signed storage when HU - intercept fits
    neither uint16 nor int16 (only for volumes spanning almost the full int16
    range), so any int16 volume can be written losslessly.
    """
    scaled = (hu.astype(np.float64) - intercept) / slope
    if not np.array_equal(scaled, np.rint(scaled)):
        raise ValueError(
            f"HU values are not representable with slope {slope} and intercept {intercept}"
        )
    lo, hi = float(scaled.min(initial=0.0)), float(scaled.max(initial=0.0))
    fits_unsigned = lo >= 0 and hi <= 65535
    fits_signed = lo >= -32768 and hi <= 32767
    if signed is None:
        signed = not fits_unsigned
    if (signed and not fits_signed) or (not signed and not fits_unsigned):
        if slope != 1:
            raise ValueError("HU range does not fit 16-bit stored values with this slope")
        return hu.astype(np.int16), 0.0, True
    return scaled.astype(np.int16 if signed else np.uint16), intercept, signed


def _file_meta(sop_class: UID, sop_instance: UID, transfer_syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common_dataset(volume: Volume, uids: dict[str, str], sop_class: UID) -> Dataset:
    """Patient, study, series, frame-of-reference and equipment modules."""
    info = volume.info
    now = _dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names may hold any script
    ds.SOPClassUID = sop_class
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.patient_birth_date
    ds.PatientSex = ""
    ds.StudyInstanceUID = uids["study"]
    ds.StudyDate = info.study_date
    ds.StudyTime = info.study_time
    ds.StudyDescription = info.study_description
    ds.StudyID = ""
    ds.AccessionNumber = info.accession_number
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = uids["series"]
    ds.SeriesNumber = info.series_number if info.series_number is not None else 1
    ds.SeriesDescription = info.series_description
    ds.Modality = info.modality or "CT"
    ds.BodyPartExamined = info.body_part
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = uids["for"]
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = info.manufacturer or "PriorSync"
    ds.ConvolutionKernel = info.convolution_kernel
    ds.ContentDate = info.study_date or now.strftime("%Y%m%d")
    ds.ContentTime = info.study_time or now.strftime("%H%M%S")
    ds.KVP = ""
    ds.AcquisitionNumber = 1
    return ds


def _uids(
    volume: Volume, study_uid: str | None, series_uid: str | None, for_uid: str | None
) -> dict[str, str]:
    info = volume.info
    return {
        "study": study_uid or info.study_uid or generate_uid(),
        "series": series_uid or info.series_uid or generate_uid(),
        "for": for_uid or info.frame_of_reference_uid or generate_uid(),
    }


def _set_pixel_module(ds: Dataset, rows: int, cols: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0


def _encode_jpeg_lossless(ds: Dataset, pixels: np.ndarray) -> None:
    """JPEG Lossless SV1 through GDCM (SimpleITK), as pydicom has no such encoder.

    GDCM writes a throw-away single-frame file; its encapsulated pixel data
    (the same stored values, same signedness) is moved into ``ds``.
    """
    frames = pixels.reshape(-1, *pixels.shape[-2:])
    encoded: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="priorsync-jpeg-") as tmp:
        for i, frame in enumerate(frames):
            target = Path(tmp) / f"{i}.dcm"
            writer = sitk.ImageFileWriter()
            writer.SetFileName(str(target))
            writer.SetUseCompression(True)
            writer.SetCompressor("JPEG")
            writer.Execute(sitk.GetImageFromArray(np.ascontiguousarray(frame)))
            src = dcmread(target)
            if src.file_meta.TransferSyntaxUID != JPEGLosslessSV1:
                raise ValueError("GDCM did not produce JPEG Lossless SV1 data")
            encoded.extend(generate_frames(src.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"


def _encode(ds: Dataset, pixels: np.ndarray, transfer_syntax: UID) -> None:
    """Store ``pixels`` in ``ds`` using ``transfer_syntax`` (compressing if needed)."""
    if transfer_syntax in _UNCOMPRESSED:
        ds.PixelData = np.ascontiguousarray(pixels).astype("<" + pixels.dtype.str[1:]).tobytes()
        return
    if transfer_syntax == JPEGLosslessSV1:
        _encode_jpeg_lossless(ds, pixels)
        return
    if transfer_syntax == JPEG2000Lossless and min(pixels.shape[-2:]) < 32:
        # OpenJPEG encodes with 6 wavelet resolutions, which needs 2**5 pixels per side.
        raise ValueError("JPEG 2000 encoding needs images of at least 32 x 32 pixels")
    if not get_encoder(transfer_syntax).is_available:
        raise ValueError(f"cannot write transfer syntax {transfer_syntax.name!r}: no encoder")
    # generate_instance_uid=False: the SOP Instance UID identifies the slice, not the encoding.
    ds.compress(transfer_syntax, np.ascontiguousarray(pixels), generate_instance_uid=False)


def _orientation(volume: Volume) -> list[str]:
    d = volume.geometry.direction
    return [_fmt(v) for v in (*d[:, 0], *d[:, 1])]


def ct_slice_dataset(
    volume: Volume,
    k: int,
    *,
    uids: dict[str, str] | None = None,
    instance_number: int | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    signed: bool | None = None,
) -> Dataset:
    """The CT Image Storage dataset of slice ``k`` (uncompressed, with file meta).

    Parameters
    ----------
    volume
        Source volume; slice ``k``'s position comes from ``volume.slice_positions``.
    k
        Slice index.
    uids
        ``{"study", "series", "for"}`` UIDs; defaults to the volume's own or new ones.
    instance_number
        InstanceNumber to write (default ``k + 1``).
    rescale_slope, rescale_intercept
        Modality LUT; stored = (HU - intercept) / slope must be integral.
    signed
        Force signed (True) or unsigned (False) stored values; None picks
        unsigned when the stored values fit.

    Returns
    -------
    Dataset
        Ready for :func:`pydicom.dcmwrite`; tests alter it to make odd files.
    """
    uids = uids or _uids(volume, None, None, None)
    g = volume.geometry
    stored, intercept, is_signed = _stored_values(
        volume.voxels[k], rescale_slope, rescale_intercept, signed
    )
    sop_uid = generate_uid()
    ds = _common_dataset(volume, uids, CT_IMAGE_STORAGE)
    ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid, ExplicitVRLittleEndian)
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = instance_number if instance_number is not None else k + 1
    ds.ImagePositionPatient = [_fmt(v) for v in volume.slice_positions[k]]
    ds.ImageOrientationPatient = _orientation(volume)
    ds.PixelSpacing = [_fmt(g.spacing[1]), _fmt(g.spacing[0])]  # row spacing, column spacing
    thickness = volume.info.slice_thickness
    ds.SliceThickness = _fmt(thickness if thickness is not None else g.spacing[2])
    ds.SliceLocation = _fmt(float(volume.slice_positions[k] @ g.normal))
    _set_pixel_module(ds, stored.shape[0], stored.shape[1], is_signed)
    ds.RescaleIntercept = _fmt(intercept)
    ds.RescaleSlope = _fmt(rescale_slope)
    ds.RescaleType = "HU"
    ds.PixelData = stored.astype("<" + stored.dtype.str[1:]).tobytes()
    return ds


def _file_name(naming: Naming, index: int, sop_uid: str) -> str:
    if naming == "uid":
        return f"{sop_uid}.dcm"
    if naming == "index":
        return f"{index:05d}.dcm"
    if naming == "none-ext":
        return f"IM{index:05d}"
    if naming == "random":
        return secrets.token_hex(8)
    raise ValueError(f"unknown naming {naming!r}")


def write_dicom_series(
    volume: Volume,
    folder: Path | str,
    *,
    transfer_syntax: UID | str = ExplicitVRLittleEndian,
    naming: Naming = "uid",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    shuffle: bool = False,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    signed: bool | None = None,
    rng: np.random.Generator | None = None,
) -> list[Path]:
    """Write ``volume`` as a CT Image Storage series, one file per slice.

    Parameters
    ----------
    volume
        Volume to write. ImagePositionPatient comes from ``slice_positions``,
        ImageOrientationPatient from the first two direction columns.
    folder
        Output folder (created if needed).
    transfer_syntax
        Explicit/Implicit VR Little Endian, RLE Lossless or JPEG 2000 Lossless
        JPEG Lossless SV1 (see :func:`writable_transfer_syntaxes`).
    naming
        File names: ``"uid"`` (SOP Instance UID + .dcm), ``"index"`` (00001.dcm),
        ``"none-ext"`` (IM00001, no extension) or ``"random"`` (hex, no extension).
    study_uid, series_uid, frame_of_reference_uid
        UIDs to use; default the volume's own, or new ones when empty.
    shuffle
        Assign InstanceNumbers (and file-name indices) in random order, so
        readers that sort by either instead of position fail visibly.
    rescale_slope, rescale_intercept
        Modality LUT written to every slice.
    signed
        Force signed/unsigned stored values (default: unsigned when they fit).
    rng
        Random generator for ``shuffle`` and ``"random"`` naming.

    Returns
    -------
    list of Path
        Written files, in slice order of ``volume``.
    """
    transfer_syntax = UID(str(transfer_syntax))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = rng or np.random.default_rng()
    uids = _uids(volume, study_uid, series_uid, frame_of_reference_uid)
    n = volume.n_slices
    order = rng.permutation(n) if shuffle else np.arange(n)
    paths: list[Path] = []
    for k in range(n):
        number = int(order[k]) + 1
        ds = ct_slice_dataset(
            volume,
            k,
            uids=uids,
            instance_number=number,
            rescale_slope=rescale_slope,
            rescale_intercept=rescale_intercept,
            signed=signed,
        )
        if transfer_syntax != ExplicitVRLittleEndian:
            dtype = "<i2" if ds.PixelRepresentation else "<u2"
            stored = np.frombuffer(ds.PixelData, dtype=dtype).reshape(ds.Rows, ds.Columns)
            _encode(ds, stored, transfer_syntax)
            ds.file_meta.TransferSyntaxUID = transfer_syntax
        path = folder / _file_name(naming, number, ds.SOPInstanceUID)
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_ct(
    volume: Volume,
    path: Path | str,
    *,
    transfer_syntax: UID | str = ExplicitVRLittleEndian,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    frame_order: Sequence[int] | None = None,
) -> Path:
    """Write ``volume`` as one multi-frame Enhanced CT Image Storage file.

    Orientation, pixel spacing and the modality LUT go in the shared functional
    groups; each frame's ImagePositionPatient in the per-frame groups.

    Parameters
    ----------
    volume, transfer_syntax, study_uid, series_uid, frame_of_reference_uid,
    rescale_slope, rescale_intercept
        As for :func:`write_dicom_series`.
    path
        Output file.
    frame_order
        Slice index stored in each frame (default: slice order); lets tests
        store frames out of anatomical order.

    Returns
    -------
    Path
        The written file.
    """
    transfer_syntax = UID(str(transfer_syntax))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    uids = _uids(volume, study_uid, series_uid, frame_of_reference_uid)
    order = list(range(volume.n_slices)) if frame_order is None else [int(i) for i in frame_order]
    g = volume.geometry
    stored, intercept, signed = _stored_values(
        volume.voxels[order], rescale_slope, rescale_intercept, None
    )
    sop_uid = generate_uid()
    ds = _common_dataset(volume, uids, ENHANCED_CT_IMAGE_STORAGE)
    ds.file_meta = _file_meta(ENHANCED_CT_IMAGE_STORAGE, sop_uid, ExplicitVRLittleEndian)
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    ds.ContentQualification = "PRODUCT"
    ds.BurnedInAnnotation = "NO"
    _set_pixel_module(ds, stored.shape[1], stored.shape[2], signed)

    measures = Dataset()
    measures.PixelSpacing = [_fmt(g.spacing[1]), _fmt(g.spacing[0])]
    thickness = volume.info.slice_thickness
    measures.SliceThickness = _fmt(thickness if thickness is not None else g.spacing[2])
    plane = Dataset()
    plane.ImageOrientationPatient = _orientation(volume)
    lut = Dataset()
    lut.RescaleIntercept = _fmt(intercept)
    lut.RescaleSlope = _fmt(rescale_slope)
    lut.RescaleType = "HU"
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([plane])
    shared.PixelValueTransformationSequence = DicomSequence([lut])
    shared.CTImageFrameTypeSequence = DicomSequence([frame_type])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    for stack_pos, k in enumerate(order, start=1):
        position = Dataset()
        position.ImagePositionPatient = [_fmt(v) for v in volume.slice_positions[k]]
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = stack_pos
        content.DimensionIndexValues = [1, stack_pos]
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([position])
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    dim_org = Dataset()
    dim_org.DimensionOrganizationUID = generate_uid()
    ds.DimensionOrganizationSequence = DicomSequence([dim_org])
    dims = []
    for pointer, group in ((0x00209056, 0x00209111), (0x00209057, 0x00209111)):
        d = Dataset()
        d.DimensionOrganizationUID = dim_org.DimensionOrganizationUID
        d.DimensionIndexPointer = pointer
        d.FunctionalGroupPointer = group
        dims.append(d)
    ds.DimensionIndexSequence = DicomSequence(dims)

    ds.PixelData = stored.astype("<" + stored.dtype.str[1:]).tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        _encode(ds, stored, transfer_syntax)
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_volume_file(volume: Volume, path: Path | str) -> Path:
    """Write ``volume`` as NIfTI, NRRD or MetaImage (chosen by the file suffix).

    Geometry is written as stored (origin, spacing, direction in LPS, which is
    what ITK uses); uneven DICOM slice positions are not representable and the
    mean spacing is kept.

    Parameters
    ----------
    volume
        Volume to write (voxels int16 HU).
    path
        Target file; ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd``.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(_VOLUME_SUFFIXES):
        raise ValueError(f"unsupported volume file type: {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels, dtype=np.int16))
    g = volume.geometry
    image.SetOrigin(tuple(float(v) for v in g.origin))
    image.SetSpacing(tuple(float(v) for v in g.spacing))
    image.SetDirection(tuple(float(v) for v in g.direction.reshape(-1)))
    sitk.WriteImage(image, str(path), useCompression=name.endswith((".nii.gz", ".nrrd", ".mha")))
    return path
