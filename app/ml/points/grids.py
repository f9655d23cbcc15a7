"""A series resampled onto LPS-aligned isotropic grids, with its body mask.

Point matching compares 3-D patches of two series. Each series is resampled
once (at preparation, not per point) onto axis-aligned LPS grids of
:data:`FINE_MM` and :data:`COARSE_MM` voxels, so a patch around any point is a
plain array slice whatever the series' orientation, pixel spacing or slice
spacing. The grids are padded with air so that a patch near the edge of the
field of view is a slice too; the padding reads as "outside this scan".

The body mask (HU above :data:`BODY_HU`, only the largest blob of each axial
plane after an opening of a few mm, so the table and blankets fall off, and
its convex hull, so lungs and bowel gas count as body) decides "outside the
body".
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import SimpleITK as sitk

from app.core.imaging import BODY_THRESHOLD_HU
from app.core.volume import Volume

__all__ = ["BODY_HU", "COARSE_MM", "FINE_MM", "PAD_VOXELS", "SeriesGrid", "build_grid", "mask_on"]

# The core body threshold; this mask differs from app.core.body.body_mask on purpose
# (an opening that detaches the table, and a convex hull where the field of view
# cuts the body open), so only the threshold is shared.
BODY_HU = float(BODY_THRESHOLD_HU)
FINE_MM = 2.0
COARSE_MM = 4.0
# Air padding around each grid, in its voxels: at least a template half-size
# plus the search radius of that level (see app.ml.points.locate).
PAD_VOXELS = 24
_AIR = -1024.0
# Below this a voxel is a scanner's padding (-2000, -3024), not air.
_PAD_HU = -1100
_HU_MIN, _HU_MAX = -1024.0, 2000.0
# Opening radius (mm) that detaches the table and cables from the body.
_OPEN_MM = 5.0


@dataclass
class GridLevel:
    """One resampled level: ``voxels[z, y, x]`` at LPS ``origin + (x, y, z) * spacing``.

    ``valid`` marks the voxels the series images (not padding, not beyond its
    field of view).
    """

    voxels: np.ndarray
    origin: np.ndarray
    spacing: float
    valid: np.ndarray

    def index_of(self, lps: np.ndarray) -> np.ndarray:
        """Continuous ``(x, y, z)`` grid index of LPS points ``(..., 3)``."""
        return (np.asarray(lps, dtype=np.float64) - self.origin) / self.spacing

    def lps_of(self, index: np.ndarray) -> np.ndarray:
        """LPS of continuous ``(x, y, z)`` grid indices."""
        return self.origin + np.asarray(index, dtype=np.float64) * self.spacing

    def patch(
        self, centre: np.ndarray, half: tuple[int, int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``(2hz+1, 2hy+1, 2hx+1)`` block centred on integer index ``centre`` (x, y, z).

        Returns the values (air outside the padded grid) and the block of ``valid``.
        """
        cx, cy, cz = (int(v) for v in centre)
        hx, hy, hz = half
        out = np.full((2 * hz + 1, 2 * hy + 1, 2 * hx + 1), _AIR, dtype=np.float32)
        mask = np.zeros(out.shape, dtype=bool)
        nz, ny, nx = self.voxels.shape
        z0, z1 = cz - hz, cz + hz + 1
        y0, y1 = cy - hy, cy + hy + 1
        x0, x1 = cx - hx, cx + hx + 1
        sz0, sy0, sx0 = max(z0, 0), max(y0, 0), max(x0, 0)
        sz1, sy1, sx1 = min(z1, nz), min(y1, ny), min(x1, nx)
        if sz0 < sz1 and sy0 < sy1 and sx0 < sx1:
            dst = (slice(sz0 - z0, sz1 - z0), slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
            src = (slice(sz0, sz1), slice(sy0, sy1), slice(sx0, sx1))
            out[dst] = self.voxels[src]
            mask[dst] = self.valid[src]
        return out, mask


@dataclass
class SeriesGrid:
    """A series on its fine and coarse grids, with body mask and per-plane body centroids.

    Attributes
    ----------
    fine, coarse
        The :data:`FINE_MM` and :data:`COARSE_MM` levels.
    body
        ``fine``-shaped bool body mask.
    centroids
        ``(nz, 2)`` LPS ``(x, y)`` of the body in each fine axial plane (NaN without body).
    """

    fine: GridLevel
    coarse: GridLevel
    body: np.ndarray
    centroids: np.ndarray

    def in_body(self, lps: np.ndarray) -> bool:
        """Whether an LPS point lies in the body (nearest fine voxel)."""
        idx = np.rint(self.fine.index_of(lps)).astype(np.int64)
        nz, ny, nx = self.body.shape
        x, y, z = (int(v) for v in idx)
        if not (0 <= x < nx and 0 <= y < ny and 0 <= z < nz):
            return False
        return bool(self.body[z, y, x])

    def centroid_at(self, z_lps: float) -> np.ndarray | None:
        """Body centroid ``(x, y)`` (LPS mm) of the fine plane nearest LPS height ``z_lps``."""
        k = int(round((z_lps - self.fine.origin[2]) / self.fine.spacing))
        if not 0 <= k < len(self.centroids):
            return None
        c = self.centroids[k]
        return None if not np.all(np.isfinite(c)) else c


def _to_image(volume: Volume) -> tuple[sitk.Image, sitk.Image]:
    """The volume as a float32 SimpleITK image in LPS, block-averaged towards :data:`FINE_MM`.

    Integer block averaging (``BinShrink``) first keeps a 512 x 512 series from
    being copied to float at full size; the remaining anti-aliasing happens in
    :func:`_resample`. The second image is 1 where the series images anatomy:
    values below :data:`_PAD_HU` are a scanner's outside-the-field padding.
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels))
    valid = sitk.GetImageFromArray((volume.voxels >= _PAD_HU).astype(np.uint8))
    g = volume.geometry
    img.SetOrigin(tuple(float(v) for v in volume.slice_positions[0]))
    spacing = np.array(g.spacing, dtype=np.float64)
    z = np.asarray(volume.slice_z, dtype=np.float64)
    if len(z) > 1:
        # Uneven slices: the mean spacing (the readers report a warning).
        spacing[2] = abs(float(z[-1] - z[0])) / (len(z) - 1)
    img.SetSpacing(tuple(float(max(v, 1e-3)) for v in spacing))
    direction = np.array(g.direction, dtype=np.float64)
    if len(z) > 1 and z[-1] < z[0]:
        direction[:, 2] = -direction[:, 2]
    img.SetDirection(tuple(float(v) for v in direction.reshape(-1)))
    valid.CopyInformation(img)
    shrink = [max(1, int(FINE_MM / s)) for s in img.GetSpacing()]
    img = sitk.Cast(img, sitk.sitkFloat32)
    valid = sitk.Cast(valid, sitk.sitkFloat32)
    if any(f > 1 for f in shrink):
        img = sitk.BinShrink(img, shrink)
        valid = sitk.BinShrink(valid, shrink)
    img = sitk.Clamp(img, sitk.sitkFloat32, _HU_MIN, _HU_MAX)
    return img, valid


def _resample(
    img: sitk.Image, spacing: float, default: float = _AIR, smooth: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased resampling onto an identity-direction grid padded with ``default``."""
    size = np.array(img.GetSize())
    corners = np.array(
        [
            img.TransformContinuousIndexToPhysicalPoint([float(c) for c in (cx, cy, cz)])
            for cx in (-0.5, size[0] - 0.5)
            for cy in (-0.5, size[1] - 0.5)
            for cz in (-0.5, size[2] - 0.5)
        ]
    )
    lo = corners.min(axis=0) - PAD_VOXELS * spacing
    hi = corners.max(axis=0) + PAD_VOXELS * spacing
    out_size = [int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True)]
    src_spacing = np.array(img.GetSpacing())
    sigma = 0.5 * np.sqrt(np.maximum(spacing**2 - src_spacing**2, 0.0))
    if smooth and np.any(sigma > 0.05):
        img = sitk.SmoothingRecursiveGaussian(img, [float(max(s, 1e-3)) for s in sigma])
    res = sitk.Resample(
        img,
        out_size,
        sitk.Transform(),
        sitk.sitkLinear,
        tuple(float(v) for v in lo),
        (spacing,) * 3,
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        default,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(res), lo


def _body_mask(vox: np.ndarray, spacing: float) -> np.ndarray:
    """Convex hull of the largest body blob of each axial plane (module docstring)."""
    radius = max(1, int(round(_OPEN_MM / spacing)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    body = np.zeros(vox.shape, dtype=bool)
    for k in range(len(vox)):
        sl = (vox[k] > BODY_HU).astype(np.uint8)
        if sl.sum() < 20:
            continue
        sl = cv2.morphologyEx(sl, cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sl, connectivity=8)
        if n <= 1:
            continue
        blob = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        # The convex hull keeps lungs and bowel gas inside even where the field
        # of view cuts the body open (filling holes would then leak).
        contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.convexHull(np.concatenate(contours))
        filled = np.zeros_like(blob)
        cv2.fillPoly(filled, [hull], 1)
        body[k] = filled > 0
    return body


def build_grid(volume: Volume) -> SeriesGrid:
    """Resample ``volume`` onto the fine and coarse grids and find its body.

    Parameters
    ----------
    volume
        A CT volume (HU), any orientation.
    """
    img, valid = _to_image(volume)
    fine, fine_origin = _resample(img, FINE_MM)
    coarse, coarse_origin = _resample(img, COARSE_MM)
    # A voxel counts as imaged when most of what it averages is.
    fine_valid = _resample(valid, FINE_MM, 0.0, smooth=False)[0] > 0.5
    coarse_valid = _resample(valid, COARSE_MM, 0.0, smooth=False)[0] > 0.5
    body = _body_mask(fine, FINE_MM)
    ys, xs = np.mgrid[0 : body.shape[1], 0 : body.shape[2]]
    area = body.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (body * xs).sum(axis=(1, 2)) / area
        cy = (body * ys).sum(axis=(1, 2)) / area
    centroids = np.column_stack([fine_origin[0] + cx * FINE_MM, fine_origin[1] + cy * FINE_MM])
    centroids[area < 20] = np.nan
    return SeriesGrid(
        GridLevel(fine, fine_origin, FINE_MM, fine_valid),
        GridLevel(coarse, coarse_origin, COARSE_MM, coarse_valid),
        body,
        centroids,
    )


def mask_on(mask: np.ndarray, source: GridLevel, target: GridLevel) -> np.ndarray:
    """A ``source``-shaped bool mask sampled (nearest voxel) at ``target``'s voxel centres.

    Both levels are axis-aligned LPS grids, so this is an index lookup per axis.
    """
    nz, ny, nx = target.voxels.shape
    idx = []
    for axis, n in zip((0, 1, 2), (nx, ny, nz), strict=True):
        lps = target.origin[axis] + np.arange(n) * target.spacing
        k = np.rint((lps - source.origin[axis]) / source.spacing).astype(np.int64)
        idx.append(k)
    kx, ky, kz = idx
    sz, sy, sx = mask.shape
    out = np.zeros((nz, ny, nx), dtype=bool)
    okx, oky, okz = (kx >= 0) & (kx < sx), (ky >= 0) & (ky < sy), (kz >= 0) & (kz < sz)
    out[np.ix_(okz, oky, okx)] = mask[np.ix_(kz[okz], ky[oky], kx[okx])]
    return out
