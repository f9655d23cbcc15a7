"""Masked normalised cross-correlation of a 3-D template at every offset in a region.

Only voxels that both scans image count (Padfield's masked NCC, "Masked
object registration in the Fourier domain", IEEE TIP 2012): a block near the
end of a series, or beyond its field of view, is compared over the anatomy
the two blocks share, not against padding, which would pull matches inwards.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_OVERLAP", "ncc_at", "ncc_map", "peak_subvoxel"]

# Least fraction of the template's voxels that must be compared at an offset.
MIN_OVERLAP = 0.5
_AXES = (0, 1, 2)


def ncc_map(
    template: np.ndarray,
    region: np.ndarray,
    template_mask: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
) -> np.ndarray:
    """NCC of ``template`` with every same-sized block of ``region`` (valid offsets only).

    Parameters
    ----------
    template
        ``(tz, ty, tx)`` values.
    region
        ``(rz, ry, rx)`` values, each at least the template's size.
    template_mask, region_mask
        Where each holds image (True) rather than padding; all True when ``None``.

    Returns
    -------
    np.ndarray
        ``(rz - tz + 1, ry - ty + 1, rx - tx + 1)`` correlation in [-1, 1] over
        the voxels both masks keep; 0 where under :data:`MIN_OVERLAP` of the
        template is compared or either block is flat.
    """
    t = np.asarray(template, dtype=np.float64)
    r = np.asarray(region, dtype=np.float64)
    if (template_mask is None or template_mask.all()) and (
        region_mask is None or region_mask.all()
    ):
        return _plain_ncc(t, r)
    mt = np.ones(t.shape) if template_mask is None else np.asarray(template_mask, dtype=np.float64)
    mr = np.ones(r.shape) if region_mask is None else np.asarray(region_mask, dtype=np.float64)
    out_shape = tuple(a - b + 1 for a, b in zip(r.shape, t.shape, strict=True))
    if min(out_shape) < 1:
        return np.zeros(tuple(max(s, 0) for s in out_shape))
    # Centre both on their masked means: the sums below then stay well conditioned.
    t = (t - (t * mt).sum() / max(mt.sum(), 1.0)) * mt
    r = (r - (r * mr).sum() / max(mr.sum(), 1.0)) * mr
    fshape = r.shape

    def spec(a: np.ndarray) -> np.ndarray:
        return np.fft.rfftn(a, fshape, axes=_AXES)

    tz, ty, tx = t.shape

    def corr(ft: np.ndarray, fr: np.ndarray) -> np.ndarray:
        full = np.fft.irfftn(ft * fr, fshape, axes=_AXES)
        return full[tz - 1 :, ty - 1 :, tx - 1 :][: out_shape[0], : out_shape[1], : out_shape[2]]

    flip = (slice(None, None, -1),) * 3
    f_t, f_mt, f_t2 = spec(t[flip]), spec(mt[flip]), spec((t * t)[flip])
    f_r, f_mr, f_r2 = spec(r), spec(mr), spec(r * r)
    n = np.rint(corr(f_mt, f_mr))
    s_t = corr(f_t, f_mr)
    s_r = corr(f_mt, f_r)
    s_tr = corr(f_t, f_r)
    s_t2 = corr(f_t2, f_mr)
    s_r2 = corr(f_mt, f_r2)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = s_tr - s_t * s_r / n
        var_t = np.maximum(s_t2 - s_t * s_t / n, 0.0)
        var_r = np.maximum(s_r2 - s_r * s_r / n, 0.0)
        denom = np.sqrt(var_t * var_r)
        # Flat blocks (air, a uniform organ) carry no evidence.
        floor = 1e-3 * n
        ok = (n >= MIN_OVERLAP * mt.sum()) & (var_t > floor) & (var_r > floor) & (n > 0)
        out = np.where(ok, num / np.where(ok, denom, 1.0), 0.0)
    return np.clip(out, -1.0, 1.0)


def ncc_at(
    a: np.ndarray, b: np.ndarray, a_mask: np.ndarray | None = None, b_mask: np.ndarray | None = None
) -> float:
    """NCC of two same-shaped blocks over the voxels both masks keep (one offset of :func:`ncc_map`).

    0 when under :data:`MIN_OVERLAP` of ``a``'s kept voxels are compared or either block is flat.
    """
    keep = np.ones(a.shape, dtype=bool) if a_mask is None else np.asarray(a_mask, dtype=bool)
    n_a = int(keep.sum())
    if b_mask is not None:
        keep = keep & np.asarray(b_mask, dtype=bool)
    n = int(keep.sum())
    if n == 0 or n < MIN_OVERLAP * n_a:
        return 0.0
    x = np.asarray(a, dtype=np.float64)[keep]
    y = np.asarray(b, dtype=np.float64)[keep]
    x = x - x.mean()
    y = y - y.mean()
    vx, vy = float(x @ x), float(y @ y)
    floor = 1e-3 * n
    if vx <= floor or vy <= floor:
        return 0.0
    return float(np.clip((x @ y) / np.sqrt(vx * vy), -1.0, 1.0))


def _box_sums(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum of ``a`` over every ``shape`` box fully inside it (summed-area volume)."""
    c = np.zeros(tuple(n + 1 for n in a.shape), dtype=np.float64)
    c[1:, 1:, 1:] = a.cumsum(0).cumsum(1).cumsum(2)
    tz, ty, tx = shape
    return (
        c[tz:, ty:, tx:]
        - c[:-tz, ty:, tx:]
        - c[tz:, :-ty, tx:]
        - c[tz:, ty:, :-tx]
        + c[:-tz, :-ty, tx:]
        + c[:-tz, ty:, :-tx]
        + c[tz:, :-ty, :-tx]
        - c[:-tz, :-ty, :-tx]
    )


