"""Synthetic focal abnormalities drawn into CT images: masses, hypo- and hyperdense lesions.

The sketch-query models learn what a drawn abnormality looks like in a CT
slice from lesions inserted here, and the sketch evaluation builds its
"patients with a finding" the same way (from volumes the models never saw).
A lesion is an irregular blob (a random smooth radial profile around a
random ellipse, soft-edged) placed inside the body in tissue where that kind
of finding is conspicuous and plausible:

* ``mass`` (label 1): soft-tissue density (20-60 HU) replacing what was
  there, in aerated lung (a nodule; never gas in the stomach or bowel) or in
  fat (a node, a mesenteric or subcutaneous mass);
* ``hypodense`` (label 2): 35-100 HU darker than the organ around it (cyst,
  metastasis, infarct), in soft-tissue organs (neighbourhood 0-150 HU);
* ``hyperdense`` (label 3): 60-200 HU brighter than the organ around it
  (haemorrhage, enhancing lesion, calcification), in the same organs.

Every lesion must be one a reader could see, since a sketch can only find
what the image shows. So a mass never goes into muscle or an organ (a 40 HU
blob in 50 HU muscle is invisible to anyone), the density shifts start well
above CT noise, and diameters start at 10 mm: the models read slices at
3.2 mm per pixel, where a smaller lesion is a pixel or two.

The image's own noise and texture are kept (relative lesions) or imitated
(masses), so the network cannot spot a lesion by an unnaturally flat patch.
numpy and OpenCV only: the app and the evaluation use this without PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.body import body_mask
from app.core.volume import Volume

__all__ = [
    "DIAMETER_RANGE_MM",
    "LESION_CLASSES",
    "LESION_COLOURS",
    "LESION_DISPLAY_NAMES",
    "LesionShape",
    "choose_lesion_site",
    "insert_lesion_2d",
    "insert_lesion_3d",
    "lesion_label",
    "random_lesion_mask_2d",
]

LESION_CLASSES: tuple[str, ...] = ("mass", "hypodense", "hyperdense")
LESION_DISPLAY_NAMES: dict[str, str] = {
    "mass": "Mass / nodule",
    "hypodense": "Hypodense",
    "hyperdense": "Hyperdense",
}
LESION_COLOURS: dict[str, tuple[int, int, int]] = {
    "mass": (230, 57, 70),
    "hypodense": (58, 134, 255),
    "hyperdense": (255, 200, 0),
}
DIAMETER_RANGE_MM: tuple[float, float] = (10.0, 50.0)

# HU rules per class: a mass replaces tissue by this absolute density; the
# other two shift the local tissue by this much (sign included).
_MASS_HU = (20.0, 60.0)
_HYPO_DELTA_HU = (-100.0, -35.0)
_HYPER_DELTA_HU = (60.0, 200.0)
# Where each kind may sit (HU of the pixel and of its neighbourhood).
_ORGAN_HU = (0.0, 150.0)
_FAT_HU = (-190.0, -40.0)
_LUNG_HU = (-1000.0, -400.0)
# Smaller low-density regions are taken for gas in the gut, not aerated lung.
_MIN_LUNG_AREA_MM2 = 2000.0


def lesion_label(kind: str) -> int:
    """Label value (1, 2, 3) of a lesion class.

    Raises
    ------
    ValueError
        For an unknown class (the message lists the known ones).
    """
    try:
        return LESION_CLASSES.index(kind) + 1
    except ValueError:
        raise ValueError(
            f"unknown lesion class {kind!r}; known: {', '.join(LESION_CLASSES)}"
        ) from None


@dataclass(frozen=True)
class LesionShape:
    """An irregular closed outline: an ellipse whose radius wobbles smoothly with angle.

    Parameters
    ----------
    aspect
        Minor / major semi-axis ratio (<= 1).
    angle
        Rotation of the major axis (radians).
    harmonics
        ``(K, 2)`` amplitude and phase of the radial profile's harmonics 2..K+1;
        the outline is ``rho(theta) = 1 + sum a_k cos(k theta + phi_k)``.
    """

    aspect: float
    angle: float
    harmonics: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, *, irregularity: float = 0.18, aspect_min: float = 0.55
    ) -> LesionShape:
        """A random outline; ``irregularity`` scales the wobble (0: a plain ellipse)."""
        aspect = float(rng.uniform(aspect_min, 1.0))
        angle = float(rng.uniform(0.0, math.pi))
        ks = np.arange(2, 6)
        # Higher harmonics wobble less, so outlines stay smooth and star-free.
        amps = np.abs(rng.normal(0.0, irregularity, len(ks))) / np.sqrt(ks - 1)
        amps = np.minimum(amps, 0.3)
        phases = rng.uniform(0.0, 2 * math.pi, len(ks))
        return cls(aspect, angle, np.stack([amps, phases], axis=1))

    def profile(self, theta: np.ndarray) -> np.ndarray:
        """Relative radius ``rho(theta)`` (clipped at 0.45 so the blob stays one piece)."""
        rho = np.ones_like(theta)
        for k, (amp, phase) in enumerate(self.harmonics, start=2):
            rho += amp * np.cos(k * theta + phase)
        return np.maximum(rho, 0.45)

    def render(
        self,
        shape: tuple[int, int],
        center: tuple[float, float],
        radius_px: tuple[float, float],
        *,
        edge_px: float | None = None,
    ) -> np.ndarray:
        """Soft mask ``float32 (rows, cols)`` in [0, 1] of the outline.

        Parameters
        ----------
        shape
            Image shape.
        center
            ``(row, col)`` of the centre.
        radius_px
            Major semi-axis in pixels along ``(rows, cols)`` (differs when pixels
            are not square); the minor one is ``aspect`` times it.
        edge_px
            Width of the soft edge (pixels); about 8 % of the radius by default.
        """
        rows, cols = shape
        out = np.zeros(shape, dtype=np.float32)
        ry, rx = (max(float(r), 1e-3) for r in radius_px)
        extent = 1.5 * max(ry, rx) + 2
        r0, r1 = max(0, int(center[0] - extent)), min(rows, int(center[0] + extent) + 2)
        c0, c1 = max(0, int(center[1] - extent)), min(cols, int(center[1] + extent) + 2)
        if r0 >= r1 or c0 >= c1:
            return out
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        # Normalised to the major radius (pixels may be anisotropic).
        dy, dx = (yy - center[0]) / ry, (xx - center[1]) / rx
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        u = dx * ca + dy * sa
        v = (-dx * sa + dy * ca) / self.aspect
        t = np.hypot(u, v)
        rho = self.profile(np.arctan2(v, u))
        radius = max(ry, rx)
        edge = edge_px if edge_px is not None else max(0.6, 0.08 * radius)
        # Signed distance to the outline in pixels (approximately), smoothstep edge.
        s = np.clip((rho - t) * radius / edge + 0.5, 0.0, 1.0)
        out[r0:r1, c0:c1] = (s * s * (3.0 - 2.0 * s)).astype(np.float32)
        return out


def random_lesion_mask_2d(
    shape: tuple[int, int],
    center: tuple[float, float],
    diameter_px: float,
    rng: np.random.Generator,
    *,
    irregularity: float = 0.18,
) -> np.ndarray:
    """A random irregular soft lesion mask.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of the image.
    center
        ``(row, col)`` of the lesion centre.
    diameter_px
        Major diameter in pixels (before the outline's wobble).
    rng
        Random stream.
    irregularity
        How far the outline departs from an ellipse.

    Returns
    -------
    np.ndarray
        ``float32`` in [0, 1]; ``>= 0.5`` is the lesion proper.
    """
    lesion = LesionShape.random(rng, irregularity=irregularity)
    r = diameter_px / 2.0
    return lesion.render(shape, center, (r, r))


def _fraction_in(hu: np.ndarray, lo: float, hi: float, window: int) -> np.ndarray:
    inside = ((hu >= lo) & (hu <= hi)).astype(np.float32)
    return cv2.blur(inside, (window, window), borderType=cv2.BORDER_CONSTANT)


def _large_regions(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """The connected regions of ``mask`` of at least ``min_pixels`` pixels.

    Aerated lung is one or two large regions on every slice but the apex and
    base; gas in the stomach or bowel is mostly small pockets. (Their HU does
    not tell them apart: both average -950 to -750 HU with partial volume and
    noise.) A 40 HU blob in a gas pocket looks like food or stool, not like a
    nodule.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_pixels)
    keep = keep[keep > 0]
    return np.isin(labels, keep) & mask


