"""Turning CT slices into the embedding model's input tensor.

The same function feeds training and the running app, so a model sees at run
time exactly what it saw while learning. Each slice is resampled to a fixed
*physical* scale (``pixel_mm`` per pixel) and centred on the body, so table
height, field of view and matrix size do not change the picture while the
body's real size still does. HU windows become the channels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.core.imaging import (
    AIR_HU,
    BODY_THRESHOLD_HU,
    BONE_WINDOW,
    LUNG_WINDOW,
    SOFT_TISSUE_WINDOW,
    Window,
)
from app.core.volume import Volume

__all__ = [
    "DEFAULT_WINDOWS",
    "InputSpec",
    "body_centroids",
    "input_to_slice_affine",
    "labels_to_input",
    "prepare_hu_slices",
    "prepare_slices",
    "window_channels",
]

# The body mask is found on a coarse grid: finding a centroid needs no detail,
# and a coarse grid makes it cheap and blind to thin table rails and cables.
_MASK_GRID_MM = 6.0
# Smallest slice (rows and columns) the resampling accepts; see _check_plane.
MIN_PLANE_PIXELS = 8

DEFAULT_WINDOWS: tuple[Window, ...] = (LUNG_WINDOW, SOFT_TISSUE_WINDOW, BONE_WINDOW)


@dataclass(frozen=True)
class InputSpec:
    """What the model expects as input.

    Parameters
    ----------
    size
        Output images are ``size`` x ``size`` pixels.
    pixel_mm
        Physical size (mm) of one output pixel, so the field of view is
        ``size * pixel_mm`` mm whatever the scan's matrix and FOV.
    windows
        One HU window per channel; each is mapped linearly to [0, 1].
    """

    size: int = 128
    pixel_mm: float = 3.2
    windows: tuple[Window, ...] = field(default=DEFAULT_WINDOWS)

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise ValueError(f"input size must be at least 8 pixels, got {self.size}")
        if not (np.isfinite(self.pixel_mm) and self.pixel_mm > 0):
            raise ValueError(f"pixel_mm must be a positive number, got {self.pixel_mm}")
        if len(self.windows) == 0:
            raise ValueError("at least one HU window is needed")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "pixel_mm", float(self.pixel_mm))
        object.__setattr__(self, "windows", tuple(self.windows))

    @property
    def channels(self) -> int:
        """Number of input channels (one per window)."""
        return len(self.windows)

    def to_metadata(self) -> dict[str, str]:
        """The ``priorsync.*`` ONNX metadata entries describing this input."""
        return {
            "priorsync.input_size": str(self.size),
            "priorsync.pixel_mm": repr(self.pixel_mm),
            "priorsync.windows": json.dumps([[w.center, w.width] for w in self.windows]),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> InputSpec:
        """Read the spec back from ONNX metadata props.

        Parameters
        ----------
        metadata
            The model's custom metadata (``priorsync.input_size``,
            ``priorsync.pixel_mm``, ``priorsync.windows``).

        Raises
        ------
        ValueError
            When an entry is missing or malformed; the message names it.
        """
        try:
            size = int(metadata["priorsync.input_size"])
            pixel_mm = float(metadata["priorsync.pixel_mm"])
            raw = json.loads(metadata["priorsync.windows"])
        except KeyError as exc:
            raise ValueError(f"model metadata lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model metadata is malformed: {exc}") from None
        if not isinstance(raw, list) or not all(
            isinstance(w, list | tuple) and len(w) == 2 for w in raw
        ):
            raise ValueError("model metadata 'priorsync.windows' must be a list of [center, width]")
        windows = tuple(Window(float(c), float(w)) for c, w in raw)
        return cls(size=size, pixel_mm=pixel_mm, windows=windows)


def _in_plane_spacing(volume: Volume) -> tuple[float, float]:
    sx, sy = (float(s) for s in volume.geometry.spacing[:2])
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"volume has an invalid pixel spacing ({sx}, {sy})")
    return sx, sy


def body_centroids(volume: Volume, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Centre of the body (largest region above -500 HU) in each slice.

    Parameters
    ----------
    volume
        Display-oriented volume.
    indices
        Slice indices.

    Returns
    -------
    np.ndarray
        ``(N, 2)`` float64 ``(col, row)`` in voxel units. Slices with no body
        (all air) get the image centre.
    """
    indices = np.asarray(indices, dtype=np.intp)
    sx, sy = _in_plane_spacing(volume)
    rows, cols = volume.voxels.shape[1:]
    step_c = max(1, round(_MASK_GRID_MM / sx))
    step_r = max(1, round(_MASK_GRID_MM / sy))
    # One vectorised threshold over every requested slice on the coarse grid.
    masks = volume.voxels[indices, step_r // 2 :: step_r, step_c // 2 :: step_c] > BODY_THRESHOLD_HU
    masks = masks.astype(np.uint8)
    out = np.empty((len(indices), 2), dtype=np.float64)
    out[:] = ((cols - 1) / 2.0, (rows - 1) / 2.0)
    for i, mask in enumerate(masks):
        if min(mask.shape) < 1:
            continue  # OpenCV crashes (SIGSEGV) on empty images; a thin slice keeps the centre
        n, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n < 2:
            continue
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        cx, cy = centroids[largest]
        out[i] = (step_c // 2 + cx * step_c, step_r // 2 + cy * step_r)
    return out


def shrunk_shape(volume: Volume, spec: InputSpec) -> tuple[int, int]:
    """``(rows, cols)`` of a slice after :func:`prepare_slices`' area pre-shrink.

    The shrink brings pixels to about ``spec.pixel_mm`` (never enlarges), so
    the final affine resamples by about 1x; bilinear sampling alone would alias
    sub-mm pixels.
    """
    sx, sy = _in_plane_spacing(volume)
    rows, cols = volume.voxels.shape[1:]
    small_w = max(1, round(cols * min(1.0, sx / spec.pixel_mm)))
    small_h = max(1, round(rows * min(1.0, sy / spec.pixel_mm)))
    return small_h, small_w


def input_to_shrunk_affine(
    volume: Volume, centroid: Sequence[float], spec: InputSpec
) -> np.ndarray:
    """Affine from model-input pixel ``(u, v)`` to the pre-shrunk slice's ``(col, row)``.

    Parameters
    ----------
    volume
        Display-oriented volume.
    centroid
        Body centroid ``(col, row)`` in the original slice's pixel coordinates.
    spec
        Input specification.

    Returns
    -------
    np.ndarray
        ``(2, 3)`` float64, as ``cv2.warpAffine`` takes it with ``WARP_INVERSE_MAP``.
    """
    sx, sy = _in_plane_spacing(volume)
    rows, cols = volume.voxels.shape[1:]
    small_h, small_w = shrunk_shape(volume, spec)
    # Effective pixel size of the shrunk image (rounding makes it differ slightly).
    ax = spec.pixel_mm / (sx * cols / small_w)
    ay = spec.pixel_mm / (sy * rows / small_h)
    # Centroid in the shrunk image's pixel-centre coordinates.
    ccol = (centroid[0] + 0.5) * small_w / cols - 0.5
    crow = (centroid[1] + 0.5) * small_h / rows - 0.5
    half = (spec.size - 1) / 2.0
    # Output pixel (u, v) samples source (ccol + (u - half) * ax, crow + (v - half) * ay).
    return np.array([[ax, 0.0, ccol - half * ax], [0.0, ay, crow - half * ay]])


def prepare_hu_slices(
    volume: Volume,
    indices: Sequence[int] | np.ndarray | None = None,
    spec: InputSpec | None = None,
) -> np.ndarray:
    """Slices in the model's frame, still in HU (before windowing).

    Each slice is area-averaged down to about ``spec.pixel_mm`` (anti-aliasing,
    which also evens out noise and reconstruction-kernel differences), then one
    affine map places the body's centroid at the image centre at exactly
    ``spec.pixel_mm`` per pixel. Outside the scanned field is air.

    Parameters
    ----------
    volume
        Display-oriented volume (HU, ``int16``).
    indices
        Slice indices to prepare; all slices when ``None``.
    spec
        Input specification; :class:`InputSpec` defaults when ``None``.

    Returns
    -------
    np.ndarray
        ``float32`` array ``(N, S, S)`` of HU. Synthetic lesions are drawn into
        this frame before :func:`window_channels` (training of the sketch models).
    """
    spec = spec or InputSpec()
    indices = _checked_indices(volume, indices)
    _check_plane(volume)
    size = spec.size
    out = np.empty((len(indices), size, size), dtype=np.float32)
    if len(indices) == 0:
        return out
    rows, cols = volume.voxels.shape[1:]
    centroids = body_centroids(volume, indices)
    small_h, small_w = shrunk_shape(volume, spec)
    shrink = small_w != cols or small_h != rows
    for i, k in enumerate(indices):
        img = volume.voxels[k].astype(np.float32)
        if shrink:
            img = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA)
        matrix = input_to_shrunk_affine(volume, centroids[i], spec)
        cv2.warpAffine(
            img,
            matrix,
            (size, size),
            dst=out[i],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float(AIR_HU),
        )
    return out


def window_channels(hu: np.ndarray, spec: InputSpec | None = None) -> np.ndarray:
    """Map HU images ``(N, S, S)`` to the model's window channels ``(N, C, S, S)`` in [0, 1]."""
    spec = spec or InputSpec()
    hu = np.asarray(hu, dtype=np.float32)
    lowers = np.array([w.lower for w in spec.windows], dtype=np.float32)
    widths = np.array([w.width for w in spec.windows], dtype=np.float32)
    out = (hu[:, np.newaxis] - lowers[None, :, None, None]) / widths[None, :, None, None]
    return np.clip(out, 0.0, 1.0, out=out)


def _check_plane(volume: Volume) -> None:
    """Refuse slices OpenCV cannot resample (it crashes on empty or 1-pixel-wide images)."""
    rows, cols = volume.voxels.shape[1:]
    if rows < MIN_PLANE_PIXELS or cols < MIN_PLANE_PIXELS:
        raise ValueError(
            f"slices of {rows}x{cols} pixels are too small to prepare "
            f"(at least {MIN_PLANE_PIXELS}x{MIN_PLANE_PIXELS} are needed)"
        )


def _checked_indices(volume: Volume, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
    n_slices = volume.n_slices
    indices = np.arange(n_slices) if indices is None else np.asarray(indices, dtype=np.intp)
    if indices.ndim != 1:
        raise ValueError("indices must be a 1-D sequence of slice numbers")
    if len(indices) and (indices.min() < -n_slices or indices.max() >= n_slices):
        raise IndexError(f"slice index out of range for a volume of {n_slices} slices")
    return indices % max(n_slices, 1)


def input_to_slice_affine(volume: Volume, index: int, spec: InputSpec | None = None) -> np.ndarray:
    """Affine from model-input pixel ``(u, v)`` to the *original* slice's ``(col, row)``.

    :func:`input_to_shrunk_affine` composed with the area pre-shrink, so
    anything drawn on the displayed slice (a sketch, a mask) can be carried into
    the model's frame with ``cv2.warpAffine(..., WARP_INVERSE_MAP)``, and model
    outputs back with the inverse.

    Returns
    -------
    np.ndarray
        ``(2, 3)`` float64.
    """
    spec = spec or InputSpec()
    rows, cols = volume.voxels.shape[1:]
    centroid = body_centroids(volume, [int(index)])[0]
    small_h, small_w = shrunk_shape(volume, spec)
    to_shrunk = input_to_shrunk_affine(volume, centroid, spec)
    # Shrunk pixel centre c maps to original (c + 0.5) * cols / small_w - 0.5.
    fx, fy = cols / small_w, rows / small_h
    scale = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
    return scale[:, :2] @ to_shrunk + np.array([[0.0, 0.0, scale[0, 2]], [0.0, 0.0, scale[1, 2]]])


def labels_to_input(
    volume: Volume,
    index: int,
    labels: np.ndarray,
    n_classes: int,
    spec: InputSpec | None = None,
) -> np.ndarray:
    """Carry a label image drawn on a slice into the model's frame, one channel per class.

    Parameters
    ----------
    volume
        Display-oriented volume the labels were drawn on.
    index
        The slice they were drawn on.
    labels
        ``(rows, cols)`` integer image: 0 is background, ``1..n_classes`` the classes.
    n_classes
        Number of classes (channels of the result).
    spec
        Input specification.

    Returns
    -------
    np.ndarray
        ``float32`` ``(n_classes, S, S)``: the fraction of each model pixel each
        class covers (area-weighted, so a thin stroke survives the shrink).
    """
    spec = spec or InputSpec()
    labels = np.asarray(labels)
    if labels.shape != volume.voxels.shape[1:]:
        raise ValueError(
            f"labels have shape {labels.shape}, the slice has {volume.voxels.shape[1:]}"
        )
    _check_plane(volume)
    rows, cols = labels.shape
    small_h, small_w = shrunk_shape(volume, spec)
    centroid = body_centroids(volume, [int(index)])[0]
    matrix = input_to_shrunk_affine(volume, centroid, spec)
    out = np.zeros((n_classes, spec.size, spec.size), dtype=np.float32)
    for c in range(n_classes):
        layer = (labels == c + 1).astype(np.float32)
        if not layer.any():
            continue
        if small_w != cols or small_h != rows:
            layer = cv2.resize(layer, (small_w, small_h), interpolation=cv2.INTER_AREA)
        cv2.warpAffine(
            layer,
            matrix,
            (spec.size, spec.size),
            dst=out[c],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
    return out


def prepare_slices(
    volume: Volume,
    indices: Sequence[int] | np.ndarray | None = None,
    spec: InputSpec | None = None,
) -> np.ndarray:
    """Model input for some slices of a volume.

    :func:`prepare_hu_slices` (resample to ``spec.pixel_mm``, centre on the
    body) followed by :func:`window_channels`.

    Parameters
    ----------
    volume
        Display-oriented volume (HU, ``int16``).
    indices
        Slice indices to prepare; all slices when ``None``.
    spec
        Input specification; :class:`InputSpec` defaults when ``None``.

    Returns
    -------
    np.ndarray
        ``float32`` array ``(N, C, S, S)`` with values in [0, 1].
    """
    spec = spec or InputSpec()
    return window_channels(prepare_hu_slices(volume, indices, spec), spec)
