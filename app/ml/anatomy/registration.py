"""Stage two of "instant, then exact": rigid registration that starts from the engine's answer.

The engine's alignment (:meth:`app.ml.anatomy.match.Matcher.align`) is there at once
and never lands far off; 3-D rigid registration is sharper where it converges
but, started from the centres of mass, sometimes falls into a wrong basin
(tens of millimetres off on partial or breathing-deformed scans). This module
runs the registration *from* the engine's answer:

* the initial transform puts the current's slices where the engine maps them
  (the cranio-caudal offset from the engine; the in-plane shift from the
  centres of mass), so the optimiser starts in the right basin;
* the metric only sees the current slices the engine found inside the prior
  (a fixed-image mask), so anatomy the prior never imaged cannot pull it;
* the pyramid starts at half resolution (no coarse level that could jump
  far), with a small step;
* the answer is *checked* against the engine's: a registration whose median
  level differs from the engine's by more than ``accept_mm`` is discarded
  (the engine's answer stands), and a slice whose refined level lies more than
  ``trust_mm`` from the engine's keeps the engine's level (rigid registration
  cannot follow local deformation such as breathing, the engine can).

The viewer calls :func:`refine_alignment` in a background job after showing
the engine's mapping, then swaps in the refined :class:`~app.ml.anatomy.align.Alignment`
(see :meth:`app.ml.anatomy.sync_service.SyncEngine.refine_alignment`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from app.core.volume import Volume
from app.ml.anatomy.align import Alignment

__all__ = [
    "RefineParams",
    "RefinedAlignment",
    "refine_alignment",
    "register_levels",
    "select_refined",
    "nearest_slices",
    "slice_centres",
    "to_sitk",
    "SAMPLING_SEED",
]

log = logging.getLogger(__name__)

#: Seed of every SimpleITK metric's random sampling in PriorSync. Not 0: for
#: ``SetMetricSamplingPercentage`` a seed of 0 is ``sitkWallClock``, a new
#: sample each run, so the same pair registered twice gave answers up to about
#: 1 mm apart and tests on the result were flaky.
SAMPLING_SEED = 1


def nearest_slices(prior_z: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Index of the prior slice nearest each level ``z``."""
    prior_z = np.asarray(prior_z, dtype=np.float64)
    return np.abs(prior_z[None, :] - np.asarray(z, dtype=np.float64)[:, None]).argmin(axis=1)


def to_sitk(volume: Volume, voxel_mm: float | None = None):
    """The volume as a SimpleITK image (air at 0), optionally resampled to ``voxel_mm``."""
    import SimpleITK as sitk

    # Air at 0 so that the centre of mass and the padding are anatomy-driven.
    img = sitk.GetImageFromArray(np.clip(volume.voxels, -1024, 3071).astype(np.float32) + 1024.0)
    g = volume.geometry
    img.SetOrigin(tuple(float(v) for v in volume.slice_positions[0]))
    img.SetSpacing(tuple(float(v) for v in g.spacing))
    img.SetDirection(tuple(float(v) for v in g.direction.reshape(-1)))
    if voxel_mm is None:
        return img
    spacing = np.asarray(img.GetSpacing())
    # Only ever coarsen: axes already coarser than voxel_mm keep their spacing.
    target = np.maximum(spacing, voxel_mm)
    if np.allclose(target, spacing):
        return img
    # Anti-alias the axes that shrink (Gaussian of half the new voxel), then resample.
    sigma = 0.5 * np.sqrt(np.maximum(target**2 - spacing**2, 0.0))
    img = sitk.SmoothingRecursiveGaussian(img, [float(max(v, 1e-3)) for v in sigma])
    size = [
        max(1, int(round(n * s / t)))
        for n, s, t in zip(img.GetSize(), spacing, target, strict=True)
    ]
    return sitk.Resample(
        img,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        img.GetOrigin(),
        [float(t) for t in target],
        img.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )


