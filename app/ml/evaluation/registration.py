"""Whole-volume registrations the point engine is measured against (SimpleITK).

* rigid: :func:`app.ml.evaluation.baselines.rigid_transform` (Euler3D, Mattes MI);
* B-spline: :func:`bspline_transform`, a free-form deformation on top of it.

Both map current (fixed) LPS points to prior (moving) LPS points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.core.volume import Volume

# The slice baselines' image conversion (air at 0, anti-aliased coarsening),
# so both registrations see the same images.
from app.ml.anatomy.registration import SAMPLING_SEED
from app.ml.evaluation.baselines import rigid_transform, to_sitk
from app.ml.points.register import map_points

__all__ = ["BSPLINE_MESH_MM", "bspline_transform", "map_points", "rigid_transform"]

# Control-point spacing of the B-spline grid (mm): breathing varies over
# ~100 mm, so 60 mm resolves it without fitting noise.
BSPLINE_MESH_MM = 60.0


def bspline_transform(
    current: Volume,
    prior: Volume,
    initial: Any,
    seed: int = SAMPLING_SEED,
    voxel_mm: float = 4.0,
    iterations: int = 60,
) -> Any:
    """SimpleITK B-spline deformable registration, initialised by a rigid transform.

    The usual recipe: both volumes at voxels of at least ``voxel_mm``, a cubic
    B-spline grid of about :data:`BSPLINE_MESH_MM` control-point spacing over
    the current, Mattes mutual information (50 bins, 10 % random samples),
    L-BFGS-B, two levels (shrink 2/1, smoothing 1/0 voxels), composed on
    ``initial`` (the rigid result, fixed).

    Returns
    -------
    SimpleITK.Transform
        Current LPS -> prior LPS.
    """
    import SimpleITK as sitk

    fixed = to_sitk(current, voxel_mm)
    moving = to_sitk(prior, voxel_mm)
    extent = np.array(fixed.GetSize()) * np.array(fixed.GetSpacing())
    mesh = [max(1, int(round(e / BSPLINE_MESH_MM))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.10, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * iterations,
    )
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetMovingInitialTransform(initial)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    # The optimised B-spline applies before the fixed rigid part (ITK order:
    # the last added transform applies first).
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(initial)
    composite.AddTransform(bspline)
    return composite
