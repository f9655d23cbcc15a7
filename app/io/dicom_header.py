"""Identifying DICOM files and reading one file's header into image-plane records.

Reading is tuned for scanning hundreds of files: the scanner reads the first
64 KiB of each file once; the header is parsed from that buffer with
``stop_before_pixels`` (falling back to the whole file only when the header is
longer), and the handful of attributes needed are decoded from their raw
bytes instead of through pydicom's value conversion, which costs more than
the parse itself. The byte offset of native pixel data is recorded so that
loading reads pixels straight into the volume without parsing again.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.core.volume import SeriesInfo
from app.io.errors import LoadError, SkipFile
from app.io.limits import MAX_FILE_DECODED_BYTES, MAX_MATRIX, RLE_MAX_RATIO, format_bytes
from app.io.records import DicomSlice, FileProbe, PixelFormat

__all__ = [
    "HEAD_BYTES",
    "DicomHeader",
    "human_reason",
    "looks_like_dicom",
    "read_dicom_header",
    "read_head",
]

HEAD_BYTES = 64 * 1024

# Modalities whose objects are not images even when they carry pixel data.
NON_IMAGE_MODALITIES = {
    "SR": "structured report",
    "RTSTRUCT": "RT structure set",
    "RTPLAN": "RT plan",
    "RTDOSE": "RT dose grid",
    "RTRECORD": "RT treatment record",
    "PR": "presentation state",
    "KO": "key object selection",
    "SEG": "segmentation",
    "REG": "registration",
    "DOC": "encapsulated document",
}

_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# Uncompressed syntaxes, whose pixel data length the header fixes exactly
# (deflate compresses the whole dataset, so its inflated pixel data is native).
_NATIVE_SYNTAXES = {*_NATIVE_LITTLE_ENDIAN, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_RLE_LOSSLESS = "1.2.840.10008.1.2.5"
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_PIXEL_DATA = 0x7FE00010
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


class DicomHeader:
    """The usable part of one DICOM image file's header.

    Attributes
    ----------
    path, series_uid, sop_class_uid, modality, image_type
        As in the file.
    slices
        One :class:`DicomSlice` per frame.
    info
        Series metadata taken from this file.
    acquisition_number
        Used to split series that repeat positions (several acquisitions).
    """

    __slots__ = (
        "path",
        "series_uid",
        "sop_class_uid",
        "modality",
        "image_type",
        "slices",
        "info",
        "acquisition_number",
    )

    def __init__(
        self,
        path: str,
        series_uid: str,
        sop_class_uid: str,
        modality: str,
        image_type: tuple[str, ...],
        slices: tuple[DicomSlice, ...],
        info: SeriesInfo,
        acquisition_number: int | None,
    ) -> None:
        self.path = path
        self.series_uid = series_uid
        self.sop_class_uid = sop_class_uid
        self.modality = modality
        self.image_type = image_type
        self.slices = slices
        self.info = info
        self.acquisition_number = acquisition_number


def looks_like_dicom(head: bytes) -> bool:
    """True for a Part 10 file (``DICM`` after the preamble) or a bare dataset.

    Bare datasets (no preamble, as old archives and some modalities write) are
    recognised by a first element in group 0002 or 0008 with a plausible VR or
    length, which text, PNG and other common files never have.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, elem = struct.unpack_from("<HH", head)
    if group not in (0x0002, 0x0008) or elem > 0x0020:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack_from("<I", head, 4)
    return bool(length < 1024)


def human_reason(exc: BaseException) -> str:
    """A short user-facing reason for a parse failure (no tracebacks, no patient data)."""
    if isinstance(exc, SkipFile | LoadError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "too large: not enough memory to read it"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, InvalidDicomError):
        return "not a DICOM file"
    if isinstance(exc, EOFError | struct.error):
        return "file is truncated or corrupt (ends inside a header element)"
    if isinstance(exc, OSError):
        return f"could not be read ({exc.strerror or type(exc).__name__})"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if len(text) > 120:
        text = text[:117] + "..."
    return f"corrupt DICOM header ({text})"


# --- raw attribute access -------------------------------------------------------------

_T = {
    name: Tag(name)
    for name in (
        "SpecificCharacterSet",
        "ImageType",
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "Modality",
        "Manufacturer",
        "StudyDescription",
        "SeriesDescription",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "BodyPartExamined",
        "SliceThickness",
        "ConvolutionKernel",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SeriesNumber",
        "AcquisitionNumber",
        "InstanceNumber",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "FrameOfReferenceUID",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "PixelSpacing",
        "BitsAllocated",
        "BitsStored",
        "PixelRepresentation",
        "RescaleIntercept",
        "RescaleSlope",
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
        "DirectoryRecordSequence",
    )
}