def choose_lesion_site(
    hu: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    pixel_mm: float,
    diameter_mm: float,
) -> tuple[int, int] | None:
    """A random centre ``(row, col)`` where a lesion of ``kind`` fits, or ``None``.

    The whole lesion must lie inside the body (the body mask eroded by the
    radius), and the tissue under it must suit the class: a mass sits in lung
    parenchyma or fat (never muscle or an organ, where it would not show); a hypo- or hyperdense
    lesion in a soft-tissue organ (pixel and most of its neighbourhood at
    0-150 HU), the only place "darker/brighter than the organ" means anything.

    Parameters
    ----------
    hu
        ``(rows, cols)`` HU image.
    kind
        One of :data:`LESION_CLASSES`.
    rng
        Random stream.
    pixel_mm
        Pixel size of ``hu`` (mm).
    diameter_mm
        Lesion diameter (mm).
    """
    lesion_label(kind)
    hu = np.asarray(hu, dtype=np.float32)
    radius_px = max(1.0, diameter_mm / 2.0 / pixel_mm)
    window = int(2 * math.ceil(radius_px) + 1)
    body = body_mask(hu)
    if not body.any():
        return None
    erode = int(math.ceil(radius_px)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
    inner = cv2.erode(body.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT) > 0
    if kind == "mass":
        lung = (
            inner
            & (hu >= _LUNG_HU[0])
            & (hu <= _LUNG_HU[1])
            & (_fraction_in(hu, *_LUNG_HU, window) >= 0.6)
            & _large_regions(body & (hu <= _LUNG_HU[1]), _MIN_LUNG_AREA_MM2 / pixel_mm**2)
        )
        fat = (
            inner
            & (hu >= _FAT_HU[0])
            & (hu <= _FAT_HU[1])
            & (_fraction_in(hu, *_FAT_HU, window) >= 0.6)
        )
        # Half the masses go to the lung when there is lung: nodules are the
        # commonest "mass" a reader sketches on a chest CT.
        options = [m for m in (lung, fat) if m.any()]
        if not options:
            return None
        candidates = options[0] if len(options) == 1 or rng.random() < 0.5 else options[1]
    else:
        candidates = (
            inner
            & (hu >= _ORGAN_HU[0])
            & (hu <= _ORGAN_HU[1])
            & (_fraction_in(hu, *_ORGAN_HU, window) >= 0.85)
        )
    rows, cols = np.nonzero(candidates)
    if len(rows) == 0:
        return None
    i = int(rng.integers(len(rows)))
    return int(rows[i]), int(cols[i])


def estimate_noise_hu(hu: np.ndarray) -> float:
    """Robust standard deviation (HU) of pixel noise in the soft tissue of an image."""
    hu = np.asarray(hu, dtype=np.float32)
    residual = hu - cv2.blur(hu, (3, 3))
    soft = (hu > -100) & (hu < 150)
    if soft.sum() < 50:
        return 8.0
    mad = float(np.median(np.abs(residual[soft] - np.median(residual[soft]))))
    # A 3x3 mean removes 1/9 of the white-noise variance from the residual.
    return float(np.clip(1.4826 * mad / math.sqrt(8.0 / 9.0), 2.0, 40.0))


def _texture(shape: tuple[int, int], rng: np.random.Generator, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise, smoothed over ``sigma_px`` (0: white)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma_px > 0.3:
        noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma_px), dtype=np.float32)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def draw_lesion_level(kind: str, rng: np.random.Generator) -> float:
    """The class's HU parameter: a mass's density, or the others' shift from the organ."""
    ranges = {"mass": _MASS_HU, "hypodense": _HYPO_DELTA_HU, "hyperdense": _HYPER_DELTA_HU}
    lesion_label(kind)
    lo, hi = ranges[kind]
    return float(rng.uniform(lo, hi))


