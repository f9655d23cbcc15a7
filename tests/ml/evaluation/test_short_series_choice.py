"""The short-series threshold's choice: in the gap, or with the fewest errors; never on test bodies."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.volume import Geometry, Volume
from app.ml.evaluation.short_series import BODIES, DISJOINT, choose_threshold, slab
from app.sim.roles import role_of


def test_a_gap_gives_its_midpoint():
    assert choose_threshold([0.7, 0.9, 0.8], [0.1, 0.5, 0.3]) == (0.6, True)


def test_overlapping_lists_give_the_fewest_errors_and_say_so():
    value, separates = choose_threshold([0.4, 0.8, 0.9], [0.1, 0.2, 0.5])
    assert not separates
    errors = sum(s < value for s in [0.4, 0.8, 0.9]) + sum(d >= value for d in [0.1, 0.2, 0.5])
    assert errors == 1


def test_no_test_body_chooses_the_threshold():
    names = set(BODIES) | {a for a, _, _ in DISJOINT} | {b for _, _, b in DISJOINT}
    assert names <= set(BODIES)
    assert all(role_of(n) != "test" for n in names)


@pytest.mark.parametrize("normal_z", [1.0, -1.0])
def test_slab_counts_toward_the_head_whatever_the_slice_order(normal_z):
    # 100 slices 2 mm apart spanning LPS z 0..198 mm, stored feet first (normal +z)
    # or head first (normal -z).
    n = 100
    origin = (0.0, 0.0, 0.0 if normal_z > 0 else 198.0)
    direction = np.diag([1.0, 1.0, normal_z])
    volume = Volume(np.zeros((n, 4, 4), np.int16), Geometry(origin, (1.0, 1.0, 2.0), direction))
    top = slab(volume, 0.9, 20.0)
    assert len(top.slice_z) == 10
    # Near the head: LPS z (the positions' third column) high.
    assert top.slice_positions[:, 2].min() > 150.0
    bottom = slab(volume, 0.1, 20.0)
    assert bottom.slice_positions[:, 2].max() < 50.0
