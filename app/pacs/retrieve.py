"""Fetching studies into the cache, and finding a patient's earlier CT studies.

These are what the command line and the UI's background jobs call; they
take a backend (one server) and a :class:`~app.pacs.cache.StudyCache`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from app.pacs.backend import Instance, PacsBackend
from app.pacs.cache import CachedStudy, StudyCache
from app.pacs.errors import BadInstances, StudyNotFound, TransferCancelled, TransferIncomplete
from app.pacs.records import SeriesRecord, StudyQuery, StudyRecord
from app.pacs.servers import PacsOptions

__all__ = [
    "FetchResult",
    "PatientFetch",
    "ct_studies",
    "fetch_patient",
    "fetch_study",
    "find_priors",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FetchResult:
    """One study in the cache, and how it got there."""

    study: CachedStudy
    from_cache: bool
    skipped_series: int = 0  # series that are not CT (reports, scouts of other modalities)


def _no_progress(_done: int, _total: int) -> None:
    pass


def fetch_study(
    backend: PacsBackend,
    study_uid: str,
    cache: StudyCache,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> FetchResult:
    """The study's CT series, from the cache or else from the server into the cache.

    Parameters
    ----------
    backend
        The server to ask when the cache lacks the study.
    study_uid
        Study Instance UID.
    cache
        Where the study is looked up and committed.
    progress
        ``progress(done, total)`` per instance received.
    cancel
        Set it to stop the transfer (:class:`TransferCancelled` is raised).

    Raises
    ------
    app.pacs.errors.PacsError
        Any fault; nothing of a failed transfer is left in the cache.
    """
    progress = progress or _no_progress
    cancel = cancel or threading.Event()
    cached = cache.lookup(study_uid)
    if cached is not None:
        log.info("study %s: from the local cache", study_uid)
        progress(1, 1)
        return FetchResult(cached, from_cache=True)
    series = backend.find_series(study_uid)
    if not series:
        raise StudyNotFound(f"{backend.server.name}: the study is not on the server")
    ct = [s for s in series if s.modality == "CT"]
    if not ct:
        found = ", ".join(sorted({s.modality or "?" for s in series}))
        raise BadInstances(f"{backend.server.name}: the study holds no CT series (only {found})")
    total = sum(s.n_instances or 0 for s in ct) or len(ct)
    done = 0
    with cache.stage(study_uid) as staged:
        for s in ct:

            def sink(instance: Instance, s: SeriesRecord = s) -> None:
                nonlocal done
                staged.add(s.series_uid, instance)
                done += 1
                progress(min(done, total), total)

            backend.retrieve_series(s, sink, cancel)
            if cancel.is_set():
                raise TransferCancelled("the transfer was cancelled")
            got = staged.count(s.series_uid)
            if got == 0:
                raise StudyNotFound(
                    f"{backend.server.name}: a series of the study is no longer on the server"
                )
            if s.n_instances is not None and got < s.n_instances:
                raise TransferIncomplete(
                    f"{backend.server.name}: {got} of {s.n_instances} images of a series arrived"
                )
        result = staged.commit()
    log.info("study %s: fetched %d instances (%d series)", study_uid, result.n_instances, len(ct))
    return FetchResult(result, from_cache=False, skipped_series=len(series) - len(ct))


def ct_studies(studies: list[StudyRecord]) -> list[StudyRecord]:
    """Studies that hold CT (or do not say), newest first."""
    keep = [s for s in studies if not s.modalities or "CT" in s.modalities]
    return sorted(keep, key=lambda s: s.sort_key, reverse=True)


def find_priors(
    backend: PacsBackend, current: StudyRecord, studies: list[StudyRecord] | None = None
) -> list[StudyRecord]:
    """The same patient's CT studies on the server older than ``current``, newest first.

    ``studies`` is the answer of a search by the patient's ID already made;
    without it the server is asked.
    """
    if not current.patient_id:
        return []
    if studies is None:
        studies = backend.find_studies(StudyQuery(patient_id=current.patient_id))
    older = [
        s
        for s in studies
        if s.study_uid != current.study_uid
        and s.patient_id == current.patient_id
        and (not current.study_date or s.sort_key < current.sort_key)
    ]
    return ct_studies(older)


@dataclass
class PatientFetch:
    """A patient's current study and the priors fetched for it, all in the cache."""

    current: StudyRecord
    priors: list[StudyRecord] = field(default_factory=list)
    results: list[FetchResult] = field(default_factory=list)

    @property
    def folders(self) -> list[list[str]]:
        return [[str(p) for p in r.study.series_folders] for r in self.results]


def fetch_patient(
    backend: PacsBackend,
    patient_id: str,
    cache: StudyCache,
    n_priors: int = PacsOptions.n_priors,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    current_uid: str = "",
) -> PatientFetch:
    """Fetch a patient's newest CT study (or ``current_uid``) and its newest ``n_priors`` priors.

    Raises
    ------
    StudyNotFound
        The patient has no CT study on the server.
    app.pacs.errors.PacsError
        Any transfer fault.
    """
    cancel = cancel or threading.Event()
    progress = progress or _no_progress
    answer = backend.find_studies(StudyQuery(patient_id=patient_id))
    studies = [s for s in ct_studies(answer) if s.patient_id == patient_id]
    if current_uid:
        studies = [s for s in studies if s.study_uid == current_uid] + [
            s for s in studies if s.study_uid != current_uid
        ]
    if not studies:
        raise StudyNotFound(f"{backend.server.name}: no CT study of that patient on the server")
    current = studies[0]
    # The same search answers who the priors are: no second round trip.
    priors = find_priors(backend, current, answer)[: max(0, n_priors)]
    chosen = [current, *priors]
    out = PatientFetch(current=current, priors=priors)
    for i, study in enumerate(chosen):

        def step(done: int, total: int, i: int = i) -> None:
            # Whole studies as the unit, the current one's images as the fraction.
            progress(i * 1000 + (1000 * done) // max(total, 1), 1000 * len(chosen))

        out.results.append(fetch_study(backend, study.study_uid, cache, step, cancel))
    return out
