"""A simulated patient with three CT dates and known anatomical correspondence.

Built from the matching-engine tests' CT-like phantom with :mod:`app.sim`:
the current scan covers most of the phantom, the priors less of it, each with
its own table position, frame of reference, slice spacing, motion and noise.
Small matrices keep the whole patient (and its indexing) to about a second.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ml"))

from engine_helpers import phantom_volume  # noqa: E402
from fakes import FakeRef  # noqa: E402

from app.sim.followup import (  # noqa: E402
    SIM_PRESETS,
    SimulatedScan,
    simulate_followup,
    true_correspondence,
)

# (date, coverage fraction, seed) of each study; the current study first.
_STUDIES = (("20250310", 0.92, 11), ("20240205", 0.62, 12), ("20230117", 0.55, 13))


@dataclass
class SimPatient:
    """The scans (current first) and their catalogue entries for the fake loader."""

    scans: list[SimulatedScan]
    refs: list[FakeRef]

    @property
    def files(self) -> dict[str, list[FakeRef]]:
        return {f"/sim/{ref.key}": [ref] for ref in self.refs}

    def truth(self, prior: int, current_slice: int) -> tuple[float, bool]:
        """True level (prior slice_z, mm) of a current slice in scan ``prior``, and coverage."""
        z, covered = true_correspondence(self.scans[0], self.scans[prior])
        return float(z[current_slice]), bool(covered[current_slice])

    def well_inside(self, prior: int, current_slice: int, margin_mm: float) -> bool:
        """True when the slice's level lies at least ``margin_mm`` inside scan ``prior``.

        At a scan's very end "covered or not" is a judgement within the
        matching tolerance either way, so accuracy checks leave the ends out.
        """
        z, covered = self.truth(prior, current_slice)
        pz = self.scans[prior].volume.slice_z
        return covered and min(pz) + margin_mm <= z <= max(pz) - margin_mm


def simulated_patient(n_slices: int = 100, matrix: int = 128) -> SimPatient:
    """Three dates of one simulated patient (deterministic)."""
    source = phantom_volume(n_slices=n_slices, spacing_z=2.5, matrix=matrix, pixel_mm=3.0)
    base = replace(
        SIM_PRESETS["standard"],
        matrix_sizes=(matrix,),
        lesion_probability=0.0,
        thickness_mm=(2.0, 4.0),
    )
    scans, refs = [], []
    for i, (date, coverage, seed) in enumerate(_STUDIES):
        scan = simulate_followup(
            source,
            replace(base, coverage=(coverage, coverage)),
            np.random.default_rng(seed),
            study_date=date,
            info_overrides={
                "patient_id": "SIM-0001",
                "patient_name": "Sim^Patient",
                "study_description": "CT CHEST",
                "series_description": f"Axial sim {i}",
                "modality": "CT",
            },
        )
        scans.append(scan)
        refs.append(FakeRef(scan.volume, "current" if i == 0 else f"prior{i}"))
    return SimPatient(scans, refs)
