"""Data roles: disjoint, complete, and a test role that covers every body region."""

from __future__ import annotations

import pytest

from app.sim.roles import (
    OPENKBP_NUMBERS,
    REGIONS,
    ROLES,
    TEST,
    TRAINING,
    TUMOUR_BODIES,
    VALIDATION,
    bodies,
    openkbp_name,
    openkbp_number,
    region_of,
    role_of,
)
from app.sim.sources import SOURCE_NAMES


def test_roles_are_disjoint_and_cover_every_source():
    roles = (set(TRAINING), set(VALIDATION), set(TEST))
    assert sum(map(len, roles)) == len(set().union(*roles))
    assert set().union(*roles) == set(SOURCE_NAMES)
    for role, names in zip(ROLES, (TRAINING, VALIDATION, TEST), strict=True):
        assert all(role_of(n) == role for n in names)


def test_test_role_covers_every_region_with_enough_bodies_and_a_tumour():
    assert len(TEST) >= 8
    assert {region_of(n) for n in TEST} == set(REGIONS)
    assert TUMOUR_BODIES & {n for n in TEST if openkbp_number(n) is None}
    assert sum(openkbp_number(n) is not None for n in TEST) >= 5


def test_validation_role_covers_chest_and_head_neck():
    assert {region_of(n) for n in VALIDATION} >= {"chest", "head-neck"}
    assert sum(openkbp_number(n) is not None for n in VALIDATION) >= 10


def test_openkbp_split_follows_the_patient_number():
    assert len(OPENKBP_NUMBERS) == 203
    assert role_of(openkbp_name(7)) == "validation"
    assert role_of(openkbp_name(213)) == "test"
    assert role_of(openkbp_name(1)) == "training"
    # Most OpenKBP patients train.
    assert sum(openkbp_number(n) is not None for n in TRAINING) >= 180


def test_names_parse_only_when_exact():
    assert openkbp_number("openkbp-007") == 7
    assert openkbp_number("openkbp-7") is None
    assert openkbp_number("openkbp-008") is None  # missing from the data
    assert openkbp_number("chest-lung1") is None
    with pytest.raises(KeyError):
        role_of("lungs")
    with pytest.raises(ValueError, match="unknown data role"):
        bodies("holdout")  # type: ignore[arg-type]


def test_named_only_bodies_leave_openkbp_out():
    named = bodies("training", openkbp=False)
    assert named == ("chest-angio", "upper-abdomen-dicom", "abdomen-pancreas", "head-neck")
