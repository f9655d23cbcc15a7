"""The three data roles: which real CT bodies train, validate and test the models.

One definition for every command and test. *Training* bodies feed the slice
banks of ``priorsync train`` and ``priorsync train-sketch``; *validation*
bodies choose every tunable (checkpoint, matcher settings, sketch weight);
*test* bodies are scored once per shipped model, for the model card
(``priorsync eval``, ``priorsync eval-sketch``). No body has two roles.

The named volumes are split by hand so each role covers the body regions; the
203 OpenKBP head-and-neck patients are split by a fixed rule on the patient
number, so the split does not depend on which files happen to be present:
number mod 20 == 7 is validation (11 patients), number mod 40 == 13 is test
(6 patients), the other 186 train.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "OPENKBP_NUMBERS",
    "REGIONS",
    "ROLES",
    "TEST",
    "TRAINING",
    "TUMOUR_BODIES",
    "VALIDATION",
    "Role",
    "bodies",
    "openkbp_name",
    "openkbp_number",
    "region_of",
    "role_of",
]

Role = Literal["training", "validation", "test"]
ROLES: tuple[Role, ...] = ("training", "validation", "test")
REGIONS: tuple[str, ...] = ("chest", "abdomen-pelvis", "head-neck")

# OpenKBP patients 1-240 shipped in ../shared/data/ct/openkbp (its README lists the gaps).
_OPENKBP_MISSING = frozenset(
    {8, 19, 23, 32, 44, 46, 56, 63, 69, 73, 75, 81, 85, 102, 107, 110, 117, 125, 134, 135}
    | {138, 142, 145, 153, 161, 174, 175, 179, 186, 191, 205, 217, 220, 223, 228, 234, 240}
)
OPENKBP_NUMBERS: tuple[int, ...] = tuple(n for n in range(1, 241) if n not in _OPENKBP_MISSING)

# Named volumes: region of each, by what the scan mostly shows (see SOURCES.md).
_NAMED_REGION: dict[str, str] = {
    "chest-angio": "chest",
    "chest-lung1": "chest",
    "chest-lung2": "chest",
    "chest-4dlung": "chest",
    "chest-nsclc": "chest",
    "upper-abdomen-dicom": "abdomen-pelvis",
    "abdomen-pancreas": "abdomen-pelvis",
    "abdomen-pelvis": "abdomen-pelvis",
    "head-neck": "head-neck",
    "head": "head-neck",
    "head-neck-chus": "head-neck",
}
_NAMED_ROLE: dict[str, Role] = {
    "chest-angio": "training",
    "upper-abdomen-dicom": "training",
    "abdomen-pancreas": "training",
    "head-neck": "training",
    "chest-lung2": "validation",
    "chest-4dlung": "validation",
    "head": "validation",
    "abdomen-pelvis": "test",
    "chest-lung1": "test",
    "chest-nsclc": "test",
    "head-neck-chus": "test",
}

# Bodies with a real tumour (a tumour mask beside the CT, or OpenKBP's gross-disease PTV70).
_TUMOUR_NAMED = frozenset({"chest-lung1", "chest-lung2", "chest-4dlung", "chest-nsclc"})


def openkbp_name(number: int) -> str:
    """Source name of OpenKBP patient ``number`` (``openkbp-007`` for ``pt_7``)."""
    return f"openkbp-{number:03d}"


def openkbp_number(name: str) -> int | None:
    """The OpenKBP patient number of a source name, or ``None`` for a named volume."""
    prefix, _, digits = name.partition("-")
    if prefix != "openkbp" or not digits.isdigit():
        return None
    number = int(digits)
    return number if number in OPENKBP_NUMBERS and name == openkbp_name(number) else None


def _openkbp_role(number: int) -> Role:
    if number % 20 == 7:
        return "validation"
    if number % 40 == 13:
        return "test"
    return "training"


def role_of(name: str) -> Role:
    """The role of one body.

    Raises
    ------
    KeyError
        Unknown body.
    """
    number = openkbp_number(name)
    if number is not None:
        return _openkbp_role(number)
    return _NAMED_ROLE[name]


def region_of(name: str) -> str:
    """Body region (one of :data:`REGIONS`) of one body; raises ``KeyError`` if unknown."""
    if openkbp_number(name) is not None:
        return "head-neck"
    return _NAMED_REGION[name]


def _all_bodies() -> tuple[str, ...]:
    return tuple(_NAMED_ROLE) + tuple(openkbp_name(n) for n in OPENKBP_NUMBERS)


def bodies(role: Role, *, openkbp: bool = True) -> tuple[str, ...]:
    """The bodies of one role: named volumes first, then OpenKBP patients by number.

    ``openkbp=False`` leaves the OpenKBP patients out (e.g. for a bank that
    keeps every slice of a few bodies in memory).
    """
    if role not in ROLES:
        raise ValueError(f"unknown data role {role!r}; roles: {', '.join(ROLES)}")
    return tuple(
        n for n in _all_bodies() if role_of(n) == role and (openkbp or openkbp_number(n) is None)
    )


TRAINING: tuple[str, ...] = bodies("training")
VALIDATION: tuple[str, ...] = bodies("validation")
TEST: tuple[str, ...] = bodies("test")
TUMOUR_BODIES: frozenset[str] = _TUMOUR_NAMED | {openkbp_name(n) for n in OPENKBP_NUMBERS}
