"""Training data: a bank of preprocessed slices of simulated scans, and batches.

For each training volume the bank holds the source itself plus ``K``
simulated follow-up scans (other table position, slice thickness, FOV,
breathing, contrast, noise, lesions...), every slice already run through
:func:`app.ml.runtime.preprocess.prepare_slices` and stored as ``uint8`` with the
anatomical level it shows (``source_z``, mm). A batch pairs slices of two
different scans of one volume at about the same level (positives) and, in the
same batch, many slices of that volume a few to tens of millimetres away (the
hard negatives the app must tell apart).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.ml.runtime.preprocess import InputSpec, prepare_slices
from app.ml.train.common.bank_cache import bank_cache_path, load_cached_bank, save_npz_atomically

__all__ = [
    "Batch",
    "PairSampler",
    "ScanSlices",
    "SliceBank",
    "build_bank",
]

log = logging.getLogger(__name__)


@dataclass
class ScanSlices:
    """The preprocessed slices of one scan, sorted by anatomical level.

    Parameters
    ----------
    volume_index
        Which training volume (index into :attr:`SliceBank.volume_names`).
    images
        ``uint8`` ``(n, C, S, S)``: :func:`prepare_slices` output times 255.
    z
        ``float32`` ``(n,)`` level of each slice in the source volume's
        ``slice_z`` coordinates (mm), ascending.
    """

    volume_index: int
    images: np.ndarray
    z: np.ndarray

    @property
    def extent(self) -> tuple[float, float]:
        return float(self.z[0]), float(self.z[-1])


@dataclass
class SliceBank:
    """All scans of all training volumes."""

    volume_names: list[str]
    scans: list[ScanSlices]

    def scans_of(self, volume_index: int) -> list[int]:
        """Indices (into :attr:`scans`) of the scans of one volume."""
        return [i for i, s in enumerate(self.scans) if s.volume_index == volume_index]

    @property
    def n_slices(self) -> int:
        return sum(len(s.z) for s in self.scans)

    def save(self, path: Path) -> None:
        """Write the bank atomically as an uncompressed ``.npz``."""
        arrays: dict[str, np.ndarray] = {"volume_names": np.array(self.volume_names)}
        for i, s in enumerate(self.scans):
            arrays[f"images_{i}"] = s.images
            arrays[f"z_{i}"] = s.z
            arrays[f"vol_{i}"] = np.array(s.volume_index)
        save_npz_atomically(path, arrays)

    @classmethod
    def load(cls, path: Path) -> SliceBank:
        """Read a bank written by :meth:`save` (raises on a corrupt file)."""
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["volume_names"]]
            n_scans = sum(1 for k in data.files if k.startswith("images_"))
            scans = [
                ScanSlices(int(data[f"vol_{i}"]), data[f"images_{i}"], data[f"z_{i}"])
                for i in range(n_scans)
            ]
        return cls(names, scans)


def _to_scan_slices(volume_index: int, images: np.ndarray, z: np.ndarray) -> ScanSlices:
    order = np.argsort(z, kind="stable")
    u8 = np.rint(images[order] * 255.0).astype(np.uint8)
    return ScanSlices(volume_index, u8, np.asarray(z, dtype=np.float32)[order])


def build_bank(
    volume_names: Sequence[str],
    scans_per_volume: int | Callable[[str], int],
    seed: int,
    spec: InputSpec,
    *,
    load_source: Callable,
    simulate: Callable,
    cache_dir: Path | None = None,
    cache_key: str = "",
) -> SliceBank:
    """Simulate, preprocess and store the training scans (cached on disk).

    Parameters
    ----------
    volume_names
        Training volumes (never the held-out ones).
    scans_per_volume
        Simulated scans per volume, or ``name -> count``; the source itself
        is always added.
    seed
        Seeds the simulation; each volume gets its own stream so adding a
        volume does not change the others' scans.
    spec
        Preprocessing.
    load_source
        ``name -> Volume``.
    simulate
        ``(source, rng) -> SimulatedScan`` (``.volume``, ``.source_z``).
    cache_dir
        Where to keep the bank; rebuilt when missing or unreadable.
    cache_key
        Extra text that must change when the simulation changes.
    """
    count = scans_per_volume if callable(scans_per_volume) else lambda _name: scans_per_volume
    counts = [int(count(name)) for name in volume_names]
    if len(set(counts)) == 1:  # the key of a uniform bank stays what it always was
        counts_key = str(counts[0]) if counts else "0"
    else:
        counts_key = ",".join(map(str, counts))
    key = [",".join(volume_names), counts_key, str(seed), repr(spec), cache_key]
    path = bank_cache_path(cache_dir, "bank", key)
    cached = load_cached_bank(path, SliceBank.load, "slice bank")
    if cached is not None:
        return cached
    # Each volume's scans are kept as they are made (they depend only on their
    # own random stream), so an interrupted build resumes where it stopped.
    parts = path.with_suffix(".parts") if path is not None else None
    scans: list[ScanSlices] = []
    for vi, (name, n_scans) in enumerate(zip(volume_names, counts, strict=True)):
        part = parts / f"{vi:04d}.npz" if parts is not None else None
        done = load_cached_bank(part, SliceBank.load, "bank part")
        if done is not None and done.volume_names == [name]:
            scans += [ScanSlices(vi, s.images, s.z) for s in done.scans]
            continue
        source = load_source(name)
        mine = [_to_scan_slices(vi, prepare_slices(source, spec=spec), source.slice_z)]
        rng = np.random.default_rng([seed, vi])
        for k in range(n_scans):
            sim = simulate(source, rng)
            images = prepare_slices(sim.volume, spec=spec)
            mine.append(_to_scan_slices(vi, images, np.asarray(sim.source_z)))
            log.info("bank: %s scan %d/%d, %d slices", name, k + 1, n_scans, len(images))
        if part is not None:
            SliceBank([name], [ScanSlices(0, s.images, s.z) for s in mine]).save(part)
        scans += mine
    bank = SliceBank(list(volume_names), scans)
    if path is not None:
        bank.save(path)
        assert parts is not None
        shutil.rmtree(parts, ignore_errors=True)  # the whole bank now holds them
    return bank


@dataclass
class Batch:
    """``2B`` images: ``B`` anchors then their ``B`` positives.

    ``images`` is ``uint8`` ``(2B, C, S, S)``; ``z`` (mm), ``volume`` and
    ``scan`` label every image.
    """

    images: np.ndarray
    z: np.ndarray
    volume: np.ndarray
    scan: np.ndarray


class PairSampler:
    """Draws batches of (anchor, positive) slice pairs with hard negatives.

    A batch is ``groups`` groups of ``per_group`` pairs. A group picks one
    volume, two of its scans (different ones when it has several) and a window
    ``±window_mm`` around a random level both scans cover; every pair in the
    group is a slice of the first scan in that window and the nearest slice of
    the second scan. The other pairs of the group, 0 to ``2 * window_mm`` away,
    are the hard negatives; other groups bring easy ones.

    Parameters
    ----------
    bank
        The slices.
    rng
        Random stream (the sampler is deterministic given it).
    groups, per_group
        Batch layout.
    window_mm
        Half-width of a group's window of levels.
    volume_weight_power
        Volumes are drawn with probability proportional to their z extent to
        this power (0: uniform; 1: per millimetre). 0.5 keeps a 4 cm volume
        from being drawn as often as a 30 cm one without ignoring it.
    regions
        Body region of each volume (``bank.volume_names`` order), or ``None``.
        When given, a group first draws a region (uniformly among those with
        scans), then a volume of that region (weighted as above), so 190
        head-and-neck bodies get a third of the groups, not 97 %.
    """

    def __init__(
        self,
        bank: SliceBank,
        rng: np.random.Generator,
        *,
        groups: int = 8,
        per_group: int = 8,
        window_mm: float = 30.0,
        volume_weight_power: float = 0.5,
        regions: Sequence[str] | None = None,
    ) -> None:
        self.bank = bank
        self.rng = rng
        self.groups = groups
        self.per_group = per_group
        self.window_mm = window_mm
        self._scans = [bank.scans_of(v) for v in range(len(bank.volume_names))]
        extents = []
        for scan_ids in self._scans:
            if not scan_ids:
                extents.append(0.0)
                continue
            lo = min(bank.scans[i].z[0] for i in scan_ids)
            hi = max(bank.scans[i].z[-1] for i in scan_ids)
            extents.append(max(float(hi - lo), 1.0))
        weights = np.array(extents) ** volume_weight_power
        weights[[not s for s in self._scans]] = 0.0
        if weights.sum() <= 0:
            raise ValueError("the slice bank has no scans")
        if regions is not None:
            if len(regions) != len(weights):
                raise ValueError(
                    f"{len(regions)} regions given for {len(weights)} volumes of the bank"
                )
            labels = np.asarray(regions)
            present = [r for r in dict.fromkeys(regions) if weights[labels == r].sum() > 0]
            # Within a region: the extent weighting; across regions: equal shares.
            for r in dict.fromkeys(regions):
                in_r = labels == r
                total = weights[in_r].sum()
                weights[in_r] = weights[in_r] / total / len(present) if total > 0 else 0.0
        self._volume_p = weights / weights.sum()

    def _pick_scans(self, volume: int) -> tuple[int, int, float, float]:
        ids = self._scans[volume]
        for _ in range(20):
            if len(ids) > 1:
                a, b = self.rng.choice(ids, size=2, replace=False)
            else:
                a = b = ids[0]
            za, zb = self.bank.scans[a].extent, self.bank.scans[b].extent
            lo, hi = max(za[0], zb[0]), min(za[1], zb[1])
            if hi - lo >= 5.0:
                return int(a), int(b), lo, hi
        return ids[0], ids[0], *self.bank.scans[ids[0]].extent

    def sample(self) -> Batch:
        """One batch."""
        n = self.groups * self.per_group
        first = self.bank.scans[0].images
        images = np.empty((2 * n, *first.shape[1:]), dtype=np.uint8)
        z = np.empty(2 * n, dtype=np.float32)
        vol = np.empty(2 * n, dtype=np.int64)
        scan = np.empty(2 * n, dtype=np.int64)
        i = 0
        for _ in range(self.groups):
            v = int(self.rng.choice(len(self._volume_p), p=self._volume_p))
            a, b, lo, hi = self._pick_scans(v)
            sa, sb = self.bank.scans[a], self.bank.scans[b]
            centre = self.rng.uniform(lo, hi)
            levels = np.clip(
                centre + self.rng.uniform(-self.window_mm, self.window_mm, self.per_group), lo, hi
            )
            ia = _nearest(sa.z, levels)
            ib = _nearest(sb.z, sa.z[ia])
            for ka, kb in zip(ia, ib, strict=True):
                images[i], z[i], vol[i], scan[i] = sa.images[ka], sa.z[ka], v, a
                images[n + i], z[n + i], vol[n + i], scan[n + i] = sb.images[kb], sb.z[kb], v, b
                i += 1
        return Batch(images, z, vol, scan)


def _nearest(sorted_z: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the value of ascending ``sorted_z`` nearest to each level."""
    right = np.clip(np.searchsorted(sorted_z, levels), 1, len(sorted_z) - 1)
    left = right - 1
    if len(sorted_z) == 1:
        return np.zeros(len(levels), dtype=np.intp)
    pick_left = np.abs(levels - sorted_z[left]) <= np.abs(sorted_z[right] - levels)
    return np.where(pick_left, left, right)