@dataclass(frozen=True)
class RefineParams:
    """Settings of the refinement (chosen on validation pairs, see models/README.md).

    Parameters
    ----------
    voxel_mm
        Both series are resampled to voxels of at least this size (anti-aliased).
    accept_mm
        Largest median difference (over covered slices) between the refined
        and the engine's levels for the registration to be used at all.
    trust_mm
        Per slice, the refined level replaces the engine's only within this
        distance of it.
    iterations
        Optimiser iterations per pyramid level.
    seed
        Seed of the metric's random sampling (reproducible answers; never 0,
        which SimpleITK reads as "seed from the clock").
    """

    voxel_mm: float = 3.0
    accept_mm: float = 5.0
    trust_mm: float = 4.0
    iterations: int = 100
    seed: int = SAMPLING_SEED


@dataclass(frozen=True)
class RefinedAlignment:
    """The refined mapping and how it came about.

    Attributes
    ----------
    alignment
        The engine's alignment with ``mapped_z`` / ``prior_index`` /
        ``in_coverage`` replaced where the refinement was trusted.
    used
        Whether the registration was accepted at all.
    refined
        ``(n,)`` slices whose level now comes from the registration.
    median_shift_mm
        Median |refined - engine| level over covered slices (NaN when the
        registration failed).
    seconds
        Wall time of the refinement.
    reason
        Why it was not used, when not (one line, for the log).
    registered_z
        ``(n,)`` the registration's own level of every current slice (NaN
        when it failed), before the check against the engine.
    """

    alignment: Alignment
    used: bool
    refined: np.ndarray
    median_shift_mm: float
    seconds: float
    reason: str = ""
    registered_z: np.ndarray | None = None


def slice_centres(volume: Volume) -> np.ndarray:
    """``(n, 3)`` LPS centre (mm) of every slice of ``volume``."""
    g = volume.geometry
    rows, cols = volume.voxels.shape[1:]
    in_plane = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0, 0.0]) * g.spacing
    return volume.slice_positions + in_plane @ g.direction.T


def _slab_mask(fixed, lo_mm: float, hi_mm: float, normal: np.ndarray):
    """A mask on the fixed image's grid: voxels whose level lies in ``[lo_mm, hi_mm]``."""
    import SimpleITK as sitk

    size = fixed.GetSize()  # (x, y, z)
    k = np.arange(size[2], dtype=np.float64)
    origin = np.asarray(fixed.GetOrigin())
    direction = np.asarray(fixed.GetDirection()).reshape(3, 3)
    spacing = np.asarray(fixed.GetSpacing())
    level = (origin + np.outer(k, direction[:, 2] * spacing[2])) @ normal
    inside = (level >= lo_mm) & (level <= hi_mm)
    mask = np.zeros((size[2], size[1], size[0]), dtype=np.uint8)
    mask[inside] = 1
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(fixed)
    return image


def register_levels(
    current: Volume, prior: Volume, alignment: Alignment, params: RefineParams | None = None
) -> np.ndarray:
    """The rigid registration's level (prior ``slice_z``, mm) of every current slice.

    Started from ``alignment`` and masked to the current slices it covers
    (see the module docstring). No check against the engine here.

    Raises
    ------
    ValueError
        The alignment was not computed on these series, or covers fewer than
        two current slices.
    RuntimeError
        SimpleITK could not register the pair.
    """
    import SimpleITK as sitk

    p = params or RefineParams()
    if len(alignment.mapped_z) != current.n_slices or len(alignment.prior_z) != prior.n_slices:
        raise ValueError("the alignment was not computed on these two series")
    covered = np.asarray(alignment.in_coverage, dtype=bool)
    if covered.sum() < 2:
        raise ValueError("fewer than two current slices lie inside the prior")
    centres = slice_centres(current)
    cur_normal = current.geometry.normal
    pri_normal = prior.geometry.normal
    engine_z = np.asarray(alignment.mapped_z, dtype=np.float64)
    cur_z = centres @ cur_normal
    fixed = to_sitk(current, p.voxel_mm)
    moving = to_sitk(prior, p.voxel_mm)
    moments = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    init = sitk.Euler3DTransform(moments)
    # Keep the centres of mass in-plane; along the prior's normal, put the
    # covered slices where the engine maps them.
    t = np.asarray(init.GetTranslation(), dtype=np.float64)
    moved = centres[covered] + t
    t += pri_normal * float(np.median(engine_z[covered] - moved @ pri_normal))
    init.SetTranslation(tuple(float(v) for v in t))

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, p.seed)
    lo, hi = float(cur_z[covered].min()), float(cur_z[covered].max())
    reg.SetMetricFixedMask(_slab_mask(fixed, lo, hi, cur_normal))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=p.iterations, relaxationFactor=0.5
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(fixed, moving)
    mapped = np.array([transform.TransformPoint(tuple(float(v) for v in c)) for c in centres])
    return mapped @ pri_normal