def insert_lesion_2d(
    hu: np.ndarray,
    mask: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    level_hu: float | None = None,
    noise_hu: float | None = None,
) -> np.ndarray:
    """Draw a lesion into an HU image (the input is not modified).

    Parameters
    ----------
    hu
        ``(rows, cols)`` HU image.
    mask
        Soft mask in [0, 1] (e.g. :func:`random_lesion_mask_2d`).
    kind
        One of :data:`LESION_CLASSES`.
    rng
        Random stream (texture, and the level when ``level_hu`` is ``None``).
    level_hu
        A mass's density, or the shift of a hypo/hyperdense lesion; drawn from
        the class's range when ``None`` (pass one value to keep the slices of a
        3-D lesion alike).
    noise_hu
        Noise to give a mass's interior; estimated from the image when ``None``.

    Returns
    -------
    np.ndarray
        ``float32`` HU image with the lesion.
    """
    hu = np.asarray(hu, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != hu.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {hu.shape}")
    level = draw_lesion_level(kind, rng) if level_hu is None else float(level_hu)
    out = hu.copy()
    rows, cols = np.nonzero(mask > 0)
    if len(rows) == 0:
        return out
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    m = mask[box]
    # Mild internal heterogeneity: real lesions are rarely uniform.
    hetero = _texture(m.shape, rng, max(1.0, 0.15 * max(m.shape)))
    if kind == "mass":
        sd = estimate_noise_hu(hu) if noise_hu is None else float(noise_hu)
        interior = level + 0.1 * abs(level) * hetero + sd * _texture(m.shape, rng, 0.6)
        out[box] = hu[box] * (1.0 - m) + interior * m
    else:
        # The organ's own texture and noise stay; only its level shifts.
        out[box] = hu[box] + m * level * (1.0 + 0.15 * hetero)
    return out


def insert_lesion_3d(
    volume: Volume,
    kind: str,
    rng: np.random.Generator,
    diameter_mm: float | None = None,
    center_index: int | None = None,
) -> tuple[Volume, np.ndarray]:
    """A copy of ``volume`` with one irregular ellipsoidal lesion, and its labels.

    Parameters
    ----------
    volume
        Display-oriented CT (``int16`` HU); not modified.
    kind
        One of :data:`LESION_CLASSES`.
    rng
        Random stream: shape, size, site, HU.
    diameter_mm
        In-plane major diameter; log-uniform in :data:`DIAMETER_RANGE_MM` when ``None``.
    center_index
        Slice holding the lesion's centre; a random slice of the middle 80 %
        with a suitable site when ``None``.

    Returns
    -------
    (Volume, np.ndarray)
        The new volume (same geometry and metadata) and ``uint8`` labels
        ``(n, rows, cols)`` (the class's label where the lesion is, else 0).

    Raises
    ------
    ValueError
        Unknown class, bad diameter or index, or no slice with a suitable site.
    """
    label = lesion_label(kind)
    n, rows, cols = volume.voxels.shape
    sx, sy, sz = (float(s) for s in volume.geometry.spacing)
    if diameter_mm is None:
        lo, hi = DIAMETER_RANGE_MM
        diameter_mm = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"lesion diameter must be a positive number of mm, got {diameter_mm}")
    if center_index is not None and not -n <= int(center_index) < n:
        raise IndexError(f"slice {center_index} is outside a volume of {n} slices")
    pixel_mm = math.sqrt(sx * sy)
    if center_index is not None:
        tries = [int(center_index) % n] * 5
    else:
        lo_k, hi_k = int(0.1 * (n - 1)), int(math.ceil(0.9 * (n - 1)))
        tries = [int(k) for k in rng.integers(lo_k, hi_k + 1, size=20)]
    site = None
    for k in tries:
        rc = choose_lesion_site(
            volume.voxels[k], kind, rng, pixel_mm=pixel_mm, diameter_mm=diameter_mm
        )
        if rc is not None:
            site = (k, rc)
            break
    if site is None:
        raise ValueError(f"found no place for a {diameter_mm:.0f} mm {kind} lesion in this volume")
    k0, (r0, c0) = site
    shape = LesionShape.random(rng)
    radius_mm = diameter_mm / 2.0
    # Lesions are roughly as deep as they are wide, give or take.
    half_depth_mm = radius_mm * float(rng.uniform(0.7, 1.2))
    level = draw_lesion_level(kind, rng)
    z = np.asarray(volume.slice_z, dtype=np.float64)
    voxels = volume.voxels.copy()
    labels = np.zeros(voxels.shape, dtype=np.uint8)
    for k in range(n):
        dz = abs(z[k] - z[k0]) if n > 1 else 0.0
        if dz >= half_depth_mm:
            continue
        scale = math.sqrt(1.0 - (dz / half_depth_mm) ** 2)
        if scale * radius_mm < 0.5 * min(sx, sy):
            continue
        mask = shape.render(
            (rows, cols), (r0, c0), (scale * radius_mm / sy, scale * radius_mm / sx)
        )
        hu = insert_lesion_2d(voxels[k], mask, kind, rng, level_hu=level)
        voxels[k] = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
        labels[k][mask >= 0.5] = label
    new = dataclasses.replace(volume, voxels=voxels, warnings=list(volume.warnings))
    return new, labels