def _plain_ncc(t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """:func:`ncc_map` without masks: one correlation and two box sums (3 FFTs, not 12)."""
    n = t.size
    out_shape = tuple(a - b + 1 for a, b in zip(r.shape, t.shape, strict=True))
    if min(out_shape) < 1:
        return np.zeros(tuple(max(s, 0) for s in out_shape))
    t0 = t - t.mean()
    t_var = float(np.sum(t0 * t0))
    r = r - r.mean()  # conditioning of the box sums
    fshape = r.shape
    full = np.fft.irfftn(
        np.fft.rfftn(r, fshape, axes=_AXES)
        * np.fft.rfftn(t0[::-1, ::-1, ::-1], fshape, axes=_AXES),
        fshape,
        axes=_AXES,
    )
    tz, ty, tx = t.shape
    num = full[tz - 1 :, ty - 1 :, tx - 1 :][: out_shape[0], : out_shape[1], : out_shape[2]]
    s1 = _box_sums(r, t.shape)
    var_r = np.maximum(_box_sums(r * r, t.shape) - s1 * s1 / n, 0.0)
    floor = 1e-3 * n
    if t_var <= floor:
        return np.zeros(out_shape)
    ok = var_r > floor
    out = np.where(ok, num / np.sqrt(np.where(ok, var_r, 1.0) * t_var), 0.0)
    return np.clip(out, -1.0, 1.0)


def peak_subvoxel(score: np.ndarray, at: tuple[int, int, int]) -> np.ndarray:
    """Sub-voxel ``(z, y, x)`` position of the peak at ``at``: a parabola per axis."""
    pos = np.asarray(at, dtype=np.float64)
    for axis in range(3):
        i = at[axis]
        if 0 < i < score.shape[axis] - 1:
            lo = list(at)
            hi = list(at)
            lo[axis] -= 1
            hi[axis] += 1
            a, b, c = score[tuple(lo)], score[at], score[tuple(hi)]
            d = a - 2 * b + c
            if d < -1e-12:
                pos[axis] += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    return pos
