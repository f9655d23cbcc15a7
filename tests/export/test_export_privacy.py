"""Patient identifiers stay out of exports unless the user opts in."""

from __future__ import annotations

import zlib

import pytest

from app import __version__
from app.core.imaging import PRESETS
from app.export.captions import PatientIdentifiers, mask_identifiers
from app.export.formats import exporter_for
from app.export.names import suggest_file_name
from app.export.pairs import PriorSlice, build_panels, encode_panels
from app.export.png_text import iter_chunks, read_text_chunks
from app.export.render import SlicePanel


def needles(identifiers: dict[str, str]) -> list[str]:
    """Every form in which an identifier could leak (raw, name parts, formatted date)."""
    name = identifiers["patient_name"]
    dob = identifiers["patient_birth_date"]
    return [
        name,
        *name.split("^"),
        identifiers["patient_id"],
        dob,
        f"{dob[:4]}-{dob[4:6]}-{dob[6:]}",
        identifiers["accession_number"],
        identifiers["institution"],
        "Zanzibar",
    ]


def all_text_in(data: bytes) -> str:
    """Raw bytes plus every decompressed stream: text chunks and the image data itself."""
    parts = [data.decode("latin-1")]
    parts += [f"{k}\n{v}" for k, v in read_text_chunks(data)]
    idat = b"".join(payload for kind, payload in iter_chunks(data) if kind == b"IDAT")
    parts.append(zlib.decompress(idat).decode("latin-1"))
    return "\n".join(parts).lower()


def export(ct_factory, identifiers, include: bool, description: str = "CHEST 5mm"):
    # Wide slices so that no caption line is cut and every identifier line is drawn in full.
    current = ct_factory(shape=(8, 40, 520), series_description=description)
    prior = ct_factory(shape=(8, 40, 520), study_date="20250110", seed=3)
    panels = [
        SlicePanel(
            current,
            3,
            PRESETS["lung"],
            role="current",
            driver=True,
            institution=identifiers["institution"],
        ),
        SlicePanel(
            prior,
            4,
            PRESETS["lung"],
            role="prior",
            score=0.9,
            institution=identifiers["institution"],
        ),
    ]
    return encode_panels(panels, exporter_for("png"), include_identifiers=include)


@pytest.mark.parametrize("description", ["CHEST 5mm", "Quixotewright PID-58301947 chest"])
def test_no_identifier_anywhere_by_default(ct_factory, identifiers, description) -> None:
    data, rendered = export(ct_factory, identifiers, include=False, description=description)
    text = all_text_in(data)
    captions = "\n".join(line for c in rendered.captions for line in c).lower()
    for needle in needles(identifiers):
        assert needle.lower() not in text, needle
        assert needle.lower() not in captions, needle
    # Only the two agreed text chunks are in the file.
    chunks = dict(read_text_chunks(data))
    assert sorted(chunks) == ["Description", "Software"]
    assert chunks["Software"] == f"PriorSync {__version__}"
    assert chunks["Description"].startswith("CT slices matched by anatomy.")
    if "Quixotewright" in description:
        assert rendered.captions[0][1] == "*** *** chest"


def test_identifiers_with_opt_in(ct_factory, identifiers) -> None:
    data, rendered = export(ct_factory, identifiers, include=True)
    chunks = dict(read_text_chunks(data))
    assert chunks["PatientName"] == identifiers["patient_name"]
    assert chunks["PatientID"] == identifiers["patient_id"]
    assert chunks["PatientBirthDate"] == identifiers["patient_birth_date"]
    assert chunks["AccessionNumber"] == identifiers["accession_number"]
    assert chunks["InstitutionName"] == identifiers["institution"]
    for caption in rendered.captions:
        assert "Quixotewright Philomena  ID PID-58301947  born 1948-09-23" in caption
        assert "Acc ACC77310442  Zanzibar Memorial Hospital" in caption


def test_non_latin_names_go_to_utf8_chunks(ct_factory) -> None:
    from app.core.volume import SeriesInfo, Volume

    base = ct_factory(shape=(4, 40, 300), identifiers=False)
    vol = Volume(
        base.voxels, base.geometry, SeriesInfo(patient_name="山田^太郎", study_date="20260314")
    )
    data, rendered = encode_panels(
        [SlicePanel(vol, 0, PRESETS["lung"], driver=True)],
        exporter_for("png"),
        include_identifiers=True,
    )
    assert dict(read_text_chunks(data))["PatientName"] == "山田^太郎"
    assert b"iTXt" in data
    # The Hershey font cannot draw it: the caption says so honestly rather than drop it.
    assert rendered.captions[0][5].startswith("?? ??")


def test_file_names_carry_no_identifiers(ct_factory, identifiers) -> None:
    current = ct_factory(shape=(120, 8, 8))
    prior = ct_factory(shape=(90, 8, 8), study_date="20250110")
    name = suggest_file_name([(current, 40), (prior, 7)])
    assert name == "priorsync_20260314_im080_vs_20250110_im083.png"  # image numbers
    for needle in needles(identifiers):
        assert needle.lower() not in name.lower()
    assert suggest_file_name([(current, 40), (prior, 7)], date_style="relative") == (
        "priorsync_current_im080_vs_d-428_im083.png"
    )
    big = ct_factory(shape=(1200, 4, 4), study_date="")
    assert suggest_file_name([(big, 5)], ".png") == "priorsync_undated_im1195.png"


def test_relative_dates_leave_no_date_in_the_file(ct_factory) -> None:
    current = ct_factory(shape=(8, 40, 300))
    prior = ct_factory(shape=(8, 40, 300), study_date="20250110")
    panels = build_panels(current, 2, [PriorSlice(prior, 2, 0.9)], PRESETS["lung"])
    data, rendered = encode_panels(panels, exporter_for("png"), date_style="relative")
    text = all_text_in(data) + "\n".join(line for c in rendered.captions for line in c)
    for needle in ("20260314", "2026-03-14", "20250110", "2025-01-10"):
        assert needle not in text
    assert "-428 days" in text


def test_mask_identifiers_whole_words_only() -> None:
    ids = PatientIdentifiers(patient_name="Lung^Al", patient_id="12345")
    # "Lung" is masked as a word; the initial-like "Al" (2 letters) too, but not inside words.
    assert (
        mask_identifiers("LUNG window Alveolar 12345 A12345", ids)
        == "*** window Alveolar *** A12345"
    )
