"""Lesion evidence without learning: each slice read against its own normal tissue.

The learned abnormality encoder (:mod:`app.ml.sketch.models`) was trained on
four bodies and fires on the unfamiliar anatomy of new ones (``models/README.md``).
This module reads the evidence the sketch classes name directly from HU, relative
to the same slice's own tissue, so nothing depends on which bodies were seen:

``mass``
    Soft tissue (> -300 HU) that survives an opening by a 13 mm disc (so vessels
    and thin septa do not count) and either lies in the closed hull of a lung
    (aerated region of at least 20 cm^2, a nodule or a mass touching the chest
    wall included) or is a compact blob mostly ringed by fat or lung.
``hypodense`` / ``hyperdense``
    Organ tissue (-30 to 200 HU, not next to bone) more than ``k`` times the
    slice's robust tissue spread (and at least a fixed number of HU) below /
    above the local median of the surrounding organ tissue, in regions of at
    least ``min_px`` model pixels. With ``mirror`` the same deviation must also
    hold against the mirrored side of the body (left-right symmetric anatomy,
    e.g. both kidneys, is normal).

Each class map is pooled onto a ``grid x grid`` cell grid, blurred into the
8 neighbouring cells only (``blur_cells``; a sketch drawn a little off still
overlaps, evidence farther away counts for exactly nothing) and flattened; one
extra "nothing here" component makes every code unit length:

    code = [e / max(|e|, tau) ; sqrt(1 - min(|e| / tau, 1)^2)]

A sketch's code is its pooled coverage, unit length, with 0 in the extra
component, so the inner product of a sketch with a slice that shows no
evidence of the sketched class where it was drawn is exactly 0, and grows with
the overlap otherwise. Both codes live in one inner-product space, so
``(1 - w) * anatomy + w * abnormality`` in one hnswlib index works unchanged
(:mod:`app.ml.sketch.search`).

:class:`LesionEvidence` is a :class:`~app.ml.sketch.encoder.SketchEncoder`, like
:class:`~app.ml.sketch.models.SketchModels`: the index, the archive and the
evaluation take either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from app.core.body import body_mask
from app.core.imaging import BODY_THRESHOLD_HU
from app.core.volume import Volume
from app.ml.runtime.preprocess import InputSpec, prepare_hu_slices
from app.ml.sketch.encoder import SketchCoding

__all__ = [
    "EVIDENCE_CLASSES",
    "EVIDENCE_NAME",
    "EvidenceParams",
    "LesionEvidence",
    "channels_to_hu",
    "evidence_maps",
]

EVIDENCE_NAME = "priorsync-lesion-evidence"
EVIDENCE_VERSION = "1.0"
EVIDENCE_CLASSES: tuple[str, ...] = ("mass", "hypodense", "hyperdense")

_SOFT_HU = -300.0  # a mass is denser than this
_LUNG_HU = float(BODY_THRESHOLD_HU)  # aerated lung: below the body threshold
_FAT_HU = (-190.0, -40.0)
_ORGAN_HU = (-30.0, 200.0)
_BONE_HU = 300.0
_MIN_LUNG_MM2 = 2000.0  # 20 cm^2: smaller gas pockets are bowel or airway


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


@dataclass(frozen=True)
class EvidenceParams:
    """Every setting of the evidence reader (chosen on the validation bodies).

    Attributes
    ----------
    k_sd
        Deviation threshold in robust SDs of the slice's organ tissue.
    hypo_min_hu, hyper_min_hu
        The threshold is never below these (HU) for hypo- / hyperdense.
    background_px
        Gaussian sigma (model pixels) of the local organ-tissue background.
    min_px
        Smallest region (model pixels, 10.24 mm^2 each) that counts.
    mass_open_px
        Radius of the opening that separates a mass from vessels.
    mass_ring
        Fraction of a blob's ring that must be fat or lung (mass outside a lung).
    mass_max_px
        Largest fat-ringed blob that counts as a mass (bigger is normal soft tissue).
    lung_close_px
        Radius of the closing that makes a lung's hull.
    mirror
        Also require the deviation against the mirrored side of the body.
    grid
        Cells per side of the code's grid (16: 25.6 mm cells in the 3.2 mm frame).
    blur_cells
        Gaussian sigma of the 3 x 3 blur of the *slice's* evidence on the cell grid
        (the sketch is not blurred), so evidence counts where the sketch is drawn
        and in the neighbouring cells, and exactly nothing farther away.
    tau
        Evidence norm at which a code reaches full length (smaller evidence scores less).
    default_weight
        The abnormality weight ``w`` recommended for queries.
    """

    k_sd: float = 3.0
    hypo_min_hu: float = 25.0
    hyper_min_hu: float = 45.0
    background_px: float = 6.0
    min_px: int = 6
    mass_open_px: int = 2
    mass_ring: float = 0.6
    mass_max_px: int = 400
    lung_close_px: int = 8
    mirror: bool = True
    grid: int = 16
    blur_cells: float = 0.7
    tau: float = 0.25
    default_weight: float = 0.2

    def digest(self) -> str:
        """SHA-256 of the settings (the archive records it like a model file's hash)."""
        text = json.dumps({"name": EVIDENCE_NAME, "version": EVIDENCE_VERSION, **asdict(self)})
        return hashlib.sha256(text.encode()).hexdigest()


def channels_to_hu(channels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HU ``(N, S, S)`` back from window channels ``(N, C, S, S)``.

    Each pixel takes the narrowest window it is not clipped in, so the soft
    tissue range keeps its full resolution; outside every window it is clipped
    to the widest window's limits.
    """
    ch = np.asarray(channels, dtype=np.float32)
    order = sorted(range(len(spec.windows)), key=lambda i: spec.windows[i].width)
    widest = spec.windows[order[-1]]
    hu = ch[:, order[-1]] * widest.width + widest.lower
    for i in reversed(order[:-1]):
        win = spec.windows[i]
        inside = (ch[:, i] > 0.0) & (ch[:, i] < 1.0)
        hu = np.where(inside, ch[:, i] * win.width + win.lower, hu)
    # Below every window: take the lowest lower limit (air or lung).
    lowest = min(w.lower for w in spec.windows)
    below = np.all(ch <= 0.0, axis=1)
    return np.where(below, lowest, hu).astype(np.float32)


def _large(mask: np.ndarray, min_px: int) -> np.ndarray:
    """``uint8`` mask of the connected regions of at least ``min_px`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_px)
    big = big[big > 0]
    return np.isin(labels, big).astype(np.uint8)


def _keep_regions(mask: np.ndarray, min_px: int) -> np.ndarray:
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disc(1))
    return _large(m, min_px).astype(np.float32)


def _mass_map(
    smooth: np.ndarray, body: np.ndarray, p: EvidenceParams, pixel_mm: float
) -> np.ndarray:
    soft = ((smooth > _SOFT_HU) & body).astype(np.uint8)
    opened = cv2.morphologyEx(soft, cv2.MORPH_OPEN, _disc(p.mass_open_px))
    air = ((smooth < _LUNG_HU) & body).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(air, connectivity=8)
    min_lung = _MIN_LUNG_MM2 / pixel_mm**2
    hull = np.zeros_like(air)
    for c in range(1, n):
        if stats[c, cv2.CC_STAT_AREA] < min_lung:
            continue
        lung = (labels == c).astype(np.uint8)
        closed = cv2.morphologyEx(lung, cv2.MORPH_CLOSE, _disc(p.lung_close_px))
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(hull, contours, -1, 1, thickness=cv2.FILLED)
    # The hull's own outline touches the chest wall: only regions of some size count.
    in_lung = _large(opened & hull, p.min_px)
    # Outside the lungs: compact blobs ringed by fat or lung (a mass in fat).
    fat_or_lung = ((smooth > _FAT_HU[0]) & (smooth < _FAT_HU[1])) | (smooth < _LUNG_HU)
    out = in_lung.astype(np.float32)
    rest = opened & (1 - hull)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    ring_k = _disc(2)
    for c in range(1, n):
        area = stats[c, cv2.CC_STAT_AREA]
        if area < p.min_px or area > p.mass_max_px:
            continue
        x, y, w, h = (int(v) for v in stats[c, :4])
        y0, y1 = max(0, y - 3), min(smooth.shape[0], y + h + 3)
        x0, x1 = max(0, x - 3), min(smooth.shape[1], x + w + 3)
        blob = (labels[y0:y1, x0:x1] == c).astype(np.uint8)
        ring = cv2.dilate(blob, ring_k).astype(bool) & ~blob.astype(bool)
        if ring.sum() and (fat_or_lung[y0:y1, x0:x1] & ring).mean() / ring.mean() >= p.mass_ring:
            out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], blob)
    return out


def _density_maps(
    smooth: np.ndarray, body: np.ndarray, p: EvidenceParams
) -> tuple[np.ndarray, np.ndarray]:
    organ = (smooth > _ORGAN_HU[0]) & (smooth < _ORGAN_HU[1]) & body
    bone = cv2.dilate((smooth > _BONE_HU).astype(np.uint8), _disc(2)).astype(bool)
    organ &= ~bone
    organ = cv2.erode(organ.astype(np.uint8), _disc(1)).astype(bool)
    if organ.sum() < 4 * p.min_px:
        zero = np.zeros_like(smooth)
        return zero, zero
    # Local background: organ-weighted Gaussian mean, then again without outliers.
    weight = organ.astype(np.float32)
    for _ in range(2):
        num = cv2.GaussianBlur(smooth * weight, (0, 0), p.background_px)
        den = cv2.GaussianBlur(weight, (0, 0), p.background_px)
        background = num / np.maximum(den, 1e-3)
        dev = smooth - background
        spread = 1.4826 * float(np.median(np.abs(dev[organ] - np.median(dev[organ]))))
        weight = (organ & (np.abs(dev) < 2.5 * max(spread, 5.0))).astype(np.float32)
    hypo_thr = max(p.k_sd * spread, p.hypo_min_hu)
    hyper_thr = max(p.k_sd * spread, p.hyper_min_hu)
    hypo = organ & (dev < -hypo_thr)
    hyper = organ & (dev > hyper_thr)
    if p.mirror:
        mirrored = smooth[:, ::-1]
        hypo &= smooth < mirrored - hypo_thr
        hyper &= smooth > mirrored + hyper_thr
    return _keep_regions(hypo, p.min_px), _keep_regions(hyper, p.min_px)


def evidence_maps(hu: np.ndarray, params: EvidenceParams, pixel_mm: float) -> np.ndarray:
    """Per-class lesion evidence of one model-frame slice.

    Parameters
    ----------
    hu
        ``(S, S)`` HU in the model frame (:func:`~app.ml.runtime.preprocess.prepare_hu_slices`;
        the body's centroid at the centre, so a left-right mirror is about the midline).
    params
        The reader's settings.
    pixel_mm
        Model pixel size.

    Returns
    -------
    np.ndarray
        ``float32`` ``(3, S, S)`` in [0, 1], channels in :data:`EVIDENCE_CLASSES` order.
    """
    hu = np.asarray(hu, dtype=np.float32)
    out = np.zeros((len(EVIDENCE_CLASSES), *hu.shape), dtype=np.float32)
    body = body_mask(hu)
    if body.sum() < 4 * params.min_px:
        return out
    smooth = cv2.GaussianBlur(hu, (0, 0), 0.8)
    out[0] = _mass_map(smooth, body, params, pixel_mm)
    out[1], out[2] = _density_maps(smooth, body, params)
    return out


def _pool(maps: np.ndarray, params: EvidenceParams, blur: bool) -> np.ndarray:
    """``(N, C, S, S)`` maps -> ``(N, C * grid^2)`` pooled (and, with ``blur``, blurred) cells."""
    n, c, size, _ = maps.shape
    g = params.grid
    cells = maps.reshape(n, c, g, size // g, g, size // g).mean(axis=(3, 5))
    if blur and params.blur_cells > 0:
        flat = np.ascontiguousarray(cells.reshape(n * c, g, g), dtype=np.float32)
        for i in range(len(flat)):
            if flat[i].any():
                flat[i] = cv2.GaussianBlur(
                    flat[i], (3, 3), params.blur_cells, borderType=cv2.BORDER_CONSTANT
                )
        cells = flat.reshape(n, c, g, g)
    return cells.reshape(n, c * g * g).astype(np.float32)


class LesionEvidence(SketchCoding):
    """Rule-based stand-in for the abnormality and sketch models (same interface).

    Parameters
    ----------
    params
        The reader's settings; the shipped defaults when ``None``.
    spec
        The model frame; :class:`~app.ml.runtime.preprocess.InputSpec` defaults when ``None``.
    """

    # Sketch scores at or below this mean "no evidence where the sketch is drawn".
    evidence_floor = 1e-3

    def __init__(self, params: EvidenceParams | None = None, spec: InputSpec | None = None) -> None:
        self.params = params or EvidenceParams()
        self.spec = spec or InputSpec()
        if self.spec.size % self.params.grid:
            raise ValueError(f"the grid ({self.params.grid}) must divide the frame size")
        self.classes = EVIDENCE_CLASSES
        self.abnormality_dim = len(self.classes) * self.params.grid**2 + 1
        self.default_weight = float(self.params.default_weight)
        self.provider = "numpy"
        digest = self.params.digest()
        self.abnormality_sha256 = digest
        self.sketch_sha256 = digest
        self.abnormality_name = f"{EVIDENCE_NAME}-{EVIDENCE_VERSION}"
        self.sketch_name = f"{EVIDENCE_NAME}-sketch-{EVIDENCE_VERSION}"

    def with_params(self, **changes: object) -> LesionEvidence:
        """A copy with some settings changed (for the validation sweep)."""
        return LesionEvidence(replace(self.params, **changes), self.spec)  # type: ignore[arg-type]

    @property
    def identity(self) -> str:
        """Name and settings hash, as reports and archives record them."""
        return f"{self.abnormality_name} (rule-based, settings sha256:{self.abnormality_sha256})"

    # -- slices ------------------------------------------------------------------
    def evidence_of_hu(self, hu: np.ndarray) -> np.ndarray:
        """Evidence maps ``(N, 3, S, S)`` of model-frame HU slices ``(N, S, S)``."""
        hu = np.asarray(hu, dtype=np.float32)
        return (
            np.stack([evidence_maps(h, self.params, self.spec.pixel_mm) for h in hu])
            if len(hu)
            else np.zeros((0, 3, self.spec.size, self.spec.size), np.float32)
        )

    def codes_of_maps(self, maps: np.ndarray) -> np.ndarray:
        """Unit codes ``(N, D)`` of evidence maps ``(N, 3, S, S)`` (see the module docstring)."""
        e = _pool(np.asarray(maps, dtype=np.float32), self.params, blur=True)
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        scaled = e / np.maximum(norm, self.params.tau)
        rest = np.sqrt(np.clip(1.0 - (norm[:, 0] / self.params.tau) ** 2, 0.0, 1.0))
        return np.hstack([scaled, rest[:, None]]).astype(np.float32)

    def abnormality_hu(self, hu: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(N, D)`` of model-frame HU slices ``(N, S, S)``."""
        return self.codes_of_maps(self.evidence_of_hu(hu))

    def abnormality_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(N, D)`` of prepared window channels ``(N, C, S, S)``."""
        batch = np.asarray(inputs, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[2:] != (self.spec.size, self.spec.size):
            raise ValueError(f"expected (N, C, {self.spec.size}, {self.spec.size}) inputs")
        return self.abnormality_hu(channels_to_hu(batch, self.spec))

    def abnormality_of_slices(self, volume: Volume, indices: np.ndarray) -> np.ndarray:
        """Abnormality codes ``(len(indices), D)`` of some slices of ``volume`` (one batch)."""
        return self.abnormality_hu(prepare_hu_slices(volume, indices, self.spec))

    # -- sketches ----------------------------------------------------------------
    def sketch_inputs_vectors(self, inputs: np.ndarray) -> np.ndarray:
        """Sketch codes ``(N, D)`` of coverage maps ``(N, 3, S, S)``: unit, 0 in the last entry."""
        batch = np.asarray(inputs, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        e = _pool(batch, self.params, blur=False)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return np.hstack([e, np.zeros((len(e), 1), np.float32)])