def _raw_bytes(ds: Dataset, name: str) -> bytes | None:
    """Undecoded value bytes, or None when absent/empty or already converted."""
    elem = ds.get_item(_T[name]) if _T[name] in ds else None
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        return elem.value or None
    return None


def _text(ds: Dataset, name: str) -> str:
    raw = _raw_bytes(ds, name)
    if raw is not None and raw.isascii():
        return raw.decode("ascii").strip(" \x00")
    # Non-ASCII text (names in other scripts) needs the character set: let pydicom decode.
    value = ds.get(name)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _texts(ds: Dataset, name: str) -> tuple[str, ...]:
    text = _text(ds, name)
    return tuple(p.strip().upper() for p in text.split("\\")) if text else ()


def _floats(ds: Dataset, name: str) -> tuple[float, ...] | None:
    raw = _raw_bytes(ds, name)
    if raw is not None:
        try:
            return tuple(float(p) for p in raw.strip(b" \x00").split(b"\\"))
        except ValueError:
            raise SkipFile(f"invalid {name} value") from None
    value = ds.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str | bytes | int | float) or not hasattr(value, "__iter__"):
            return (float(value),)
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SkipFile(f"invalid {name} value") from None


@overload
def _float(ds: Dataset, name: str, default: float) -> float: ...
@overload
def _float(ds: Dataset, name: str, default: None = None) -> float | None: ...
def _float(ds: Dataset, name: str, default: float | None = None) -> float | None:
    values = _floats(ds, name)
    return values[0] if values else default


def _int_string(ds: Dataset, name: str) -> int | None:
    """An IS attribute; malformed values count as absent (they are informative only)."""
    raw = _raw_bytes(ds, name)
    if raw is not None:
        try:
            return int(float(raw.strip(b" \x00").split(b"\\")[0]))
        except ValueError:
            return None
    value = ds.get(name)
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _ushort(ds: Dataset, name: str) -> int | None:
    elem = ds.get_item(_T[name]) if _T[name] in ds else None
    if isinstance(elem, RawDataElement) and elem.value and len(elem.value) >= 2:
        return struct.unpack_from("<H" if elem.is_little_endian else ">H", elem.value)[0]
    value = ds.get(name)
    return None if value is None or value == "" else int(value)


# --- functional groups (Enhanced multi-frame) ------------------------------------------


def _group_value(item: Dataset | None, shared: Dataset | None, seq: str, attr: str) -> Any:
    """``attr`` of the per-frame item's ``seq``, else of the shared one's."""
    for source in (item, shared):
        if source is None:
            continue
        group = source.get(seq)
        if group:
            value = group[0].get(attr)
            if value is not None and value != "":
                return value
    return None


