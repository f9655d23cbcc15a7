"""Training data for the sketch encoders: a bank of lesion-free HU slices, and batches.

The bank holds every slice of each training volume and of a few simulated
lesion-free re-scans of it (other position, field of view, kernel, noise,
contrast), in the model frame and still in HU (``int16``). A batch takes
``bases`` random slices and makes three images of each:

* ``A``: the slice with a random lesion (class, size, shape and site drawn by
  :mod:`app.sim.lesions`);
* ``B``: the same slice without a lesion (the hardest negative: only the
  lesion differs);
* ``C``: the same slice with a lesion of another class at the same spot or
  of the same class somewhere else (tells the network class and place matter);

and one sketch of each lesion (:func:`app.sim.sketches.sketch_from_mask`, as
a reader would draw it, jittered in place and size). Lesion-free images are
negatives for every sketch. Everything is drawn from one numpy generator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.imaging import AIR_HU, BODY_THRESHOLD_HU
from app.ml.runtime.preprocess import InputSpec, prepare_hu_slices, window_channels
from app.ml.train.common.bank_cache import bank_cache_path, load_cached_bank, save_npz_atomically
from app.sim.lesions import (
    LESION_CLASSES,
    LesionShape,
    choose_lesion_site,
    insert_lesion_2d,
    lesion_label,
)
from app.sim.sketches import sketch_from_mask

__all__ = [
    "HUBank",
    "LesionBatch",
    "LesionBatchSampler",
    "SketchDataConfig",
    "build_hu_bank",
    "washout_contrast",
]

log = logging.getLogger(__name__)

# Slices with less body than this (fraction of the frame) hold no site for a lesion.
_MIN_BODY_FRACTION = 0.04
# Blood and parenchyma without contrast medium.
_UNENHANCED_HU = (30.0, 55.0)


def washout_contrast(hu: np.ndarray, keep: float, level_hu: float = 40.0) -> np.ndarray:
    """An HU image as if less contrast medium had enhanced it.

    Tissue between about 100 and 550 HU (enhanced vessels and heart, up to
    an arterial-phase aorta; kidneys, liver and spleen) moves towards
    ``level_hu``, keeping ``keep`` of its enhancement; fat, lung, water and
    dense cortical bone (above 750 HU) stay as they are, with smooth ramps
    between. Trabecular bone darkens too, which only adds variety.

    Parameters
    ----------
    hu
        HU image (any shape); not modified.
    keep
        Fraction of the enhancement kept, 0 (none) to 1 (unchanged).
    level_hu
        Unenhanced density of blood and parenchyma.
    """
    hu = np.asarray(hu, dtype=np.float32)
    weight = np.clip((hu - 60.0) / 40.0, 0.0, 1.0) * np.clip((750.0 - hu) / 200.0, 0.0, 1.0)
    target = level_hu + (hu - level_hu) * float(keep)
    return (hu + weight * (target - hu)).astype(np.float32)


@dataclass
class HUBank:
    """Lesion-free model-frame HU slices of the training scans.

    Parameters
    ----------
    volume_names
        Training volumes.
    images
        ``int16`` ``(N, S, S)`` HU.
    volume
        ``int64`` ``(N,)`` index into ``volume_names`` of each slice.
    """

    volume_names: list[str]
    images: np.ndarray
    volume: np.ndarray

    @property
    def n_slices(self) -> int:
        return int(len(self.images))

    def save(self, path: Path) -> None:
        """Write atomically as an uncompressed ``.npz``."""
        save_npz_atomically(
            path,
            {
                "volume_names": np.array(self.volume_names),
                "images": self.images,
                "volume": self.volume,
            },
        )

    @classmethod
    def load(cls, path: Path) -> HUBank:
        """Read a bank written by :meth:`save` (raises on a corrupt file)."""
        with np.load(path, allow_pickle=False) as data:
            bank = cls(
                [str(n) for n in data["volume_names"]],
                np.asarray(data["images"], dtype=np.int16),
                np.asarray(data["volume"], dtype=np.int64),
            )
        if bank.images.ndim != 3 or len(bank.images) != len(bank.volume):
            raise ValueError("HU bank arrays are inconsistent")
        return bank


def _to_int16(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)


def build_hu_bank(
    volume_names: Sequence[str],
    scans_per_volume: int,
    seed: int,
    spec: InputSpec,
    *,
    load_source: Callable,
    simulate: Callable,
    cache_dir: Path | None = None,
    cache_key: str = "",
) -> HUBank:
    """Load, re-scan and resample the training volumes (cached on disk).

    Parameters
    ----------
    volume_names
        Training volumes (never held-out ones).
    scans_per_volume
        Simulated lesion-free scans per volume; the source itself is always added.
    seed
        Seeds the simulation (one stream per volume).
    spec
        Model frame.
    load_source
        ``name -> Volume``.
    simulate
        ``(source, rng) -> SimulatedScan`` (``.volume``); must add no lesion.
    cache_dir
        Where to keep the bank; rebuilt when missing or unreadable.
    cache_key
        Extra text that must change when the simulation changes.
    """
    key = ["hu", ",".join(volume_names), str(scans_per_volume), str(seed), repr(spec), cache_key]
    path = bank_cache_path(cache_dir, "hubank", key)
    cached = load_cached_bank(path, HUBank.load, "HU bank")
    if cached is not None:
        return cached
    images: list[np.ndarray] = []
    volume: list[np.ndarray] = []
    for vi, name in enumerate(volume_names):
        source = load_source(name)
        scans = [source]
        rng = np.random.default_rng([seed, vi, 7])
        scans += [simulate(source, rng).volume for _ in range(scans_per_volume)]
        for scan in scans:
            hu = prepare_hu_slices(scan, spec=spec)
            body = (hu > BODY_THRESHOLD_HU).mean(axis=(1, 2))
            keep = body >= _MIN_BODY_FRACTION
            images.append(_to_int16(hu[keep]))
            volume.append(np.full(int(keep.sum()), vi, dtype=np.int64))
        log.info("HU bank: %s, %d scans", name, len(scans))
    bank = HUBank(list(volume_names), np.concatenate(images), np.concatenate(volume))
    if path is not None:
        bank.save(path)
    return bank


@dataclass(frozen=True)
class SketchDataConfig:
    """How lesions and sketches are drawn for training.

    Parameters
    ----------
    bases
        Base slices per batch (each gives 3 images and 2 sketches).
    diameter_mm
        Lesion diameter range (uniform; shrunk where a big one does not fit).
    same_site_probability
        Chance that image ``C``'s lesion is another class at ``A``'s spot
        (otherwise the same class elsewhere).
    jitter_mm, scale_jitter, simplify_mm
        :func:`sketch_from_mask` settings.
    supersample
        The sketch is drawn this many times finer than the model frame and
        area-averaged, so its edges are fractional coverage like
        :func:`app.ml.runtime.preprocess.labels_to_input` gives for a full-resolution
        drawing.
    base_rotation_deg, base_scale, base_shift_px, base_flip
        Geometric augmentation of each base slice *before* its lesions are
        placed (so lesions and sketches follow it): rotation up to
        ``base_rotation_deg``, isotropic scale ``1 +/- base_scale``, shift up to
        ``base_shift_px``, left-right flip with probability ``base_flip``. Four
        training volumes give only a few hundred distinct slices; without this
        the abnormality network learned each bank slice's clean look by heart
        and flagged "differs from the slice I remember", which finds no
        lesion in a body it has never seen.
    washout_probability, washout_keep
        Chance that a base slice is turned into an unenhanced-looking one
        (:func:`washout_contrast`, keeping a fraction of its enhancement drawn
        from ``washout_keep``) before lesions are placed. The training scans
        are mostly contrast-enhanced; without this the network called the
        ~40 HU vessels of an unenhanced chest "masses" and unenhanced liver
        and bowel "hypodense".
    """

    bases: int = 16
    diameter_mm: tuple[float, float] = (10.0, 50.0)
    same_site_probability: float = 0.5
    jitter_mm: float = 8.0
    scale_jitter: float = 0.2
    simplify_mm: float = 3.0
    supersample: int = 2
    base_rotation_deg: float = 20.0
    base_scale: float = 0.15
    base_shift_px: float = 8.0
    base_flip: float = 0.5
    washout_probability: float = 0.5
    washout_keep: tuple[float, float] = (0.0, 0.6)


@dataclass
class LesionBatch:
    """One batch.

    ``images``: ``float32 (3B, C, S, S)`` windowed (A of every base, then B, then C);
    ``image_class`` (0 = none), ``image_centre`` ``(3B, 2)`` (row, col, model px),
    ``image_diameter`` (mm; 0 without lesion), ``image_base``, ``image_mask``
    ``float32 (3B, S, S)`` (the lesion's soft mask, 0 without lesion);
    ``sketches``: ``float32 (2B, 3, S, S)`` coverage; ``sketch_image``: index of
    each sketch's own image; ``sketch_class``, ``sketch_centre``, ``sketch_diameter``.
    """

    images: np.ndarray
    image_class: np.ndarray
    image_centre: np.ndarray
    image_diameter: np.ndarray
    image_base: np.ndarray
    image_mask: np.ndarray
    sketches: np.ndarray
    sketch_image: np.ndarray
    sketch_class: np.ndarray
    sketch_centre: np.ndarray
    sketch_diameter: np.ndarray


@dataclass
class _Lesion:
    kind: str
    mask: np.ndarray  # soft, model frame
    centre: tuple[float, float]
    diameter_mm: float


class LesionBatchSampler:
    """Draws :class:`LesionBatch` es from an :class:`HUBank`.

    Parameters
    ----------
    bank
        Lesion-free HU slices.
    rng
        Random stream (the sampler is deterministic given it).
    spec
        Model frame (pixel size, windows).
    config
        Lesion and sketch settings.
    """

    def __init__(
        self,
        bank: HUBank,
        rng: np.random.Generator,
        spec: InputSpec,
        config: SketchDataConfig | None = None,
    ) -> None:
        if bank.n_slices == 0:
            raise ValueError("the HU bank has no slices")
        self.bank = bank
        self.rng = rng
        self.spec = spec
        self.config = config or SketchDataConfig()
        self._by_volume = [np.flatnonzero(bank.volume == v) for v in np.unique(bank.volume)]

    # -- lesions ------------------------------------------------------------------
    def _diameter(self) -> float:
        lo, hi = self.config.diameter_mm
        return float(self.rng.uniform(lo, hi))

    def _lesion_at(
        self, hu: np.ndarray, kind: str, diameter: float, site: tuple[int, int]
    ) -> _Lesion:
        shape = LesionShape.random(self.rng)
        r = diameter / 2.0 / self.spec.pixel_mm
        mask = shape.render(hu.shape, (float(site[0]), float(site[1])), (r, r))
        return _Lesion(kind, mask, (float(site[0]), float(site[1])), diameter)

    def _new_lesion(
        self, hu: np.ndarray, kinds: Sequence[str], avoid: tuple[float, float] | None = None
    ) -> _Lesion | None:
        lo = self.config.diameter_mm[0]
        for kind in kinds:
            diameter = self._diameter()
            for _ in range(4):
                site = choose_lesion_site(
                    hu, kind, self.rng, pixel_mm=self.spec.pixel_mm, diameter_mm=diameter
                )
                if site is None:
                    # No room for one this big here: try a smaller one.
                    diameter = max(lo, 0.7 * diameter)
                    continue
                if avoid is not None:
                    gap = math.dist(site, avoid) * self.spec.pixel_mm
                    if gap < max(diameter, 20.0):
                        continue
                return self._lesion_at(hu, kind, diameter, site)
        return None

    def _second_lesion(self, hu: np.ndarray, first: _Lesion) -> _Lesion | None:
        others = [k for k in LESION_CLASSES if k != first.kind]
        if self.rng.random() < self.config.same_site_probability:
            self.rng.shuffle(others)
            for kind in others:
                # The same spot only if that class may sit there (no hypodense in lung).
                if _site_suits(hu, first, kind):
                    return _Lesion(kind, first.mask, first.centre, first.diameter_mm)
        lesion = self._new_lesion(hu, [first.kind], avoid=first.centre)
        if lesion is None:
            self.rng.shuffle(others)
            lesion = self._new_lesion(hu, others)
        return lesion

    def _sketch(self, lesion: _Lesion) -> np.ndarray:
        cfg = self.config
        f = max(1, int(cfg.supersample))
        size = self.spec.size
        fine = cv2.resize(lesion.mask, (size * f, size * f), interpolation=cv2.INTER_LINEAR)
        drawn = sketch_from_mask(
            fine,
            self.rng,
            pixel_mm=self.spec.pixel_mm / f,
            jitter_mm=cfg.jitter_mm,
            scale_jitter=cfg.scale_jitter,
            simplify_mm=cfg.simplify_mm,
        ).astype(np.float32)
        coverage = cv2.resize(drawn, (size, size), interpolation=cv2.INTER_AREA)
        out = np.zeros((len(LESION_CLASSES), size, size), dtype=np.float32)
        out[lesion_label(lesion.kind) - 1] = coverage
        return out

    # -- batches ------------------------------------------------------------------
    def _augment_base(self, hu: np.ndarray) -> np.ndarray:
        """Randomly rotate, scale, shift and flip a base slice (about the body centre)."""
        cfg = self.config
        size = hu.shape[0]
        angle = float(self.rng.uniform(-cfg.base_rotation_deg, cfg.base_rotation_deg))
        scale = float(self.rng.uniform(1.0 - cfg.base_scale, 1.0 + cfg.base_scale))
        shift = self.rng.uniform(-cfg.base_shift_px, cfg.base_shift_px, size=2)
        flip = bool(self.rng.random() < cfg.base_flip)
        half = (size - 1) / 2.0
        matrix = np.asarray(cv2.getRotationMatrix2D((half, half), angle, scale), np.float64)
        matrix[:, 2] += shift
        if flip:
            # x -> size - 1 - x after the rotation: the body stays centred.
            matrix[0] = -matrix[0]
            matrix[0, 2] += size - 1
        return cv2.warpAffine(
            hu,
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float(AIR_HU),
        )

    def _washout(self, hu: np.ndarray) -> np.ndarray:
        if self.rng.random() >= self.config.washout_probability:
            return hu
        keep = float(self.rng.uniform(*self.config.washout_keep))
        level = float(self.rng.uniform(*_UNENHANCED_HU))
        return washout_contrast(hu, keep, level)

    def _base(self) -> tuple[int, np.ndarray, _Lesion, _Lesion]:
        for _ in range(50):
            # Each training volume (body region) equally often: otherwise 300
            # head-and-neck slices drown the 50 of upper abdomen, and the
            # network rarely sees a lesion in liver, spleen or kidney.
            volume = int(self.rng.integers(len(self._by_volume)))
            members = self._by_volume[volume]
            idx = int(members[int(self.rng.integers(len(members)))])
            hu = self._washout(self._augment_base(self.bank.images[idx].astype(np.float32)))
            kinds = list(LESION_CLASSES)
            self.rng.shuffle(kinds)
            first = self._new_lesion(hu, kinds)
            if first is None:
                continue
            second = self._second_lesion(hu, first)
            if second is not None:
                return idx, hu, first, second
        raise ValueError("found no slice in the bank with room for two lesions")

    def sample(self) -> LesionBatch:
        """One batch (see the module docstring for its layout)."""
        b = self.config.bases
        size = self.spec.size
        hu_out = np.empty((3 * b, size, size), dtype=np.float32)
        cls = np.zeros(3 * b, dtype=np.int64)
        centre = np.zeros((3 * b, 2), dtype=np.float32)
        diameter = np.zeros(3 * b, dtype=np.float32)
        base = np.zeros(3 * b, dtype=np.int64)
        masks = np.zeros((3 * b, size, size), dtype=np.float32)
        sketches = np.empty((2 * b, len(LESION_CLASSES), size, size), dtype=np.float32)
        owner = np.empty(2 * b, dtype=np.int64)
        for i in range(b):
            idx, hu, first, second = self._base()
            hu_out[b + i] = hu
            for j, (slot, lesion) in enumerate(((i, first), (2 * b + i, second))):
                hu_out[slot] = insert_lesion_2d(hu, lesion.mask, lesion.kind, self.rng)
                cls[slot] = lesion_label(lesion.kind)
                centre[slot] = lesion.centre
                diameter[slot] = lesion.diameter_mm
                masks[slot] = lesion.mask
                sketches[j * b + i] = self._sketch(lesion)
                owner[j * b + i] = slot
            base[[i, b + i, 2 * b + i]] = idx
        return LesionBatch(
            images=window_channels(hu_out, self.spec),
            image_class=cls,
            image_centre=centre,
            image_diameter=diameter,
            image_base=base,
            image_mask=masks,
            sketches=sketches,
            sketch_image=owner,
            sketch_class=cls[owner],
            sketch_centre=centre[owner],
            sketch_diameter=diameter[owner],
        )


def _site_suits(hu: np.ndarray, lesion: _Lesion, kind: str) -> bool:
    """Whether ``kind`` may sit where ``lesion`` is (mean HU under it in the class's range)."""
    inside = lesion.mask >= 0.5
    if not inside.any():
        return False
    mean = float(hu[inside].mean())
    if kind == "mass":
        return -1000.0 <= mean <= 100.0
    return 0.0 <= mean <= 150.0
