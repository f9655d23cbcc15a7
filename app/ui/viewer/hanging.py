"""Which series go on screen: one viewport per study date, newest first.

Qt-free (it only reads the catalogue objects of :mod:`app.io.catalog`), so the
hanging rules are tested without a window. A *slot* is one study's place on
screen; the series it shows defaults to the one with the most slices (usually
the thin-slice reconstruction a reader wants) and the study browser can swap it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.state import newest_first
from app.core.volume import SeriesInfo
from app.io.catalog import PatientGroup, StudyGroup
from app.io.records import SeriesRef

__all__ = ["StudySlot", "plan_hanging", "default_series", "study_title", "series_label"]


@dataclass
class StudySlot:
    """One study's viewport: the study's series and the one shown."""

    study: StudyGroup
    series: list[SeriesRef]  # the study's series
    chosen: SeriesRef  # the one on screen

    @property
    def date(self) -> str:
        return self.chosen.info.study_date

    @property
    def key(self) -> str:
        return str(self.chosen.key)


def default_series(series: Sequence[SeriesRef]) -> SeriesRef:
    """The series shown by default: most slices; ties go to the lower series number."""
    if not series:
        raise ValueError("a study without series cannot be hung")

    def rank(ref: SeriesRef) -> tuple[int, int]:
        number = ref.info.series_number
        return (-int(ref.n_slices), number if number is not None else 1 << 30)

    return min(series, key=rank)


def plan_hanging(patient: PatientGroup) -> list[StudySlot]:
    """Slots for one patient's studies, newest study first (undated last).

    Parameters
    ----------
    patient
        A ``PatientGroup`` whose ``studies`` each have ``series`` (``SeriesRef``).
    """
    studies = [s for s in patient.studies if list(s.series)]
    dates = [default_series(list(s.series)).info.study_date for s in studies]
    slots = []
    for i in newest_first(dates):
        series = list(studies[i].series)
        slots.append(StudySlot(study=studies[i], series=series, chosen=default_series(series)))
    return slots


def study_title(info: SeriesInfo) -> str:
    """Viewport header: ``date · study description · series description``."""
    parts = [info.display_date()]
    for text in (info.study_description, info.series_description):
        if text and text.strip():
            parts.append(text.strip())
    return " · ".join(parts)


def series_label(ref: SeriesRef) -> str:
    """Study-browser text of a series: number, description and slice count."""
    info = ref.info
    number = f"#{info.series_number} " if info.series_number is not None else ""
    description = info.series_description.strip() or "(no description)"
    return f"{number}{description} — {ref.n_slices} slices"
