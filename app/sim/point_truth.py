"""Point ground truth of simulated scans: where a current point lies in a prior.

:mod:`app.sim.followup` samples every output point ``q`` (in the *source
frame*: mm along the source's column, row and uniform slice grid) at the
source point ``p(q) = q + f(q)``, with one displacement field ``f`` (rigid
motion plus breathing) stored on a coarse grid and interpolated linearly, the
same interpolation ITK applies while resampling. A scan's LPS position ``x``
and its grid point ``q`` differ by a constant (the simulated volume has an
identity direction and its own origin), so

* current LPS -> source: ``q = x - origin + grid_origin``, ``p = q + f(q)``;
* source -> prior LPS: solve ``q' + f'(q') = p`` (a fixed-point iteration,
  which converges because ``f'`` changes slowly: a few degrees of rotation
  and a smooth breathing field), then ``x' = q' - grid_origin' + origin'``.

A point is *covered* by a scan when its grid point falls inside the scan's
slices (within half a slice of the ends), inside its reconstruction circle,
and its source point inside the source's own extent (beyond it the simulator
shows replicated edge slices, not the same anatomy).

The real source used as a scan (:func:`app.sim.followup.identity_scan`) maps
through its own voxel grid: ``p = (col * sx, row * sy, z_first + k * sz)`` with
``sz`` the mean slice spacing the simulator resamples with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.core.volume import Volume

if TYPE_CHECKING:
    from app.sim.followup import SimulatedScan

__all__ = [
    "FIELD_NAME",
    "FieldTruth",
    "SourceGrid",
    "from_source",
    "read_point_truth",
    "source_grid",
    "to_source",
    "true_points",
    "write_point_truth",
]

# Beside the simulation sidecar: the scan's displacement field and grids.
FIELD_NAME = "priorsync-sim-field.npz"

# Fixed-point iterations for the inverse map; each one gains about a factor of
# the field's gradient (< 0.3 for the presets), so 40 is far past 1e-6 mm.
_INVERSE_ITERATIONS = 40
_INVERSE_TOL_MM = 1e-4


@dataclass(frozen=True)
class SourceGrid:
    """The source frame's extent: ``(x, y, z)`` mm of the first and last voxel centres."""

    lo: np.ndarray
    hi: np.ndarray
    spacing: np.ndarray

    def contains(self, p: np.ndarray) -> np.ndarray:
        """Whether source-frame points ``(..., 3)`` lie inside (half a voxel of slack)."""
        p = np.asarray(p, dtype=np.float64)
        half = self.spacing / 2.0
        return np.all((p >= self.lo - half - 1e-6) & (p <= self.hi + half + 1e-6), axis=-1)


def source_grid(source: Volume) -> SourceGrid:
    """The source frame of ``source`` as :func:`app.sim.followup.simulate_followup` uses it."""
    z = np.asarray(source.slice_z, dtype=np.float64)
    sx, sy = (float(s) for s in source.geometry.spacing[:2])
    n, rows, cols = source.shape
    sz = float(z[-1] - z[0]) / max(n - 1, 1)
    lo = np.array([0.0, 0.0, float(z[0])])
    hi = np.array([(cols - 1) * sx, (rows - 1) * sy, float(z[0]) + (n - 1) * sz])
    return SourceGrid(lo, hi, np.array([sx, sy, max(sz, 1e-6)]))


