"""In-memory stand-ins for the catalogue objects of app.io and a fake loader backend.

The UI is coded against the app.io contracts (SeriesRef, ScanResult,
PatientGroup); these fakes carry just those attributes so UI tests run with
volumes built in memory, without touching the disk or the real readers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.volume import Geometry, SeriesInfo, Volume


def body_phantom(
    shape: tuple[int, int, int] = (20, 48, 64), seed: int = 0, offset: int = 0
) -> np.ndarray:
    """CT-like HU phantom: air around an elliptical soft-tissue body, a dense spine
    posterior (high row index), a bright marker on the patient's left (high column).
    """
    n, rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    out = np.full(shape, -1000, dtype=np.int16)
    for k in range(n):
        body = ((x - cx) / (0.42 * cols)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2 <= 1
        spine = ((x - cx) / (0.07 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.07 * rows)) ** 2 <= 1
        marker = ((x - cx - 0.28 * cols) / (0.05 * cols)) ** 2 + (
            (y - cy) / (0.05 * rows)
        ) ** 2 <= 1
        sl = out[k]
        sl[body] = 40 + 5 * k + offset
        sl[spine] = 900
        sl[marker] = 1500
        sl += rng.integers(-10, 11, size=(rows, cols), dtype=np.int16)
    return out


def make_volume(
    shape: tuple[int, int, int] = (20, 48, 64),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    direction: np.ndarray | None = None,
    date: str = "20240101",
    description: str = "CT CHEST",
    series_description: str = "Axial 2.5",
    seed: int = 0,
    z0: float = -100.0,
) -> Volume:
    """A display-oriented phantom volume with metadata."""
    geom = Geometry(
        origin=np.array([-(shape[2] * spacing[0]) / 2, -(shape[1] * spacing[1]) / 2, z0]),
        spacing=np.array(spacing),
        direction=np.eye(3) if direction is None else direction,
    )
    info = SeriesInfo(
        patient_id="PID-SECRET",
        patient_name="Doe^Jane",
        study_uid=f"1.2.3.{date}",
        study_date=date,
        study_description=description,
        series_uid=f"1.2.3.{date}.{seed}",
        series_number=seed + 1,
        series_description=series_description,
    )
    return Volume(voxels=body_phantom(shape, seed), geometry=geom, info=info, source=f"mem:{seed}")


@dataclass
class FakeRef:
    """Has the attributes of app.io.scan.SeriesRef that the UI reads."""

    volume: Volume
    key: str
    kind: str = "dicom"
    warnings: list[str] = field(default_factory=list)

    @property
    def info(self) -> SeriesInfo:
        return self.volume.info

    @property
    def n_slices(self) -> int:
        return self.volume.n_slices


@dataclass
class FakeStudy:
    series: list[FakeRef]


@dataclass
class FakePatient:
    studies: list[FakeStudy]


@dataclass
class FakeSkipped:
    path: Path
    reason: str


@dataclass
class FakeScanResult:
    series: list[FakeRef]
    skipped: list[FakeSkipped]


class FakeBackend:
    """A loader backend over fixed in-memory series; records the threads it ran on.

    ``files`` maps a path to the series it "contains"; scanning a path that is not
    in it yields a skipped file.
    """

    def __init__(
        self,
        files: dict[str, list[FakeRef]],
        gate: threading.Event | None = None,
        demo_paths: list[Path] | None = None,
    ) -> None:
        self.files = files
        self.gate = gate
        self.demo_paths = demo_paths or []
        self.threads: list[str] = []
        self.loads: list[str] = []

    def _record(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.gate_ident = threading.get_ident()
        self.idents = getattr(self, "idents", []) + [threading.get_ident()]

    def scan(self, paths, progress=None, cancel=None):
        self._record()
        series, skipped = [], []
        for i, p in enumerate(paths):
            if self.gate is not None:
                # Hold the worker until the test lets it go (or cancels).
                while not self.gate.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        return FakeScanResult([], [])
            if progress:
                progress(i + 1, len(paths))
            found = self.files.get(str(p))
            if found is None:
                skipped.append(FakeSkipped(Path(p), "not a CT image (fake reason)"))
            else:
                series.extend(found)
        return FakeScanResult(series, skipped)

    @staticmethod
    def group(series):
        by_study: dict[str, list[FakeRef]] = {}
        for ref in series:
            by_study.setdefault(ref.info.study_uid, []).append(ref)
        # Deliberately NOT newest first: the UI must order the hanging itself.
        studies = [FakeStudy(refs) for _, refs in sorted(by_study.items())]
        return [FakePatient(studies)] if studies else []

    def load(self, ref, progress=None, cancel=None):
        self._record()
        self.loads.append(ref.key)
        if progress:
            progress(1, 1)
        return ref.volume

    @staticmethod
    def thumbnail(volume, size=64):
        sl = volume.slice(volume.n_slices // 2)
        return np.clip((sl.astype(np.float32) + 1000) / 8, 0, 255).astype(np.uint8)[:size, :size]

    def build_demo(self, progress=None):
        self._record()
        if progress:
            progress(1, 1)
        return self.demo_paths


def three_dates() -> dict[str, list[FakeRef]]:
    """Three studies of one patient, given oldest first; the middle one has two series."""
    old = make_volume(date="20200115", seed=1, description="CT THORAX")
    mid_thin = make_volume(
        shape=(30, 48, 64),
        spacing=(0.8, 0.8, 1.25),
        date="20220301",
        seed=2,
        series_description="Axial 1.25",
    )
    mid_thick = make_volume(date="20220301", seed=3, series_description="Axial 5")
    new = make_volume(date="20240610", seed=4, description="CT CHEST W")
    return {
        "/data/old": [FakeRef(old, "old")],
        "/data/mid": [FakeRef(mid_thick, "mid-thick"), FakeRef(mid_thin, "mid-thin")],
        "/data/new": [FakeRef(new, "new")],
    }