def _frame_slices(
    ds: Dataset, path: str, pixel: PixelFormat, sop_uid: str, number: int | None
) -> tuple[DicomSlice, ...]:
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != pixel.n_frames:
        raise SkipFile(
            f"multi-frame file lists {len(per_frame)} frame positions for {pixel.n_frames} frames"
        )
    slices = []
    for i, item in enumerate(per_frame):
        ipp = _group_value(item, shared, "PlanePositionSequence", "ImagePositionPatient")
        iop = _group_value(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        ps = _group_value(item, shared, "PixelMeasuresSequence", "PixelSpacing")
        if ipp is None or iop is None:
            raise SkipFile("multi-frame file without frame positions or orientation")
        thickness = _group_value(item, shared, "PixelMeasuresSequence", "SliceThickness")
        slope = _group_value(item, shared, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(
            item, shared, "PixelValueTransformationSequence", "RescaleIntercept"
        )
        slices.append(
            _make_slice(
                path,
                i,
                ipp,
                iop,
                ps,
                1.0 if slope is None else float(slope),
                0.0 if intercept is None else float(intercept),
                sop_uid,
                number,
                pixel,
                _number_or_none(thickness),
            )
        )
    return tuple(slices)


def _number_or_none(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _make_slice(
    path: str,
    frame: int,
    ipp: Sequence[Any],
    iop: Sequence[Any],
    ps: Sequence[Any] | None,
    slope: float,
    intercept: float,
    sop_uid: str,
    number: int | None,
    pixel: PixelFormat,
    thickness: float | None = None,
    kernel: str = "",
) -> DicomSlice:
    try:
        position = tuple(float(v) for v in ipp)
        orientation = tuple(float(v) for v in iop)
        spacing = tuple(float(v) for v in ps) if ps is not None else (1.0, 1.0)
    except (TypeError, ValueError):
        raise SkipFile("invalid position, orientation or pixel spacing") from None
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        raise SkipFile("malformed ImagePositionPatient/ImageOrientationPatient/PixelSpacing")
    if not all(map(_finite, (*position, *orientation, *spacing))) or min(spacing) <= 0:
        raise SkipFile("invalid position, orientation or pixel spacing values")
    row, col = orientation[:3], orientation[3:]
    norms = (sum(v * v for v in row) ** 0.5, sum(v * v for v in col) ** 0.5)
    cosine = sum(a * b for a, b in zip(row, col, strict=True))
    if min(norms) < 0.9 or max(norms) > 1.1 or abs(cosine) > 0.05:
        # Zero or parallel direction vectors: no plane, and any normal would be invented.
        raise SkipFile(
            "invalid ImageOrientationPatient: row and column directions are not "
            "perpendicular unit vectors"
        )
    return DicomSlice(
        path=path,
        frame=frame,
        position=position,
        orientation=orientation,
        pixel_spacing=spacing,
        slope=slope if slope != 0 else 1.0,
        intercept=intercept,
        sop_instance_uid=sop_uid,
        instance_number=number,
        pixel=pixel,
        thickness=thickness if thickness is not None and _finite(thickness) else None,
        kernel=kernel,
    )


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


# --- parsing --------------------------------------------------------------------------


def _parse(data: bytes) -> tuple[Dataset, int | None]:
    """Parse the header in ``data``; returns the dataset and the PixelData tag offset."""
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    stream = io.BytesIO(data)
    ds = dcmread(stream, stop_before_pixels=True, force=not has_preamble)
    pos = stream.tell()
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts == DeflatedExplicitVRLittleEndian:
        # The stream position is inside the inflated data: no usable offset.
        return ds, None
    if data[pos : pos + 4] == _PIXEL_DATA_TAG and pos + 12 <= len(data):
        return ds, pos
    return ds, None


def _pixel_element(data: bytes, pos: int, implicit: bool) -> tuple[int, int | None]:
    """Value offset and length (None = undefined, encapsulated) of PixelData at ``pos``."""
    if implicit:
        (length,) = struct.unpack_from("<I", data, pos + 4)
        start = pos + 8
    else:
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"OV", b"OL", b"OF", b"OD"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
    return start, (None if length == 0xFFFFFFFF else length)


def _ends_short(ds: Dataset, size: int) -> bool:
    """True when an element's declared value runs past the end of the file."""
    meta = getattr(ds, "file_meta", None)
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    if group_length is not None and 132 + 12 + int(group_length) > size:
        return True
    for elem in ds.elements():
        if (
            isinstance(elem, RawDataElement)
            and elem.length != 0xFFFFFFFF
            and elem.value_tell + elem.length > size
        ):
            return True
    return False


def _check_declared_size(
    rows: int, cols: int, n_frames: int, bits_allocated: int, ts: str, file_size: int
) -> int:
    """Decoded bytes the header declares; refuse sizes no decoder should be asked for.

    Checked before any decode: decoders allocate what the header claims.
    """
    if rows > MAX_MATRIX or cols > MAX_MATRIX:
        raise SkipFile(
            f"too large: declares a {rows}x{cols} image (at most {MAX_MATRIX}x{MAX_MATRIX} is read)"
        )
    decoded = rows * cols * n_frames * ((bits_allocated + 7) // 8)
    if decoded > MAX_FILE_DECODED_BYTES:
        raise SkipFile(
            f"too large: {n_frames} frame(s) of {rows}x{cols} decode to "
            f"{format_bytes(decoded)} (at most {format_bytes(MAX_FILE_DECODED_BYTES)} per file)"
        )
    if ts == _RLE_LOSSLESS and decoded > RLE_MAX_RATIO * file_size:
        raise SkipFile(
            f"corrupt RLE data: the header declares {format_bytes(decoded)} of pixels, "
            f"more than a {format_bytes(file_size)} RLE file can hold"
        )
    return decoded


def _full_parse(probe: FileProbe) -> tuple[Dataset | None, int | None]:
    """Parse the whole file with pydicom (any transfer syntax); None when it has no pixels.

    Returns the dataset and the PixelData value length (None when undefined:
    encapsulated). Large values stay deferred on disk.
    """
    ds = dcmread(probe.path, defer_size=4096, force=True)
    if _PIXEL_DATA not in ds:
        return None, None
    elem = ds.get_item(_PIXEL_DATA)
    if not isinstance(elem, RawDataElement):
        return ds, len(elem.value or b"")
    length = elem.length
    deflated = ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    # Offsets of a deflated file are in the inflated stream: not comparable.
    if length != 0xFFFFFFFF and not deflated and elem.value_tell + length > probe.size:
        raise SkipFile(
            f"file is truncated: pixel data has {max(probe.size - elem.value_tell, 0)} of "
            f"{length} bytes"
        )
    return ds, None if length == 0xFFFFFFFF else length


def _has_image_module(probe: FileProbe) -> bool:
    """True when the file's attributes describe an image (Rows and Columns present)."""
    try:
        ds = dcmread(probe.path, stop_before_pixels=True, force=True)
    except Exception:  # unreadable: no evidence either way
        return False
    return "Rows" in ds and "Columns" in ds


def _series_info(ds: Dataset) -> SeriesInfo:
    return SeriesInfo(
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_int_string(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality").upper(),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        body_part=_text(ds, "BodyPartExamined"),
        manufacturer=_text(ds, "Manufacturer"),
        slice_thickness=_float(ds, "SliceThickness"),
        convolution_kernel=_text(ds, "ConvolutionKernel"),
    )


def read_dicom_header(
    probe: FileProbe, info_cache: dict[str, SeriesInfo] | None = None
) -> DicomHeader:
    """Read one file's header into a :class:`DicomHeader`.

    Parameters
    ----------
    probe
        The file with its first bytes (:data:`HEAD_BYTES` or the whole file).
    info_cache
        Series metadata already read for a SeriesInstanceUID; filled as a side
        effect so the ~20 descriptive attributes are decoded once per series.

    Returns
    -------
    DicomHeader

    Raises
    ------
    SkipFile
        With the human-readable reason when the file is not a usable image
        (empty, truncated, corrupt, localizer, non-image object, ...).
    """
    path = probe.path
    if probe.size == 0:
        raise SkipFile("empty file (0 bytes)")
    data = probe.head
    try:
        ds, stop = _parse(data)
    except Exception as exc:  # a cut-off head can fail where the whole file parses
        if len(data) >= probe.size:
            raise SkipFile(human_reason(exc)) from None
        ds, stop = None, None
    if stop is None and len(data) < probe.size:
        # Header longer than the head buffer (or deflated): parse the whole file.
        try:
            data = path.read_bytes()
            ds, stop = _parse(data)
        except Exception as exc:
            raise SkipFile(human_reason(exc)) from None
    assert ds is not None
    return _header_from_dataset(ds, data, stop, probe, info_cache)


def _header_from_dataset(
    ds: Dataset,
    data: bytes,
    stop: int | None,
    probe: FileProbe,
    info_cache: dict[str, SeriesInfo] | None,
) -> DicomHeader:
    path = str(probe.path)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        # A bare dataset: pydicom guessed the encoding; record what it used.
        ts = ImplicitVRLittleEndian if ds.is_implicit_VR else "1.2.840.10008.1.2.1"
    sop_class = _text(ds, "SOPClassUID")
    media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    modality = _text(ds, "Modality").upper()
    if _DICOMDIR_CLASS in (sop_class, media_class) or _T["DirectoryRecordSequence"] in ds:
        raise SkipFile("DICOMDIR (a directory index, not an image)")
    if modality in NON_IMAGE_MODALITIES:
        raise SkipFile(f"{NON_IMAGE_MODALITIES[modality]} ({modality}), not an image")
    start: int | None = None
    value_length: int | None = None
    if stop is None:
        # The fast path found no pixel data where it looks (little-endian tag
        # after the header): big-endian and deflated files, or none at all.
        if _ends_short(ds, probe.size):
            raise SkipFile(
                "file is truncated or corrupt (its header runs past the end of the file)"
            )
        full, value_length = _full_parse(probe)
        if full is None:
            image_class = bool(sop_class) and "Image" in UID(sop_class).name
            if image_class or _T["Rows"] in ds or _has_image_module(probe):
                raise SkipFile("file is truncated or incomplete: no pixel data before its end")
            if not sop_class:
                raise SkipFile(
                    "file is truncated or corrupt: its header ends before the SOP Class UID "
                    "and the pixel data"
                )
            raise SkipFile(f"no pixel data ({UID(sop_class).name}), not an image")
        ds = full
    image_type = _texts(ds, "ImageType")
    if "LOCALIZER" in image_type:
        raise SkipFile("localizer/scout image")
    samples = _ushort(ds, "SamplesPerPixel") or 1
    if samples != 1:
        raise SkipFile("colour image (not a CT slice)")
    rows, cols = _ushort(ds, "Rows"), _ushort(ds, "Columns")
    if not rows or not cols:
        raise SkipFile("no image size (Rows/Columns missing)")
    bits_allocated = _ushort(ds, "BitsAllocated") or 16
    bits_stored = _ushort(ds, "BitsStored") or bits_allocated
    n_frames = _int_string(ds, "NumberOfFrames") or 1
    if n_frames < 1:
        raise SkipFile("invalid NumberOfFrames")
    if bits_stored > bits_allocated or bits_allocated not in (8, 16, 32):
        raise SkipFile(
            f"invalid pixel format: {bits_stored} bits stored in {bits_allocated} allocated"
        )
    expected = _check_declared_size(rows, cols, n_frames, bits_allocated, str(ts), probe.size)

    offset = length = None
    if stop is not None:
        start, value_length = _pixel_element(data, stop, ts == ImplicitVRLittleEndian)
    if ts in _NATIVE_SYNTAXES:
        if value_length is None:
            raise SkipFile("corrupt pixel data (undefined length in an uncompressed file)")
        if start is not None and start + min(value_length, expected) > probe.size:
            raise SkipFile(
                f"file is truncated: pixel data has {max(probe.size - start, 0)} of "
                f"{min(value_length, expected)} bytes"
            )
        if value_length < expected:
            raise SkipFile(f"pixel data too short ({value_length} of {expected} bytes)")
        frame_bytes = expected // n_frames
        if value_length - expected >= frame_bytes:
            # More than padding: the header describes other pixels than the file
            # holds (e.g. BitsAllocated 8 on 16-bit data); decoding would be garbage.
            raise SkipFile(
                f"pixel data length ({value_length} bytes) does not match its header "
                f"({rows}x{cols}, {n_frames} frame(s), {bits_allocated} bits allocated = "
                f"{expected} bytes)"
            )
        if start is not None and ts in _NATIVE_LITTLE_ENDIAN and bits_allocated in (8, 16):
            offset, length = start, expected
    elif start is not None and start >= probe.size:
        raise SkipFile("file is truncated: pixel data missing")

    pixel = PixelFormat(
        transfer_syntax=str(ts),
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=_ushort(ds, "PixelRepresentation") == 1,
        samples_per_pixel=samples,
        photometric=_text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2",
        offset=offset,
        length=length,
    )
    sop_uid = _text(ds, "SOPInstanceUID")
    number = _int_string(ds, "InstanceNumber")
    if _T["PerFrameFunctionalGroupsSequence"] in ds:
        slices = _frame_slices(ds, path, pixel, sop_uid, number)
    else:
        if n_frames != 1:
            raise SkipFile("multi-frame image without per-frame positions")
        ipp = _floats(ds, "ImagePositionPatient")
        iop = _floats(ds, "ImageOrientationPatient")
        if ipp is None or iop is None:
            raise SkipFile("no ImagePositionPatient/ImageOrientationPatient (not a volume slice)")
        slices = (
            _make_slice(
                path,
                0,
                ipp,
                iop,
                _floats(ds, "PixelSpacing"),
                _float(ds, "RescaleSlope", 1.0),
                _float(ds, "RescaleIntercept", 0.0),
                sop_uid,
                number,
                pixel,
                _float(ds, "SliceThickness"),
                _text(ds, "ConvolutionKernel"),
            ),
        )
    series_uid = _text(ds, "SeriesInstanceUID")
    info = info_cache.get(series_uid) if info_cache is not None else None
    if info is None:
        info = _series_info(ds)
        if info_cache is not None:
            info_cache[series_uid] = info
    return DicomHeader(
        path=path,
        series_uid=series_uid,
        sop_class_uid=sop_class,
        modality=modality,
        image_type=image_type,
        slices=slices,
        info=info,
        acquisition_number=_int_string(ds, "AcquisitionNumber"),
    )


def read_head(path: Path, size: int) -> bytes:
    """The first :data:`HEAD_BYTES` of ``path`` (all of it when smaller), in one read."""
    with open(path, "rb", buffering=0) as f:
        return f.read(min(size, HEAD_BYTES))