def select_refined(
    alignment: Alignment, registered_z: np.ndarray, accept_mm: float, trust_mm: float
) -> tuple[Alignment, np.ndarray, float]:
    """Apply the check against the engine to registered levels.

    Returns
    -------
    (Alignment, np.ndarray, float)
        The alignment to use (``alignment`` itself when the registration is
        not accepted), the slices whose level comes from the registration,
        and the median |registered - engine| over covered slices.
    """
    covered = np.asarray(alignment.in_coverage, dtype=bool)
    engine_z = np.asarray(alignment.mapped_z, dtype=np.float64)
    diff = np.abs(np.asarray(registered_z, dtype=np.float64) - engine_z)
    shift = float(np.median(diff[covered])) if covered.any() else float("nan")
    if not np.isfinite(shift) or shift > accept_mm:
        return alignment, np.zeros(len(engine_z), dtype=bool), shift
    refined = covered & (diff <= trust_mm)
    new_z = np.where(refined, registered_z, engine_z)
    prior_z = np.asarray(alignment.prior_z, dtype=np.float64)
    # The coverage decision stays the engine's: only slices it found covered are refined.
    new = replace(
        alignment,
        mapped_z=new_z,
        prior_index=nearest_slices(prior_z, new_z).astype(np.asarray(alignment.prior_index).dtype),
    )
    return new, refined, shift


def refine_alignment(
    current: Volume,
    prior: Volume,
    alignment: Alignment,
    params: RefineParams | None = None,
) -> RefinedAlignment:
    """Refine the engine's alignment of ``current`` to ``prior`` by rigid registration.

    Parameters
    ----------
    current, prior
        The two display-oriented series the alignment was computed on.
    alignment
        The engine's answer (the same slices, in the same order).
    params
        Settings; the defaults when ``None``.

    Returns
    -------
    RefinedAlignment
        Always an answer: the engine's own alignment, unchanged, when the
        registration fails, does not converge near it, or there is nothing
        to refine (``used`` is then False and ``reason`` says why).

    Raises
    ------
    ValueError
        The alignment was not computed on these two series.
    """
    p = params or RefineParams()
    t0 = time.perf_counter()
    n = current.n_slices
    if len(alignment.mapped_z) != n or len(alignment.prior_z) != prior.n_slices:
        raise ValueError("the alignment was not computed on these two series")

    def unchanged(reason: str, shift: float = float("nan"), z=None) -> RefinedAlignment:
        seconds = time.perf_counter() - t0
        return RefinedAlignment(
            alignment, False, np.zeros(n, dtype=bool), shift, seconds, reason, z
        )

    if np.count_nonzero(alignment.in_coverage) < 2:
        return unchanged("fewer than two current slices lie inside the prior")
    try:
        registered = register_levels(current, prior, alignment, p)
    except RuntimeError as exc:  # SimpleITK reports failures (too few samples...) this way
        first = str(exc).strip().splitlines()[-1:] or ["registration failed"]
        return unchanged(f"registration failed: {first[0][:200]}")
    new, refined, shift = select_refined(alignment, registered, p.accept_mm, p.trust_mm)
    if new is alignment:
        reason = f"registration converged {shift:.1f} mm from the engine's answer"
        return unchanged(reason, shift, registered)
    seconds = time.perf_counter() - t0
    log.info(
        "refinement: %d of %d slices refined, median shift %.2f mm, %.2f s",
        int(refined.sum()),
        n,
        shift,
        seconds,
    )
    return RefinedAlignment(new, True, refined, shift, seconds, "", registered)
