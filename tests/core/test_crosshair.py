"""The MPR crosshair across dates (app.core.crosshair) and its place in the viewer state."""

from __future__ import annotations

import numpy as np

from app.core.crosshair import BodyBoxMapper, body_box, map_by_lps
from app.core.state import Channel, SyncGroup, ViewportState
from app.core.volume import Geometry, Volume


def boxed_volume(
    rows: tuple[int, int],
    cols: tuple[int, int],
    n: int = 6,
    origin=(0.0, 0.0, 0.0),
    spacing=(1.0, 1.0, 2.0),
) -> Volume:
    """Air everywhere but a soft-tissue block at ``rows`` x ``cols`` (edges exclusive) of every slice."""
    voxels = np.full((n, 64, 64), -1000, dtype=np.int16)
    voxels[:, rows[0] : rows[1], cols[0] : cols[1]] = 40
    geometry = Geometry(origin=np.array(origin), spacing=np.array(spacing), direction=np.eye(3))
    return Volume(voxels=voxels, geometry=geometry)


def test_the_body_box_is_the_outline_of_the_body():
    v = boxed_volume((10, 42), (16, 32))
    assert body_box(v, 3) == (10.0, 16.0, 42.0, 32.0)
    air = boxed_volume((0, 0), (0, 0))
    assert body_box(air, 0) is None


def test_the_crosshair_keeps_its_place_in_the_body():
    source = boxed_volume((10, 42), (16, 32))
    # The later date: the body 10 rows lower on the table and three times as wide.
    target = boxed_volume((20, 52), (8, 56))
    # Row 17 is 7.5 px into a 32-px-tall body, column 19 3.5 px into a 16-px-wide one.
    assert BodyBoxMapper().map(source, (2, 17, 19), target, 4) == (27, 18)


def test_without_a_body_the_crosshair_goes_by_patient_coordinates():
    air = boxed_volume((0, 0), (0, 0))
    shifted = boxed_volume((0, 0), (0, 0), origin=(5.0, -3.0, 0.0), spacing=(0.5, 1.0, 2.0))
    # Column 20 at 1 mm is x = 20 mm, which is column 30 of the shifted 0.5 mm grid.
    assert map_by_lps(air, (1, 10, 20), shifted, 1) == (13, 30)
    assert BodyBoxMapper().map(air, (1, 10, 20), shifted, 1) == (13, 30)
    # Outside the target: clipped to its edge.
    assert map_by_lps(air, (1, 0, 63), shifted, 1)[1] == 63


def test_boxes_are_remembered_per_volume_and_slice():
    mapper = BodyBoxMapper()
    v = boxed_volume((10, 42), (16, 32))
    first = mapper.box(v, 2)
    v.voxels[2] = -1000  # a cached box is not recomputed
    assert mapper.box(v, 2) == first
    assert mapper.box(v, 3) == first
    other = boxed_volume((10, 42), (16, 32))
    other.voxels[2] = -1000
    assert mapper.box(other, 2) is None  # another volume has its own boxes


def test_set_crosshair_moves_the_level_then_row_and_column():
    vp = ViewportState(boxed_volume((10, 42), (16, 32)))
    events: list[str] = []
    vp.changed.connect(events.append)
    assert vp.crosshair_rc == (32, 32)  # the middle of the slice
    vp.set_crosshair(1, 99, -5)
    assert vp.crosshair == (1, 63, 0)  # clipped to the volume
    assert events == ["slice", "crosshair"]
    vp.set_crosshair(1, 63, 0)
    assert events == ["slice", "crosshair"]  # nothing changed, nothing emitted


def test_anatomical_sync_moves_the_other_dates_crosshairs():
    current = ViewportState(boxed_volume((10, 42), (16, 32)))
    prior = ViewportState(boxed_volume((20, 52), (8, 56), origin=(0.0, 0.0, 4.0)))
    sync = SyncGroup()
    sync.add(current)
    sync.add(prior)
    current.set_crosshair(4, 17, 19)
    assert prior.crosshair_rc == (32, 32)  # SLICE sync off: nothing follows
    sync.set_enabled(Channel.SLICE, True)
    current.set_crosshair(3, 17, 19)
    # The level by position (z 6 mm is the prior's slice 1), row and column by the body box.
    assert prior.crosshair == (1, 27, 18)
    assert current.crosshair == (3, 17, 19)  # the driver is not moved back


def test_the_crosshair_mapper_can_be_replaced_and_gets_the_mapped_level():
    current = ViewportState(boxed_volume((10, 42), (16, 32)))
    prior = ViewportState(boxed_volume((10, 42), (16, 32), origin=(0.0, 0.0, 4.0)))
    sync = SyncGroup()
    sync.add(current)
    sync.add(prior)
    sync.set_enabled(Channel.SLICE, True)
    calls = []

    class Fixed:
        def map(self, source, cursor, target, target_k):
            calls.append((cursor, target_k))
            return 5, 6

    sync.crosshair_mapper = Fixed()
    current.set_crosshair(4, 17, 19)
    assert calls == [((4, 17, 19), 2)]
    assert prior.crosshair == (2, 5, 6)
    # A move made while the group is held stays in its viewport.
    with sync.held():
        prior.set_crosshair(0, 1, 1)
    assert current.crosshair == (4, 17, 19)
