"""Simulated follow-up CT scans with a known anatomical correspondence.

No real longitudinal pairs are available, so a "prior" or "follow-up" scan is
made from one real CT (the *source*) by re-scanning it virtually: the patient
lies differently on the table (rigid motion), breathes differently (smooth
non-rigid deformation, strongest cranio-caudally at the lung bases), is scanned
over another range with another table position, frame of reference, field of
view, matrix, slice spacing and slab thickness, reconstructed with another
kernel and noise level, in another contrast phase, and may show a new or grown
lesion.

Ground truth
------------
Every output voxel centre ``q`` is sampled at the source point
``p(q) = q + f(q)``, where ``f`` is one displacement field (rigid motion plus
breathing) stored on a coarse grid and interpolated (tri)linearly; the same
interpolated field drives the resampling and the truth, so they cannot
disagree. The source image is first averaged along its slice axis to the output
slab thickness, so an output slice shows the slab of source anatomy centred on
``p(q)``.

``SimulatedScan.source_z[k]`` is the *anatomical level* shown by output slice
``k``: the median, over the body pixels of that slice (simulated HU > -500
before noise, on a regular sub-grid of pixels; all sub-grid pixels when the
slice holds no body), of the source slice-axis coordinate of ``p(q)``,
expressed in the source volume's ``slice_z`` coordinates (mm along the
source's slice normal; converted through the source's actual slice positions,
so uneven source slices are honoured). It is the level of the slab centre;
averaging over the slab would shift it only by the curvature of the field over
a few mm (well below 0.1 mm). Through-plane rotation tilts a slice across
levels (+-17 mm at the edge of a 500 mm field for 4 degrees); the median is the
level of the slice's body mass, which is what a radiologist matches.

:func:`true_correspondence` maps a level shown in the current scan to the prior:
it interpolates ``prior.source_z`` against ``prior.volume.slice_z``. The
evaluation's ``|dz|`` is measured on that ``prior_z``, in mm of the prior's
``slice_z``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import SimpleITK as sitk

from app.core.imaging import BODY_THRESHOLD_HU
from app.core.volume import Geometry, Volume
from app.io.safe_write import safe_write
from app.sim.point_truth import (
    FIELD_NAME,
    FieldTruth,
    read_point_truth,
    source_grid,
    write_point_truth,
)

__all__ = [
    "SimParams",
    "SIM_PRESETS",
    "SimulatedScan",
    "simulate_followup",
    "identity_scan",
    "true_correspondence",
    "write_scan",
    "read_scan",
    "SIDECAR_NAME",
]

Range = tuple[float, float]

SIDECAR_NAME = "priorsync-sim.json"
_AIR = -1024.0
_HU_MAX = 3071.0
# Displacements below this (mm) are rounding noise of a motion-free scan.
_STILL_MM = 1e-6


@dataclass(frozen=True)
class SimParams:
    """Ranges the simulator draws from (uniformly unless noted).

    Parameters
    ----------
    rotation_deg
        Largest absolute rotation (degrees) about the LR, AP and SI axes.
    shift_mm
        Largest absolute in-plane shift (mm) of the patient on the table (LR, AP).
    deformation_mm
        Range of the largest breathing displacement (mm, over the scanned
        anatomy); its sign (inspiration or expiration) is random.
    ap_fraction, lr_fraction
        Anterior chest-wall and lateral expansion relative to the SI displacement.
    coverage
        Fraction of the source's cranio-caudal extent that the scan covers.
    thickness_mm
        Slab (slice) thickness range.
    spacing_ratio
        Slice spacing as a fraction of the thickness (below 1: overlapping slices).
    fov_margin
        Reconstruction diameter as a multiple of the body's LR width.
    fov_crop
        Fraction of the widest field of view that shows no crop edge of the
        source (see ``_Anatomy.max_fov``) that the diameter may not exceed.
    matrix_sizes
        In-plane matrix sizes to choose from.
    kernel_blur_mm, sharpen_probability, sharpen_amount
        Softer kernel: Gaussian blur sigma (mm). With ``sharpen_probability`` a
        sharper kernel instead: unsharp masking of this amount.
    noise_hu
        Standard deviation of the added (slightly correlated) noise, HU.
    contrast_delta_hu
        HU change of enhancing tissue (source 100-300 HU), e.g. another phase.
    lesion_probability, lesion_radius_mm, lesion_hu, lesion_center
        Chance of a lesion, its radius and contrast; ``lesion_center`` fixes its
        position (source LPS mm) so several scans can show one lesion growing.
    table_offset_mm
        Largest absolute LPS offset of the new frame of reference along SI.
    sample_at_source_resolution
        Resample the anatomy on an in-plane grid no finer than the source's
        pixels, then interpolate it linearly to the output matrix (noise and the
        kernel are applied at the output matrix). Where the output pixels are
        finer than the source's (the demo: 0.7 mm from a 1.5 mm source), the
        costly resampling then samples the square of that ratio fewer points
        (3x less CPU on the demo's priors). Edges come out slightly softer, as
        from a softer kernel (on a demo prior without noise: 8 HU mean absolute
        difference inside the body, slice levels within 0.02 mm). Off by
        default (training and evaluation data).
    """

    rotation_deg: tuple[float, float, float] = (3.0, 3.0, 3.0)
    shift_mm: tuple[float, float] = (20.0, 15.0)
    deformation_mm: Range = (1.0, 4.0)
    ap_fraction: float = 0.3
    lr_fraction: float = 0.2
    coverage: Range = (0.6, 0.95)
    thickness_mm: Range = (1.0, 5.0)
    spacing_ratio: Range = (0.7, 1.0)
    fov_margin: Range = (1.1, 1.45)
    fov_crop: Range = (0.85, 1.0)
    matrix_sizes: tuple[int, ...] = (512,)
    kernel_blur_mm: Range = (0.0, 0.8)
    sharpen_probability: float = 0.3
    sharpen_amount: Range = (0.3, 0.8)
    noise_hu: Range = (3.0, 15.0)
    contrast_delta_hu: Range = (-60.0, 60.0)
    lesion_probability: float = 0.5
    lesion_radius_mm: Range = (6.0, 15.0)
    lesion_hu: Range = (30.0, 60.0)
    lesion_center: tuple[float, float, float] | None = None
    table_offset_mm: float = 800.0
    sample_at_source_resolution: bool = False


SIM_PRESETS: dict[str, SimParams] = {
    "standard": SimParams(),
    "hard": SimParams(
        rotation_deg=(8.0, 8.0, 8.0),
        shift_mm=(40.0, 30.0),
        deformation_mm=(4.0, 12.0),
        coverage=(0.4, 0.8),
        matrix_sizes=(384, 512),
        kernel_blur_mm=(0.0, 1.2),
        sharpen_probability=0.4,
        noise_hu=(5.0, 30.0),
        contrast_delta_hu=(-120.0, 120.0),
        lesion_probability=0.7,
        lesion_radius_mm=(5.0, 20.0),
    ),
    "train": SimParams(
        rotation_deg=(10.0, 10.0, 10.0),
        shift_mm=(50.0, 40.0),
        deformation_mm=(0.0, 15.0),
        coverage=(0.4, 1.0),
        thickness_mm=(1.0, 5.0),
        spacing_ratio=(0.5, 1.0),
        fov_margin=(1.05, 1.7),
        fov_crop=(0.75, 1.0),
        matrix_sizes=(384, 512),
        kernel_blur_mm=(0.0, 1.5),
        sharpen_probability=0.4,
        sharpen_amount=(0.2, 1.2),
        noise_hu=(0.0, 40.0),
        contrast_delta_hu=(-150.0, 150.0),
        lesion_probability=0.6,
        lesion_radius_mm=(4.0, 25.0),
        lesion_hu=(20.0, 80.0),
    ),
    "demo": SimParams(
        rotation_deg=(2.5, 2.0, 3.0),
        shift_mm=(15.0, 10.0),
        deformation_mm=(5.0, 10.0),
        coverage=(0.75, 0.92),
        thickness_mm=(2.0, 5.0),
        spacing_ratio=(0.8, 1.0),
        fov_margin=(1.15, 1.35),
        fov_crop=(0.9, 1.0),
        matrix_sizes=(512,),
        kernel_blur_mm=(0.0, 0.5),
        sharpen_probability=0.2,
        sharpen_amount=(0.2, 0.4),
        noise_hu=(3.0, 8.0),
        contrast_delta_hu=(-40.0, 40.0),
        lesion_probability=0.0,
    ),
}


@dataclass
class SimulatedScan:
    """A simulated scan and the anatomical level of each of its slices.

    Attributes
    ----------
    volume
        The scan, display-oriented, with its own UIDs and frame of reference.
    source_z
        Per slice of ``volume``: the anatomical level it shows, as ``slice_z``
        (mm) of the source volume (see the module docstring for the exact
        definition).
    params_used
        Every value drawn (JSON-serialisable), for reports and reproduction.
    source_ref
        Identity of the source volume; scans are only comparable when equal.
    point_truth
        The displacement field and grids the scan was resampled with, for
        point ground truth (:mod:`app.sim.point_truth`); ``None`` for the
        source itself (:func:`identity_scan`) and scans read without it.
    """

    volume: Volume
    source_z: np.ndarray
    params_used: dict[str, Any] = field(default_factory=dict)
    source_ref: str = ""
    point_truth: FieldTruth | None = None


def _source_ref(source: Volume) -> str:
    z = source.slice_z
    return f"{source.source}|{source.shape}|{z[0]:.3f}|{z[-1]:.3f}"


def identity_scan(source: Volume) -> SimulatedScan:
    """The source itself as a scan: each slice shows its own level."""
    return SimulatedScan(
        volume=source,
        source_z=np.asarray(source.slice_z, dtype=np.float64).copy(),
        params_used={"identity": True},
        source_ref=_source_ref(source),
    )


# --------------------------------------------------------------------------- truth


def true_correspondence(
    current: SimulatedScan, prior: SimulatedScan
) -> tuple[np.ndarray, np.ndarray]:
    """For each slice of ``current``, the prior ``slice_z`` showing the same level.

    Parameters
    ----------
    current, prior
        Two scans simulated from the same source volume.

    Returns
    -------
    prior_z, in_coverage
        ``prior_z[i]`` (mm, in ``prior.volume.slice_z`` coordinates) is where the
        level of current slice ``i`` lies in the prior, linearly extrapolated
        beyond the prior's ends. ``in_coverage[i]`` is False when that level lies
        outside the prior's covered levels by more than half a prior slice.

    Raises
    ------
    ValueError
        When the scans come from different sources.
    """
    if current.source_ref != prior.source_ref:
        raise ValueError("the two scans were simulated from different source volumes")
    levels = np.asarray(current.source_z, dtype=np.float64)
    lp = np.asarray(prior.source_z, dtype=np.float64)
    zp = np.asarray(prior.volume.slice_z, dtype=np.float64)
    if len(lp) == 1:
        half = max(float(prior.volume.geometry.spacing[2]), 1e-6) / 2.0
        return np.full_like(levels, zp[0]), np.abs(levels - lp[0]) <= half
    order = np.argsort(lp, kind="stable")
    lp, zp = lp[order], zp[order]
    prior_z = np.interp(levels, lp, zp)
    # Linear extrapolation beyond the ends, with the end segments' slopes.
    lo, hi = levels < lp[0], levels > lp[-1]
    slope_lo = (zp[1] - zp[0]) / max(lp[1] - lp[0], 1e-9)
    slope_hi = (zp[-1] - zp[-2]) / max(lp[-1] - lp[-2], 1e-9)
    prior_z[lo] = zp[0] + (levels[lo] - lp[0]) * slope_lo
    prior_z[hi] = zp[-1] + (levels[hi] - lp[-1]) * slope_hi
    half_lo = abs(lp[1] - lp[0]) / 2.0
    half_hi = abs(lp[-1] - lp[-2]) / 2.0
    in_coverage = (levels >= lp[0] - half_lo - 1e-9) & (levels <= lp[-1] + half_hi + 1e-9)
    return prior_z, in_coverage


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Anatomy:
    """Coarse landmarks of the source, in source-frame mm (x=col, y=row, z=grid z)."""

    center_xy: tuple[float, float]
    half_size_xy: tuple[float, float]
    diaphragm_z: float | None  # grid z of the lung bases, None without lungs
    max_fov: float  # widest field of view that shows no crop edge of the source


def _analyse(vox: np.ndarray, sx: float, sy: float, zg: np.ndarray) -> _Anatomy:
    """Find the body box and the lung bases on a 4x in-plane subsample."""
    step = 4 if min(vox.shape[1:]) >= 128 else 1
    small = vox[:, ::step, ::step]
    body = small > BODY_THRESHOLD_HU
    # The body box comes from each slice's largest blob after an opening of
    # about 15 mm, which detaches the table, blankets and cables (the table
    # alone often spans the whole field of view).
    radius_px = max(1, int(round(7.5 / (step * min(sx, sy)))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)
    trunk = np.zeros(body.shape, dtype=bool)
    for k in range(0, len(body), max(1, len(body) // 24)):
        opened = cv2.morphologyEx(body[k].astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        if n > 1:
            trunk[k] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    cols = np.flatnonzero(trunk.any(axis=(0, 1)))
    rows = np.flatnonzero(trunk.any(axis=(0, 2)))
    if len(cols) == 0 or len(rows) == 0:
        cols = np.arange(small.shape[2])
        rows = np.arange(small.shape[1])
    x0, x1 = cols[0] * step * sx, cols[-1] * step * sx
    y0, y1 = rows[0] * step * sy, rows[-1] * step * sy
    # Lungs: air enclosed by the body (outside air is flood-filled from the border).
    lung_frac = np.zeros(len(small))
    for k, sl in enumerate(body):
        area = sl.sum()
        if area < 50:
            continue
        outside = (~sl).astype(np.uint8)
        padded = np.pad(outside, 1, constant_values=1)
        mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
        cv2.floodFill(padded, mask, (0, 0), 2)
        inner_air = (padded[1:-1, 1:-1] == 1).sum()
        lung_frac[k] = inner_air / (area + inner_air)
    lung_slices = np.flatnonzero(lung_frac > 0.15)
    diaphragm = float(zg[lung_slices[0]]) if len(lung_slices) >= 2 else None
    # Where the body runs into the source's own crop (arms, a tight field of
    # view), a wider simulated field would show straight cut edges through the
    # body, a give-away no real scan has; elsewhere the source is padded with air.
    # The posterior edge is ignored (it is usually the table), and an anterior
    # crop touching under 5 % of that border (a belly on a few slices) is
    # tolerated: capping for it would shrink every slice's field of view.
    limit = 500.0
    if max(body[:, :, 0].mean(), body[:, :, -1].mean()) > 0.03:
        limit = min(limit, vox.shape[2] * sx)
    if body[:, 0, :].mean() > 0.05:
        limit = min(limit, vox.shape[1] * sy)
    return _Anatomy(
        max_fov=limit,
        center_xy=((x0 + x1) / 2, (y0 + y1) / 2),
        half_size_xy=(max((x1 - x0) / 2, 20.0), max((y1 - y0) / 2, 20.0)),
        diaphragm_z=diaphragm,
    )


def _breathing(p: np.ndarray, anat: _Anatomy, amp: float, ap: float, lr: float, zd: float):
    """Breathing displacement (mm) at source-frame points ``p`` (..., 3).

    SI motion follows an asymmetric bell centred on the lung bases (little at
    the apex, fading slowly into the abdomen, as organs under the diaphragm move
    with it), larger posteriorly; on inspiration (``amp`` < 0: diaphragm down)
    the anterior chest wall moves forward and the sides outward.
    """
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    cx, cy = anat.center_xy
    rx, ry = anat.half_size_xy
    dz = z - zd
    sigma = np.where(dz > 0, 90.0, 130.0)
    profile = np.exp(-0.5 * (dz / sigma) ** 2)
    posterior = np.clip((y - cy) / ry, -1.0, 1.0)
    u = np.empty_like(p)
    u[..., 2] = amp * profile * (0.8 + 0.2 * posterior)
    expansion = -amp
    u[..., 1] = -ap * expansion * profile * np.clip((cy - y) / ry, 0.0, 1.0)
    u[..., 0] = lr * expansion * profile * np.clip((x - cx) / rx, -1.0, 1.0)
    return u


def _rotation(deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------- helpers


def _uid(rng: np.random.Generator) -> str:
    """A deterministic (seeded) DICOM UID under the UUID-derived root 2.25."""
    return "2.25." + str(int.from_bytes(rng.bytes(16), "big"))


def _uniform(rng: np.random.Generator, r: Range) -> float:
    lo, hi = float(r[0]), float(r[1])
    return lo if hi <= lo else float(rng.uniform(lo, hi))


def _box_weights(width: float) -> np.ndarray:
    """Taps of a box of ``width`` samples (fractional ends), summing to 1."""
    if width <= 1.0:
        return np.ones(1)
    h = width / 2.0
    n = int(math.ceil(h - 0.5))
    offs = np.arange(-n, n + 1, dtype=np.float64)
    w = np.clip(np.minimum(offs + 0.5, h) - np.maximum(offs - 0.5, -h), 0.0, 1.0)
    return w / w.sum()


def _smooth_z(vol: np.ndarray, width_slices: float) -> np.ndarray:
    """Average along the slice axis over a box (edge slices replicated)."""
    w = _box_weights(width_slices)
    if len(w) == 1:
        return vol
    n = len(w) // 2
    padded = np.pad(vol, ((n, n), (0, 0), (0, 0)), mode="edge")
    out = np.zeros_like(vol)
    for i, wi in enumerate(w):
        out += np.float32(wi) * padded[i : i + len(vol)]
    return out


def _blur_slices(vol: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.15:
        return vol
    for k in range(len(vol)):
        vol[k] = cv2.GaussianBlur(vol[k], (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)
    return vol


def _upsample_slices(vol: np.ndarray, matrix: int) -> np.ndarray:
    """Each slice linearly interpolated to ``matrix`` x ``matrix`` (pixel centres aligned)."""
    out = np.empty((len(vol), matrix, matrix), dtype=np.float32)
    for k in range(len(vol)):
        out[k] = cv2.resize(vol[k], (matrix, matrix), interpolation=cv2.INTER_LINEAR)
    return out


def _bilinear_weights(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.clip(coord, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(c).astype(np.int64), max(n - 2, 0))
    t = c - i0
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, t


# --------------------------------------------------------------------------- simulate


def simulate_followup(
    source: Volume,
    params: SimParams,
    rng: np.random.Generator,
    *,
    study_date: str = "",
    info_overrides: dict[str, Any] | None = None,
) -> SimulatedScan:
    """Simulate another scan of the patient in ``source``, with its true levels.

    Parameters
    ----------
    source
        A display-oriented CT (at least 2 slices).
    params
        Ranges to draw from, e.g. ``SIM_PRESETS["standard"]``.
    rng
        Random generator; the same seed gives the same scan, UIDs included.
    study_date
        ``YYYYMMDD`` of the simulated study ("" keeps none).
    info_overrides
        :class:`SeriesInfo` fields to set on the result (patient name/ID, ...).

    Returns
    -------
    SimulatedScan
        The scan and, per slice, the source level it shows.

    Raises
    ------
    ValueError
        For a source with fewer than 2 slices or without a z extent.
    """
    if source.n_slices < 2:
        raise ValueError("a source needs at least 2 slices to simulate a follow-up")
    src_z = np.asarray(source.slice_z, dtype=np.float64)
    n_src = len(src_z)
    extent = float(src_z[-1] - src_z[0])
    if not extent > 0:
        raise ValueError("the source's slices must be ordered along their normal")
    sx, sy = (float(s) for s in source.geometry.spacing[:2])
    sz = extent / (n_src - 1)  # the resampling grid uses the mean spacing
    zg = src_z[0] + np.arange(n_src) * sz  # source-frame grid z of each source slice
    rows, cols = source.voxels.shape[1:]
    anat = _analyse(source.voxels, sx, sy, zg)
    used: dict[str, Any] = {"source": Path(source.source).name if source.source else ""}

    # -- draw the acquisition ----------------------------------------------------
    rot = np.array([_uniform(rng, (-m, m)) for m in params.rotation_deg])
    shift = np.array([_uniform(rng, (-m, m)) for m in params.shift_mm] + [0.0])
    defo = _uniform(rng, params.deformation_mm) * (1.0 if rng.random() < 0.5 else -1.0)
    coverage = _uniform(rng, params.coverage)
    thickness = _uniform(rng, params.thickness_mm)
    spacing = max(0.5, thickness * _uniform(rng, params.spacing_ratio))
    # Where the body fills the source, the widest crop-free field is narrowed
    # at random so the field of view still varies between scans.
    widest = min(500.0, anat.max_fov * _uniform(rng, params.fov_crop))
    fov = 2 * anat.half_size_xy[0] * _uniform(rng, params.fov_margin)
    fov = float(np.clip(fov, min(150.0, widest), widest))
    matrix = int(rng.choice(np.asarray(params.matrix_sizes)))
    pixel = fov / matrix
    length = max(coverage * extent, spacing)
    z_lo = _uniform(rng, (float(src_z[0]), float(src_z[0]) + extent - length))
    n_out = int(math.floor(length / spacing + 1e-6)) + 1
    sharpen = rng.random() < params.sharpen_probability
    blur_mm = 0.0 if sharpen else _uniform(rng, params.kernel_blur_mm)
    sharpen_amount = _uniform(rng, params.sharpen_amount) if sharpen else 0.0
    noise = _uniform(rng, params.noise_hu)
    contrast = _uniform(rng, params.contrast_delta_hu)
    has_lesion = params.lesion_center is not None or rng.random() < params.lesion_probability
    lesion_r = _uniform(rng, params.lesion_radius_mm)
    lesion_hu = _uniform(rng, params.lesion_hu)
    pad_value = float(rng.choice(np.array([-1024.0, -2000.0, -3024.0])))
    table_z = _uniform(rng, (-params.table_offset_mm, params.table_offset_mm))
    table_xy = rng.uniform(-30.0, 30.0, size=2)

    # -- output grid (source frame, before motion) and the total displacement -----
    cx, cy = anat.center_xy
    grid_origin = np.array([cx - (matrix - 1) * pixel / 2, cy - (matrix - 1) * pixel / 2, z_lo])
    grid_center = grid_origin + np.array(
        [(matrix - 1) * pixel / 2] * 2 + [(n_out - 1) * spacing / 2]
    )
    nodes = 33 if matrix > 64 else 9
    node_step = (matrix - 1) * pixel / (nodes - 1)
    gi = np.arange(nodes) * node_step
    gz = np.arange(n_out) * spacing
    qz, qy, qx = np.meshgrid(gz, gi, gi, indexing="ij")
    q = np.stack([qx, qy, qz], axis=-1) + grid_origin  # (n_out, nodes, nodes, 3)
    rotation = _rotation(rot)
    p_rigid = (q - grid_center) @ rotation.T + grid_center + shift
    zd = (
        anat.diaphragm_z
        if anat.diaphragm_z is not None
        else _uniform(rng, (float(zg[0]), float(zg[-1])))
    )
    u = _breathing(p_rigid, anat, 1.0, params.ap_fraction, params.lr_fraction, zd)
    peak = float(np.max(np.linalg.norm(u, axis=-1)))
    scale = abs(defo) / peak if peak > 1e-9 else 0.0
    u *= scale * np.sign(defo) if defo != 0 else 0.0
    disp = p_rigid + u - q
    max_defo = float(np.max(np.linalg.norm(u, axis=-1))) if scale else 0.0

    # -- prepare the source: contrast phase, lesion, slab and anti-alias blur ------
    vol = source.voxels.astype(np.float32)
    np.maximum(vol, np.float32(_AIR), out=vol)  # outside-FOV padding is air
    if contrast != 0.0:
        # Enhancing tissue (vessels, organs at 100-300 HU) changes with the
        # phase; a trapezoid in HU keeps bone and fat untouched.
        w = np.clip((vol - 80.0) / 40.0, 0, 1) * np.clip((340.0 - vol) / 40.0, 0, 1)
        vol += np.float32(contrast) * w
    lesion_info = None
    if has_lesion:
        lesion_info = _add_lesion(vol, source, params, rng, lesion_r, lesion_hu, zg, (sx, sy, sz))
    slab_width = math.sqrt(max(thickness**2 - sz**2, 0.0)) / sz
    vol = _smooth_z(vol, slab_width + 1.0 if slab_width > 0 else 1.0)
    alias = pixel / min(sx, sy)
    if alias > 1.3:
        vol = _blur_slices(vol, 0.5 * math.sqrt(alias**2 - 1.0))
    # Replicate edge slices so a tilted slice near an end samples anatomy, not air.
    margin = float(np.max(np.abs(disp[..., 2]))) + abs(spacing) + 10.0
    n_pad = int(math.ceil(margin / sz))
    vol = np.pad(vol, ((n_pad, n_pad), (0, 0), (0, 0)), mode="edge")

    src_img = sitk.GetImageFromArray(vol, isVector=False)
    src_img.SetSpacing((sx, sy, sz))
    src_img.SetOrigin((0.0, 0.0, float(zg[0]) - n_pad * sz))
    del vol
    if float(np.max(np.abs(disp))) < _STILL_MM:
        # No motion (the demo's current scan): an identity transform samples the
        # same points five times faster than a zero displacement field.
        transform = sitk.Transform(3, sitk.sitkIdentity)
    else:
        field_img = sitk.GetImageFromArray(disp.astype(np.float64), isVector=True)
        field_img.SetSpacing((node_step, node_step, spacing if n_out > 1 else 1.0))
        field_img.SetOrigin(tuple(float(v) for v in grid_origin))
        transform = sitk.DisplacementFieldTransform(field_img)
    sampled = matrix
    if params.sample_at_source_resolution:
        sampled = min(matrix, int(math.ceil(matrix * pixel / min(sx, sy))))
    # The sampled grid spans the same field; its pixel centres sit where
    # cv2.resize expects them (both grids' outer pixel edges coincide).
    sampled_pixel = matrix * pixel / sampled
    sampled_origin = grid_origin + np.array([(sampled_pixel - pixel) / 2] * 2 + [0.0])
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize((sampled, sampled, n_out))
    resampler.SetOutputSpacing((sampled_pixel, sampled_pixel, spacing))
    resampler.SetOutputOrigin(tuple(float(v) for v in sampled_origin))
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(_AIR)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    out = sitk.GetArrayFromImage(resampler.Execute(src_img))
    if sampled < matrix:
        out = _upsample_slices(out, matrix)

    # -- truth: median level of the body pixels of each output slice -------------
    source_z = _levels(out, disp, q, nodes, node_step, pixel, zg, src_z, sz)

    # -- reconstruction: kernel, noise, reconstruction circle ---------------------
    if sharpen:
        blurred = _blur_slices(out.copy(), 1.0)
        out += np.float32(sharpen_amount) * (out - blurred)
    else:
        _blur_slices(out, blur_mm / pixel)
    if noise > 0:
        n = rng.standard_normal(out.shape, dtype=np.float32)
        _blur_slices(n, 0.6)
        # A 0.6 px Gaussian keeps ~0.47 of white noise's std; restore the target.
        n *= np.float32(noise / 0.47)
        out += n
        del n
    yy, xx = np.mgrid[0:matrix, 0:matrix]
    outside = (xx - (matrix - 1) / 2) ** 2 + (yy - (matrix - 1) / 2) ** 2 > (matrix / 2) ** 2
    np.clip(out, _AIR, _HU_MAX, out=out)
    out[:, outside] = pad_value
    voxels = np.rint(out, out=out).astype(np.int16)

    # -- the new frame of reference ---------------------------------------------
    origin = np.array(
        [-(matrix - 1) * pixel / 2 + table_xy[0], -(matrix - 1) * pixel / 2 + table_xy[1], table_z]
    )
    geom = Geometry(origin=origin, spacing=np.array([pixel, pixel, spacing]), direction=np.eye(3))
    kernel = "SHARP" if sharpen else ("SOFT" if blur_mm > 0.4 else "STANDARD")
    fields: dict[str, Any] = {
        "study_uid": _uid(rng),
        "series_uid": _uid(rng),
        "frame_of_reference_uid": _uid(rng),
        "study_date": study_date,
        "series_number": int(rng.integers(2, 900)),
        "series_description": f"CT {thickness:.1f} mm {kernel.lower()} (simulated)",
        "slice_thickness": round(thickness, 2),
        "convolution_kernel": kernel,
        "manufacturer": "PriorSync simulator",
    }
    fields.update(info_overrides or {})
    info = replace(source.info, **fields)
    volume = Volume(voxels, geom, info=info, source="")
    used.update(
        rotation_deg=rot.tolist(),
        shift_mm=shift[:2].tolist(),
        deformation_mm=round(max_defo, 3) * (1 if defo >= 0 else -1),
        diaphragm_z=None
        if anat.diaphragm_z is None
        else _to_slice_z(anat.diaphragm_z, zg, src_z, sz),
        deformation_center_z=_to_slice_z(zd, zg, src_z, sz),
        coverage=coverage,
        z_range=[
            _to_slice_z(z_lo, zg, src_z, sz),
            _to_slice_z(z_lo + (n_out - 1) * spacing, zg, src_z, sz),
        ],
        thickness_mm=thickness,
        spacing_mm=spacing,
        fov_mm=fov,
        matrix=matrix,
        pixel_mm=pixel,
        kernel=kernel,
        blur_mm=blur_mm,
        sharpen_amount=sharpen_amount,
        noise_hu=noise,
        contrast_delta_hu=contrast,
        lesion=lesion_info,
        outside_fov_value=pad_value,
        table_offset_mm=[float(table_xy[0]), float(table_xy[1]), table_z],
        n_slices=n_out,
    )
    truth = FieldTruth(
        origin=origin,
        spacing=np.array([pixel, pixel, spacing]),
        shape=(n_out, matrix, matrix),
        grid_origin=grid_origin.astype(np.float64),
        field=disp.astype(np.float64),
        field_spacing=np.array([node_step, node_step, spacing if n_out > 1 else 1.0]),
        source=source_grid(source),
    )
    return SimulatedScan(volume, source_z, used, _source_ref(source), truth)


def _to_slice_z(z_grid: Any, zg: np.ndarray, src_z: np.ndarray, sz: float) -> Any:
    """Source-frame grid z to the source's own slice_z (uneven slices honoured)."""
    k = (np.asarray(z_grid, dtype=np.float64) - zg[0]) / sz
    idx = np.arange(len(src_z), dtype=np.float64)
    out = np.interp(k, idx, src_z)
    # Beyond the ends: continue with the mean spacing.
    out = np.where(k < 0, src_z[0] + k * sz, out)
    out = np.where(k > idx[-1], src_z[-1] + (k - idx[-1]) * sz, out)
    return float(out) if np.ndim(out) == 0 else out


def _levels(
    out: np.ndarray,
    disp: np.ndarray,
    q: np.ndarray,
    nodes: int,
    node_step: float,
    pixel: float,
    zg: np.ndarray,
    src_z: np.ndarray,
    sz: float,
) -> np.ndarray:
    """Median source level of each output slice's body pixels (module docstring)."""
    matrix = out.shape[1]
    step = max(1, matrix // 128)
    idx = np.arange(0, matrix, step)
    # Bilinear weights of the sub-grid pixels between field nodes: the same
    # linear interpolation ITK applies to the field during resampling.
    i0, i1, t = _bilinear_weights(idx * pixel / node_step, nodes)
    levels = np.empty(len(out))
    for k in range(len(out)):
        dz = disp[k, :, :, 2]
        qz = q[k, 0, 0, 2]
        rows_i = dz[i0] * (1 - t)[:, None] + dz[i1] * t[:, None]  # (sub rows, nodes)
        full = rows_i[:, i0] * (1 - t)[None, :] + rows_i[:, i1] * t[None, :]
        pz = qz + full
        body = out[k][np.ix_(idx, idx)] > BODY_THRESHOLD_HU
        levels[k] = float(np.median(pz[body] if body.sum() >= 10 else pz))
    return np.asarray(_to_slice_z(levels, zg, src_z, sz), dtype=np.float64)


def _add_lesion(
    vol: np.ndarray,
    source: Volume,
    params: SimParams,
    rng: np.random.Generator,
    radius: float,
    contrast: float,
    zg: np.ndarray,
    spacing: tuple[float, float, float],
) -> dict[str, Any] | None:
    """Add a smooth blob inside the body (in place); returns where, or None."""
    sx, sy, sz = spacing
    geom = source.geometry
    if params.lesion_center is not None:
        ijk = geom.lps_to_index(np.asarray(params.lesion_center, dtype=np.float64))
        center = np.array([ijk[2], ijk[1], ijk[0]])
    else:
        found: np.ndarray | None = None
        # Soft-tissue voxels whose neighbourhood is all body: the lesion stays inside.
        n, h, w = vol.shape
        for _ in range(60):
            c = np.array(
                [rng.uniform(0.1, 0.9) * (n - 1), rng.uniform(0, h - 1), rng.uniform(0, w - 1)]
            )
            k, r, cc = (int(round(v)) for v in c)
            if not (-30 <= vol[k, r, cc] <= 120):
                continue
            rk, rr, rc = (max(1, int(radius * 1.5 / s)) for s in (sz, sy, sx))
            patch = vol[
                max(k - rk, 0) : k + rk + 1,
                max(r - rr, 0) : r + rr + 1,
                max(cc - rc, 0) : cc + rc + 1,
            ]
            if patch.size and np.mean(patch > BODY_THRESHOLD_HU) > 0.97:
                found = c
                break
        if found is None:
            return None
        center = found
    rk, rr, rc = (int(math.ceil(radius * 1.3 / s)) + 1 for s in (sz, sy, sx))
    k0, r0, c0 = (int(round(v)) for v in center)
    ks = slice(max(k0 - rk, 0), min(k0 + rk + 1, vol.shape[0]))
    rs = slice(max(r0 - rr, 0), min(r0 + rr + 1, vol.shape[1]))
    cs = slice(max(c0 - rc, 0), min(c0 + rc + 1, vol.shape[2]))
    if ks.start >= ks.stop or rs.start >= rs.stop or cs.start >= cs.stop:
        return None
    kk, rr_, cc_ = np.meshgrid(
        np.arange(ks.start, ks.stop),
        np.arange(rs.start, rs.stop),
        np.arange(cs.start, cs.stop),
        indexing="ij",
    )
    d2 = (
        ((kk - center[0]) * sz) ** 2 + ((rr_ - center[1]) * sy) ** 2 + ((cc_ - center[2]) * sx) ** 2
    )
    blob = np.clip(1.0 - d2 / radius**2, 0.0, 1.0) ** 2  # smooth edge, peak 1 at the centre
    region = vol[ks, rs, cs]  # a view: the blob is added in place
    region += (np.float32(contrast) * blob * (region > BODY_THRESHOLD_HU)).astype(np.float32)
    lps = geom.index_to_lps(np.array([center[2], center[1], center[0]]))
    return {
        "center_lps": [float(v) for v in lps],
        "center_z": float(np.interp(center[0], np.arange(len(zg)), source.slice_z)),
        "radius_mm": float(radius),
        "contrast_hu": float(contrast),
    }


# --------------------------------------------------------------------------- files


def write_scan(
    scan: SimulatedScan, folder: Path | str, fmt: Literal["dicom", "nifti"] = "dicom"
) -> Path:
    """Write a simulated scan through the application's writers, plus its truth.

    DICOM slices (or ``volume.nii.gz``) go into ``folder`` with a JSON sidecar
    :data:`SIDECAR_NAME` holding ``source_z``, ``slice_z`` and ``params_used``;
    readers skip the sidecar as a non-image file.

    Returns
    -------
    Path
        What :func:`app.io.load.load_volume` opens: ``folder`` or the NIfTI file.
    """
    from app.io.dicom_write import write_dicom_series, write_volume_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        write_dicom_series(scan.volume, folder)
        target = folder
    elif fmt == "nifti":
        target = folder / "volume.nii.gz"
        write_volume_file(scan.volume, target)
    else:
        raise ValueError(f"unknown format {fmt!r}; use 'dicom' or 'nifti'")
    sidecar = {
        "format": fmt,
        "source_ref": scan.source_ref,
        "source_z": [float(v) for v in scan.source_z],
        "slice_z": [float(v) for v in scan.volume.slice_z],
        "params_used": scan.params_used,
    }
    safe_write(folder / SIDECAR_NAME, json.dumps(sidecar, indent=1).encode(), overwrite=True)
    if scan.point_truth is not None:
        write_point_truth(scan.point_truth, folder / FIELD_NAME)
    return target


def read_scan(folder: Path | str) -> SimulatedScan:
    """Read a scan written by :func:`write_scan` back through the real reader.

    Raises
    ------
    ValueError
        When the sidecar is missing or does not match the re-read volume.
    """
    from app.io.load import load_volume

    folder = Path(folder)
    try:
        meta = json.loads((folder / SIDECAR_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"no readable simulation sidecar in {folder}: {exc}") from None
    target = folder if meta.get("format") == "dicom" else folder / "volume.nii.gz"
    volume = load_volume(target)
    source_z = np.asarray(meta["source_z"], dtype=np.float64)
    if len(source_z) != volume.n_slices:
        raise ValueError(
            f"{folder}: the sidecar describes {len(source_z)} slices, found {volume.n_slices}"
        )
    truth = read_point_truth(folder / FIELD_NAME) if (folder / FIELD_NAME).is_file() else None
    return SimulatedScan(
        volume, source_z, meta.get("params_used", {}), meta.get("source_ref", ""), truth
    )
