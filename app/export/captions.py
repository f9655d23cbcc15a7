"""What the caption under an exported slice says, and what it must never say.

Privacy rule: patient identifiers (name, ID, birth date, accession number,
institution) appear only when the caller opts in (``include_identifiers``).
Free-text DICOM fields such as the series description are sometimes typed by
hand and can carry a name or an ID, so without the opt-in any identifier found
in them is masked as well.

Study dates are shown: the interval between the current and the prior scan is
the clinical content of a comparison. A date alone does not identify a patient,
but under HIPAA Safe Harbor an examination date counts among the identifiers of
a de-identified data set; for teaching files use ``date_style="relative"``,
which replaces every date by the interval to the current study
(``"current"``, ``"-412 days"``) in captions and file names alike.

Text is drawn with OpenCV's Hershey fonts, which have ASCII glyphs only; names
and descriptions are transliterated (``"Müller"`` → ``"Muller"``) and anything
left over becomes ``"?"``. The caption lines a renderer returns are exactly the
strings it drew.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

from app.core.volume import SeriesInfo

__all__ = [
    "DateStyle",
    "PatientIdentifiers",
    "ascii_text",
    "date_label",
    "image_number",
    "mask_identifiers",
    "parse_study_date",
]

DateStyle = Literal["absolute", "relative"]
_MASK = "***"


@dataclass(frozen=True)
class PatientIdentifiers:
    """The identifiers an export hides unless the user opts in.

    ``institution`` is not part of :class:`~app.core.volume.SeriesInfo`; callers
    that know it pass it explicitly.
    """

    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    accession_number: str = ""
    institution: str = ""

    @classmethod
    def from_info(cls, info: SeriesInfo, institution: str = "") -> PatientIdentifiers:
        """The identifiers held by a series' metadata."""
        return cls(
            patient_name=info.patient_name,
            patient_id=info.patient_id,
            birth_date=info.patient_birth_date,
            accession_number=info.accession_number,
            institution=institution,
        )

    def caption_lines(self) -> list[str]:
        """Caption lines showing the identifiers (only used with the user's opt-in)."""
        name = " ".join(p for p in self.patient_name.replace("^", " ").split() if p)
        first = [name or "name unknown", f"ID {self.patient_id or 'unknown'}"]
        if self.birth_date:
            first.append(f"born {_format_date(self.birth_date)}")
        second = []
        if self.accession_number:
            second.append(f"Acc {self.accession_number}")
        if self.institution:
            second.append(self.institution)
        lines = ["  ".join(first)]
        if second:
            lines.append("  ".join(second))
        return lines

    def text_items(self) -> dict[str, str]:
        """The non-empty identifiers by field name (for file metadata, with the opt-in)."""
        items = {
            "PatientName": self.patient_name,
            "PatientID": self.patient_id,
            "PatientBirthDate": self.birth_date,
            "AccessionNumber": self.accession_number,
            "InstitutionName": self.institution,
        }
        return {k: v for k, v in items.items() if v}

    def tokens(self) -> list[str]:
        """Every string that must not appear without the opt-in (name parts, ID, dates...)."""
        out: list[str] = []
        name = self.patient_name.replace("^", " ").replace(",", " ")
        # Single letters (initials) would mask ordinary words; two letters and up are kept.
        out += [p for p in name.split() if len(p) >= 2]
        for value in (self.patient_id, self.accession_number, self.institution):
            if value.strip():
                out.append(value.strip())
        if self.birth_date.strip():
            out.append(self.birth_date.strip())
            formatted = _format_date(self.birth_date)
            if formatted != self.birth_date:
                out.append(formatted)
        return out


def ascii_text(text: str) -> str:
    """``text`` as the ASCII the Hershey fonts can draw (accents dropped, the rest ``?``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    out = []
    for c in stripped:
        if c in "\t\r\n":
            out.append(" ")
        elif 32 <= ord(c) < 127:
            out.append(c)
        else:
            out.append("?")
    return "".join(out)


def mask_identifiers(text: str, identifiers: PatientIdentifiers) -> str:
    """``text`` with every identifier token (whole words, any case) replaced by ``***``."""
    for token in sorted(set(identifiers.tokens()), key=len, reverse=True):
        # Word boundaries only where the token starts/ends with a word character,
        # so IDs like "A-123" still match inside punctuation.
        left = r"(?<!\w)" if token[0].isalnum() else ""
        right = r"(?!\w)" if token[-1].isalnum() else ""
        text = re.sub(left + re.escape(token) + right, _MASK, text, flags=re.IGNORECASE)
        ascii_token = ascii_text(token)
        if ascii_token != token:
            text = re.sub(left + re.escape(ascii_token) + right, _MASK, text, flags=re.IGNORECASE)
    return text


def parse_study_date(value: str) -> date | None:
    """A DICOM ``YYYYMMDD`` date, or ``None`` when absent or invalid."""
    if len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return None
    return None


def _format_date(value: str) -> str:
    d = parse_study_date(value)
    return d.isoformat() if d else value


def date_label(study_date: str, reference: str, style: DateStyle) -> str:
    """How a study date is shown.

    Parameters
    ----------
    study_date
        The study's DICOM date (``YYYYMMDD`` or ``""``).
    reference
        The current (driving) study's date, for ``style="relative"``.
    style
        ``"absolute"``: ``"2025-01-10"``; ``"relative"``: days from the reference
        (``"current"`` for the same day, ``"-412 days"`` for an earlier study).
        Unknown dates give ``"undated"``.
    """
    d = parse_study_date(study_date)
    if d is None:
        return "undated"
    if style == "absolute":
        return d.isoformat()
    ref = parse_study_date(reference)
    if ref is None:
        # No reference to count from: an absolute date would defeat the purpose.
        return "dated"
    days = (d - ref).days
    if days == 0:
        return "current"
    return f"{days:+d} days"


def image_number(index: int, n_slices: int) -> int:
    """The viewer's image number of slice ``index``: counted from the head down, from 1.

    Same numbering as the viewport's ``Im k/N`` label, so an exported caption
    reads like the screen the radiologist saw.
    """
    return n_slices - index
