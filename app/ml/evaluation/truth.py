"""The slice match the simulator's truth gives: what a perfect slice engine would report.

Benchmarks and tests of what comes after the slice match (the point engine,
the linked cursor, measurement propagation) start from it, so that their
figures measure their own stage, not the slice engine's.
"""

from __future__ import annotations

import numpy as np

from app.ml.anatomy.align import Alignment
from app.sim.followup import SimulatedScan, true_correspondence

__all__ = ["truth_alignment"]


def truth_alignment(current: SimulatedScan, prior: SimulatedScan) -> Alignment:
    """The :class:`Alignment` of ``current`` to ``prior`` that the simulator's truth gives.

    Parameters
    ----------
    current, prior
        Two simulated scans of one source (:func:`app.sim.followup.true_correspondence`).

    Returns
    -------
    Alignment
        Each current slice mapped to its true prior level (``mapped_z``), the
        nearest prior slice (``prior_index``), score 1 and the true coverage.
    """
    prior_z, covered = true_correspondence(current, prior)
    pz = prior.volume.slice_z
    idx = np.abs(pz[None, :] - prior_z[:, None]).argmin(axis=1)
    n = len(prior_z)
    return Alignment(
        current_z=current.volume.slice_z.copy(),
        mapped_z=prior_z,
        prior_index=idx,
        score=np.ones(n),
        in_coverage=covered,
        prior_z=pz.copy(),
        outlier=np.zeros(n, dtype=bool),
    )
