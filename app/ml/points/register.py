"""Whole-pair 3-D registration on the point grids, started from the slice engine's answer.

Once per pair, after the slice match (:mod:`app.ml.points.locate`), the two
series' fine grids (2 mm, LPS-aligned, :mod:`app.ml.points.grids`) are
registered with SimpleITK:

1. **Rigid** (Euler 3-D), *initialised* by the slice engine's level mapping
   and the global in-plane shift, so the optimiser starts in the right basin
   (started from the centres of mass, rigid registration sometimes falls tens
   of mm off on partial scans); the metric sees only the current's body at
   levels the prior images (a fixed mask), so anatomy the prior never imaged
   cannot pull it.
2. **B-spline** on top (control points every :data:`BSPLINE_MESH_MM`), for
   breathing and other smooth deformation.

Both run on a shrunk pyramid of the coarse grids (8 and 4 mm), so a pair
takes seconds, not the minutes of a full-resolution registration; the rigid
stage then takes one more level on the fine 2 mm grids, from its coarse
answer (on the 4 mm grids it stopped short: validation median 0.70 mm
against 0.16 mm with the fine level, standard pairs). Whether a
transform is trusted is decided by the caller against independent evidence
(the anchor block matches of :meth:`app.ml.points.locate.PointPair.fit_affine`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

from app.ml.anatomy.registration import SAMPLING_SEED
from app.ml.points.grids import GridLevel

__all__ = [
    "BSPLINE_MESH_MM",
    "GridRegistration",
    "RegisterParams",
    "map_points",
    "nearest_rotation",
    "register_grids",
]

# Control-point spacing of the B-spline (mm): the simulated and real breathing
# fields vary over ~100 mm; 50-60 mm resolves them without fitting noise.
BSPLINE_MESH_MM = 50.0


@dataclass(frozen=True)
class RegisterParams:
    """Settings of :func:`register_grids` (chosen on validation pairs).

    ``shrink``: pyramid shrink factors of the 2 mm grids; ``sampling``: fraction
    of the fixed mask's voxels the metric samples; ``rigid_iterations`` /
    ``bspline_iterations``: optimiser iterations per level; ``bspline``: run
    the deformable stage at all; ``mesh_mm``: its control-point spacing;
    ``bspline_metric``: ``"mi"`` (Mattes mutual information) or
    ``"correlation"``; ``seed``: the sampling's seed (reproducible; 0 would be SimpleITK's
    clock seed, a new sample each run).
    ``fine_rigid_iterations``: iterations of a last rigid level on the fine
    (2 mm) grids, started from the coarse rigid answer (0: none), with
    ``fine_sampling`` of the fine mask's voxels.
    On a hard validation pair (chest-lung2) mutual information at 5 %
    sampling and 30 iterations gave 0.84 / 2.54 mm (median / p95) in 12 s of
    CPU; correlation 2.7 / 10.8 mm; 10 % and 40 iterations 0.71 / 2.63 mm in 27 s.
    """

    shrink: tuple[int, ...] = (2, 1)
    sampling: float = 0.05
    rigid_iterations: int = 100
    bspline_iterations: int = 30
    bspline: bool = True
    mesh_mm: float = BSPLINE_MESH_MM
    bspline_metric: str = "mi"
    seed: int = SAMPLING_SEED
    fine_rigid_iterations: int = 100
    fine_sampling: float = 0.05


@dataclass(frozen=True)
class GridRegistration:
    """What :func:`register_grids` found; every transform maps current LPS to prior LPS.

    Attributes
    ----------
    coarse_rigid
        The rigid stage on the coarse grids.
    rigid
        The rigid stage after its fine level (``coarse_rigid`` itself when
        the fine level is off or fails).
    deformable
        The B-spline on top of ``rigid``, composed with it; ``None`` when the
        stage is off or fails.
    """

    coarse_rigid: Any
    rigid: Any
    deformable: Any | None

    def candidates(self) -> list[tuple[str, Any]]:
        """``(name, transform)`` of each distinct transform, the B-spline first."""
        out: list[tuple[str, Any]] = []
        if self.deformable is not None:
            out.append(("B-spline", self.deformable))
        out.append(("rigid", self.rigid))
        if self.coarse_rigid is not self.rigid:
            out.append(("coarse rigid", self.coarse_rigid))
        return out


def _image(level: GridLevel) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(level.voxels, dtype=np.float32))
    img.SetOrigin(tuple(float(v) for v in level.origin))
    img.SetSpacing((float(level.spacing),) * 3)
    return img


def _mask(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    img.CopyInformation(like)
    return img


def _crop(level: GridLevel, mask: np.ndarray) -> tuple[GridLevel, np.ndarray]:
    """``level`` and ``mask`` cut to the mask's bounding box.

    Only the masked box takes part in a registration: the B-spline's control
    points then cover the anatomy, not the air padding (the optimiser's cost
    grows with their number), and a fine level samples no padding.
    """
    zs, ys, xs = (np.flatnonzero(np.any(mask, axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    origin = level.origin + np.array([xs[0], ys[0], zs[0]]) * level.spacing
    return GridLevel(level.voxels[box], origin, level.spacing, level.valid[box]), mask[box]


def _method(
    p: RegisterParams,
    mask: sitk.Image,
    iterations: int,
    lbfgs: bool,
    learning_rate: float = 1.0,
    smoothing: tuple[float, ...] | None = None,
) -> Any:
    """The registration method of one stage: metric, sampling, optimiser, pyramid.

    ``learning_rate`` is the gradient-descent step (rigid stages);
    ``smoothing`` the Gaussian sigma (voxels) per pyramid level, by default
    1 voxel on every level but the last (0.5).
    """
    reg = sitk.ImageRegistrationMethod()
    if lbfgs and p.bspline_metric == "correlation":
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(p.sampling, p.seed)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    if lbfgs:
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * iterations,
        )
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=learning_rate,
            minStep=1e-3,
            numberOfIterations=iterations,
            relaxationFactor=0.5,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(p.shrink))
    if smoothing is None:
        smoothing = (1.0,) * (len(p.shrink) - 1) + (0.5,)
    reg.SetSmoothingSigmasPerLevel(list(smoothing))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def register_grids(
    current: GridLevel,
    prior: GridLevel,
    fixed_mask: np.ndarray,
    centre: np.ndarray,
    start: np.ndarray,
    params: RegisterParams | None = None,
    rotation: np.ndarray | None = None,
    fine: tuple[GridLevel, GridLevel, np.ndarray] | None = None,
) -> GridRegistration:
    """Rigid, then B-spline registration of ``current`` (fixed) to ``prior`` (moving).

    Parameters
    ----------
    current, prior
        The two series on their fine grids.
    fixed_mask
        ``current.voxels``-shaped bool: the voxels the metric may use.
    centre
        Current LPS point (mm) the rotation turns about (the body's middle).
    start
        Where the slice engine puts ``centre`` in the prior (LPS mm): the
        rigid stage starts from the translation ``start - centre``.
    params
        Settings; the defaults when ``None``.
    rotation
        ``(3, 3)`` linear part of a first estimate (e.g. the anchor affine);
        the rigid stage starts from its nearest rotation. ``None``: no rotation.
    fine
        ``(current, prior, mask)`` on the fine grids: with
        ``params.fine_rigid_iterations``, a last rigid level there, started
        from the coarse answer (the coarse grids' 4 mm voxels limit a rigid
        fit to about a millimetre; the fine level sharpens it).

    Returns
    -------
    GridRegistration
        The coarse and the final rigid transform, and the B-spline on top.

    Raises
    ------
    RuntimeError
        SimpleITK could not register the pair (too few samples in the mask...).
    """
    p = params or RegisterParams()
    if not np.any(fixed_mask):
        raise RuntimeError("the fixed mask is empty")
    cropped, box_mask = _crop(current, fixed_mask)
    fixed = _image(cropped)
    moving = _image(prior)
    mask = _mask(box_mask, fixed)
    init = sitk.Euler3DTransform()
    init.SetCenter(tuple(float(v) for v in centre))
    if rotation is not None:
        init.SetMatrix(tuple(float(v) for v in nearest_rotation(rotation).reshape(-1)))
    init.SetTranslation(tuple(float(v) for v in np.asarray(start) - np.asarray(centre)))
    reg = _method(p, mask, p.rigid_iterations, lbfgs=False)
    reg.SetInitialTransform(init, inPlace=False)
    coarse_rigid = rigid = reg.Execute(fixed, moving)
    if fine is not None and p.fine_rigid_iterations > 0 and np.any(fine[2]):
        rigid = _refine_rigid(rigid, fine, p)
    if not p.bspline:
        return GridRegistration(coarse_rigid, rigid, None)
    extent = np.array(fixed.GetSize()) * np.array(fixed.GetSpacing())
    mesh = [max(1, int(round(e / p.mesh_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = _method(p, mask, p.bspline_iterations, lbfgs=True)
    reg.SetMovingInitialTransform(rigid)
    reg.SetInitialTransform(bspline, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError:
        return GridRegistration(coarse_rigid, rigid, None)
    # ITK order: the transform added last applies first (the B-spline, then the rigid).
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(rigid)
    composite.AddTransform(bspline)
    return GridRegistration(coarse_rigid, rigid, composite)


def _as_euler(transform: Any) -> Any:
    """The Euler 3-D transform inside a registration's answer (a one-element composite)."""
    if isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
        transform = transform.GetNthTransform(0)
    return sitk.Euler3DTransform(transform.Downcast())


def _refine_rigid(
    rigid: Any, fine: tuple[GridLevel, GridLevel, np.ndarray], p: RegisterParams
) -> Any:
    """One more rigid level on the fine grids, from ``rigid``; ``rigid`` when it fails."""
    current, prior, fine_mask = fine
    cropped, box_mask = _crop(current, fine_mask)
    fixed = _image(cropped)
    # One level at full resolution, unsmoothed, small steps: the coarse level
    # already found the basin; this one only sharpens it and must not jump out.
    level = replace(p, shrink=(1,), sampling=p.fine_sampling)
    reg = _method(
        level,
        _mask(box_mask, fixed),
        p.fine_rigid_iterations,
        lbfgs=False,
        learning_rate=0.25,
        smoothing=(0.0,),
    )
    reg.SetInitialTransform(_as_euler(rigid), inPlace=False)
    try:
        return reg.Execute(fixed, _image(prior))
    except RuntimeError:
        return rigid


def nearest_rotation(linear: np.ndarray) -> np.ndarray:
    """The rotation nearest a ``(3, 3)`` linear map (polar decomposition by SVD)."""
    u, _, vt = np.linalg.svd(np.asarray(linear, dtype=np.float64))
    r = u @ vt
    if np.linalg.det(r) < 0:  # a reflection is no patient motion
        u[:, -1] = -u[:, -1]
        r = u @ vt
    return r


def map_points(transform: Any, points: np.ndarray) -> np.ndarray:
    """``(N, 3)`` LPS points through a SimpleITK transform."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.array([transform.TransformPoint(tuple(float(v) for v in q)) for q in pts])