@dataclass(frozen=True)
class FieldTruth:
    """What the simulator applied to make one scan, enough to map points exactly.

    Attributes
    ----------
    origin
        LPS (mm) of the scan's voxel ``[0, 0, 0]``.
    spacing
        The scan's voxel size ``(pixel, pixel, slice spacing)`` (mm).
    shape
        The scan's ``(slices, rows, cols)``.
    grid_origin
        Source-frame position (mm) of voxel ``[0, 0, 0]``.
    field
        ``(n_slices, nodes, nodes, 3)`` displacement ``f`` (mm) on the field grid.
    field_spacing
        ``(x, y, z)`` spacing (mm) of the field grid (which starts at ``grid_origin``).
    source
        The source frame's extent.
    """

    origin: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int, int]
    grid_origin: np.ndarray
    field: np.ndarray
    field_spacing: np.ndarray
    source: SourceGrid

    def displacement(self, q: np.ndarray) -> np.ndarray:
        """``f(q)`` at source-frame points ``(N, 3)``: trilinear, clamped at the grid's edge."""
        q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
        f = self.field
        shape_xyz = np.array([f.shape[2], f.shape[1], f.shape[0]], dtype=np.float64)
        c = (q - self.grid_origin) / self.field_spacing
        c = np.clip(c, 0.0, shape_xyz - 1.0)
        i0 = np.minimum(np.floor(c).astype(np.int64), np.maximum(shape_xyz - 2, 0).astype(np.int64))
        t = c - i0
        i1 = np.minimum(i0 + 1, (shape_xyz - 1).astype(np.int64))
        out = np.zeros((len(q), 3))
        for dz in (0, 1):
            kz = i1[:, 2] if dz else i0[:, 2]
            wz = t[:, 2] if dz else 1.0 - t[:, 2]
            for dy in (0, 1):
                ky = i1[:, 1] if dy else i0[:, 1]
                wy = t[:, 1] if dy else 1.0 - t[:, 1]
                for dx in (0, 1):
                    kx = i1[:, 0] if dx else i0[:, 0]
                    wx = t[:, 0] if dx else 1.0 - t[:, 0]
                    out += (wz * wy * wx)[:, None] * f[kz, ky, kx]
        return out

    def grid_point(self, lps: np.ndarray) -> np.ndarray:
        """Source-frame grid point ``q`` of scan LPS points."""
        return np.asarray(lps, dtype=np.float64).reshape(-1, 3) - self.origin + self.grid_origin

    def inside_scan(self, q: np.ndarray) -> np.ndarray:
        """Whether grid points lie within the scan's slices and reconstruction circle."""
        idx = (np.asarray(q, dtype=np.float64).reshape(-1, 3) - self.grid_origin) / self.spacing
        n, rows, cols = self.shape
        in_z = (idx[:, 2] >= -0.5) & (idx[:, 2] <= n - 0.5)
        # The simulator pads outside the circle of radius matrix / 2 (pixels).
        r2 = (idx[:, 0] - (cols - 1) / 2) ** 2 + (idx[:, 1] - (rows - 1) / 2) ** 2
        return in_z & (r2 <= (min(rows, cols) / 2) ** 2)


