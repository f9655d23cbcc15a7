"""Turning any voxel axis order into the radiological display convention.

Display convention (axial): column index grows toward the patient's Left, row
index toward Posterior, slice index toward Superior ("LPS" in ITK's naming).
Painting ``voxels[k]`` with row 0 at the top and column 0 at the left then puts
the patient's right on the screen's left and anterior up, as radiologists read.
"""

from __future__ import annotations

import numpy as np

from app.core.volume import Geometry, Volume

__all__ = ["axis_permutation", "to_display_orientation", "direction_label", "is_oblique"]

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # negative, positive direction of LPS axes


def axis_permutation(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each LPS axis, the index axis closest to it and its sign.

    Returns
    -------
    perm, sign
        ``perm[d]`` is the index axis (0=col, 1=row, 2=slice) that best follows
        LPS axis ``d``; ``sign[d]`` is +1 if it points the same way, -1 if not.
    """
    direction = np.asarray(direction, dtype=np.float64)
    remaining = [0, 1, 2]
    perm = np.zeros(3, dtype=int)
    sign = np.ones(3, dtype=int)
    # Greedy by largest absolute cosine so a 45° oblique still yields a permutation.
    pairs = sorted(((abs(direction[d, a]), d, a) for d in range(3) for a in range(3)), reverse=True)
    used_d: set[int] = set()
    for _, d, a in pairs:
        if d in used_d or a not in remaining:
            continue
        perm[d] = a
        sign[d] = 1 if direction[d, a] >= 0 else -1
        used_d.add(d)
        remaining.remove(a)
    return perm, sign


def to_display_orientation(volume: Volume) -> Volume:
    """Reorder and flip voxel axes so the volume follows the display convention.

    Only axis permutations and flips are applied (no resampling), so HU values are
    untouched; any residual obliquity stays in ``geometry.direction``. Arrays are
    returned as views where numpy allows and made contiguous once.
    """
    g = volume.geometry
    perm, sign = axis_permutation(g.direction)
    if np.array_equal(perm, [0, 1, 2]) and np.all(sign == 1):
        return volume
    # numpy axis of index axis a is 2 - a (voxels are slice, row, col).
    vox = np.transpose(volume.voxels, [2 - perm[2], 2 - perm[1], 2 - perm[0]])
    shape_xyz = np.array([vox.shape[2], vox.shape[1], vox.shape[0]])
    flips = []
    for d in range(3):
        if sign[d] < 0:
            flips.append(2 - d)
    if flips:
        vox = np.flip(vox, axis=tuple(flips))
    new_dir = g.direction[:, perm] * sign[np.newaxis, :]
    new_spacing = g.spacing[perm]
    # New origin: the old-index position of the new voxel [0, 0, 0].
    old_ijk = np.zeros(3)
    for d in range(3):
        a = perm[d]
        old_ijk[a] = 0 if sign[d] > 0 else shape_xyz[d] - 1
    new_origin = g.index_to_lps(old_ijk)
    geom = Geometry(origin=new_origin, spacing=new_spacing, direction=new_dir)
    positions = None
    if perm[2] == 2 and volume.slice_positions is not None:
        # Slices kept their identity: keep measured (possibly uneven) positions,
        # shifted to the new first in-plane voxel.
        positions = volume.slice_positions[:: sign[2]]
        in_plane_shift = new_origin - (g.origin if sign[2] > 0 else volume.slice_positions[-1])
        positions = positions + in_plane_shift
    return volume.with_voxels(np.ascontiguousarray(vox), geom, positions)


def direction_label(vector: np.ndarray, secondary: float = 0.25) -> str:
    """Orientation letters for an LPS direction, e.g. ``"L"`` or ``"LA"`` when oblique."""
    v = np.asarray(vector, dtype=np.float64)
    order = np.argsort(-np.abs(v))
    out = ""
    for d in order:
        if abs(v[d]) < secondary and out:
            break
        out += _LETTERS[d][1 if v[d] > 0 else 0]
    return out


def is_oblique(direction: np.ndarray, tolerance_deg: float = 1.0) -> bool:
    """True when any index axis deviates from its nearest LPS axis by more than the tolerance."""
    cosines = np.max(np.abs(np.asarray(direction)), axis=0)
    return bool(np.any(cosines < np.cos(np.deg2rad(tolerance_deg))))