def to_source(scan: SimulatedScan, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source-frame points shown at ``lps`` (``(N, 3)`` mm) of ``scan``, and whether it images them.

    Raises
    ------
    ValueError
        When the scan carries no point truth (made by an older simulator).
    """
    lps = np.asarray(lps, dtype=np.float64).reshape(-1, 3)
    truth = scan.point_truth
    if truth is None:
        if scan.params_used.get("identity"):
            return _identity_to_source(scan.volume, lps)
        raise ValueError("this simulated scan carries no point ground truth")
    q = truth.grid_point(lps)
    p = q + truth.displacement(q)
    return p, truth.inside_scan(q) & truth.source.contains(p)


def from_source(scan: SimulatedScan, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LPS points of ``scan`` showing source-frame points ``p``, and whether it images them.

    Raises
    ------
    ValueError
        When the scan carries no point truth.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
    truth = scan.point_truth
    if truth is None:
        if scan.params_used.get("identity"):
            return _identity_from_source(scan.volume, p)
        raise ValueError("this simulated scan carries no point ground truth")
    q = p - truth.displacement(p)
    converged = np.zeros(len(p), dtype=bool)
    for _ in range(_INVERSE_ITERATIONS):
        q_next = p - truth.displacement(q)
        step = np.linalg.norm(q_next - q, axis=1)
        q = q_next
        converged = step < _INVERSE_TOL_MM
        if converged.all():
            break
    residual = np.linalg.norm(q + truth.displacement(q) - p, axis=1)
    ok = converged | (residual < 1e-3)
    lps = q - truth.grid_origin + truth.origin
    return lps, ok & truth.inside_scan(q) & truth.source.contains(p)


def _identity_index(volume: Volume, lps: np.ndarray) -> np.ndarray:
    """Continuous ``(col, row, k)`` of LPS points, ``k`` through the actual slice positions."""
    idx = volume.geometry.lps_to_index(lps)
    z = np.asarray(volume.slice_z, dtype=np.float64)
    along = lps @ volume.geometry.normal
    ks = np.arange(len(z), dtype=np.float64)
    order = np.argsort(z)
    k = np.interp(along, z[order], ks[order])
    sz = (z[-1] - z[0]) / max(len(z) - 1, 1)
    # Beyond the ends: continue with the mean spacing.
    lo, hi = z[order][0], z[order][-1]
    k = np.where(along < lo, ks[order][0] + (along - lo) / sz, k)
    k = np.where(along > hi, ks[order][-1] + (along - hi) / sz, k)
    idx[:, 2] = k
    return idx


def _identity_to_source(volume: Volume, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = source_grid(volume)
    idx = _identity_index(volume, lps)
    p = grid.lo + idx * grid.spacing
    return p, grid.contains(p)


def _identity_from_source(volume: Volume, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = source_grid(volume)
    idx = (p - grid.lo) / grid.spacing
    ks = np.arange(volume.n_slices, dtype=np.float64)
    pos = volume.slice_positions
    k = np.clip(idx[:, 2], 0.0, ks[-1])
    origin = np.column_stack([np.interp(k, ks, pos[:, a]) for a in range(3)])
    g = volume.geometry
    lps = origin + (idx[:, :2] * g.spacing[:2]) @ g.direction[:, :2].T
    return lps, grid.contains(p)


def true_points(
    current: SimulatedScan, prior: SimulatedScan, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The prior LPS point showing each current LPS point, and whether both image it.

    Parameters
    ----------
    current, prior
        Two scans simulated from the same source volume.
    points
        ``(N, 3)`` LPS mm in the current scan.

    Returns
    -------
    prior_points, covered
        ``(N, 3)`` LPS mm in the prior and ``(N,)`` bool: False where the
        current does not image the point or the prior does not show its anatomy.

    Raises
    ------
    ValueError
        When the scans come from different sources or carry no point truth.
    """
    if current.source_ref != prior.source_ref:
        raise ValueError("the two scans were simulated from different source volumes")
    p, in_current = to_source(current, points)
    out, in_prior = from_source(prior, p)
    return out, in_current & in_prior


def write_point_truth(truth: FieldTruth, path: Path) -> None:
    """Save ``truth`` as an ``.npz`` (atomically: a reader sees the old file or the new one)."""
    from app.io.safe_write import replacing

    with replacing(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            origin=truth.origin,
            spacing=truth.spacing,
            shape=np.asarray(truth.shape, dtype=np.int64),
            grid_origin=truth.grid_origin,
            field=truth.field.astype(np.float32),
            field_spacing=truth.field_spacing,
            source_lo=truth.source.lo,
            source_hi=truth.source.hi,
            source_spacing=truth.source.spacing,
        )


def read_point_truth(path: Path) -> FieldTruth:
    """Read a file written by :func:`write_point_truth`.

    Raises
    ------
    ValueError
        When the file is unreadable or not a point-truth file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return FieldTruth(
                origin=np.asarray(data["origin"], dtype=np.float64),
                spacing=np.asarray(data["spacing"], dtype=np.float64),
                shape=tuple(int(v) for v in data["shape"]),  # type: ignore[arg-type]
                grid_origin=np.asarray(data["grid_origin"], dtype=np.float64),
                field=np.asarray(data["field"], dtype=np.float64),
                field_spacing=np.asarray(data["field_spacing"], dtype=np.float64),
                source=SourceGrid(
                    np.asarray(data["source_lo"], dtype=np.float64),
                    np.asarray(data["source_hi"], dtype=np.float64),
                    np.asarray(data["source_spacing"], dtype=np.float64),
                ),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"cannot read the point truth {path}: {exc}") from None
