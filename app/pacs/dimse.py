"""DIMSE backend through pynetdicom: C-ECHO, C-FIND (patient/study/series), C-GET, C-MOVE.

Each call opens its own association and releases it after, so a backend
holds no socket between calls. C-GET brings the instances back on the same
association; C-MOVE has the server send them to our own storage SCP (which
the server must know as ``calling_ae`` at this machine and ``move_port``).

Every association's socket, ours or the one the server opens to our storage
SCP, sends without delay (``TCP_NODELAY``): pynetdicom writes a DIMSE message
as several small writes (command, then identifier), and with Nagle's
algorithm on, the second waits for the peer's delayed acknowledgement (40 ms
on Linux) once per message.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, _config, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from app.pacs.backend import Instance, InstanceSink, PacsBackend, quiet_library_loggers
from app.pacs.errors import (
    PacsError,
    ServerRefused,
    ServerUnreachable,
    StudyNotFound,
    TransferIncomplete,
    TransferTimedOut,
)
from app.pacs.records import (
    SeriesRecord,
    StudyQuery,
    StudyRecord,
    series_from_dataset,
    study_from_dataset,
)
from app.pacs.servers import ServerConfig

__all__ = ["DimseBackend", "PatientRecord"]

log = logging.getLogger(__name__)

# Statuses (PS3.4 C.4): pending answers, success, cancel.
_PENDING = {0xFF00, 0xFF01}
_SUCCESS = 0x0000
_CANCELLED = 0xFE00
_WARNING = 0xB000
_OUT_OF_RESOURCES = 0xA702
# 120 storage SOP classes + the C-GET context: under the 128-context limit.
_STORAGE = [uid for cx in StoragePresentationContexts if (uid := cx.abstract_syntax) is not None]

_STUDY_KEYS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_SERIES_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


def _no_delay(event: Any) -> None:
    """EVT_CONN_OPEN handler: switch Nagle's algorithm off on the new connection's socket."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        # Not a TCP socket, or already closed: nothing to speed up.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _quiet_pynetdicom() -> None:
    """Keep pynetdicom from rendering identifiers (patient names, IDs) for its log.

    It formats every C-FIND request and answer line by line for its info log,
    whatever the log level, unless told not to: that is a patient
    identifier kept out of any log handler, and a few ms of each search.
    """
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


@dataclass(frozen=True)
class PatientRecord:
    """One patient as a patient-level C-FIND describes it (identifiers: never log)."""

    patient_id: str
    patient_name: str = ""
    patient_birth_date: str = ""
    n_studies: int | None = None


@dataclass
class _Receiver:
    """Collects what the storage handler met, to report after the retrieval."""

    sink: InstanceSink
    cancel: threading.Event
    received: int = 0
    error: PacsError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_store(self, event: Any) -> int:
        if self.cancel.is_set() or self.error is not None:
            return _OUT_OF_RESOURCES
        try:
            # The encoded file as received: no decode and re-encode of the pixels.
            data = event.encoded_dataset()
            with self.lock:
                self.sink(Instance(data=data))
                self.received += 1
        except PacsError as exc:
            self.error = exc
            return _OUT_OF_RESOURCES
        except Exception as exc:  # noqa: BLE001 - a handler must answer with a status
            self.error = PacsError(f"an instance could not be stored ({type(exc).__name__})")
            return _OUT_OF_RESOURCES
        return _SUCCESS


class DimseBackend(PacsBackend):
    """DICOM networking with ``server.host:server.port`` as ``server.calling_ae``."""

    def __init__(self, server: ServerConfig) -> None:
        super().__init__(server)
        quiet_library_loggers()
        _quiet_pynetdicom()

    # -- associations ----------------------------------------------------------------------
    def _ae(self) -> AE:
        ae = AE(ae_title=self.server.calling_ae)
        t = self.server.timeout_s
        ae.acse_timeout = t
        ae.dimse_timeout = t
        ae.network_timeout = t
        ae.connection_timeout = min(t, 10.0)
        return ae

    def _unreachable(self, what: str) -> ServerUnreachable:
        return ServerUnreachable(
            f"{self.server.name}: cannot connect to {self.server.host}:{self.server.port} "
            f"while {what} (server down, or wrong host or port)"
        )

    def _probe(self, what: str) -> None:
        # A refused connection is told apart here: pynetdicom reports it only in
        # its log, and leaks the socket it made (a ResourceWarning) when it fails.
        try:
            with socket.create_connection(
                (self.server.host, self.server.port), timeout=min(self.server.timeout_s, 10.0)
            ):
                pass
        except OSError:
            raise self._unreachable(what) from None

    def _associate(
        self,
        ae: AE,
        what: str,
        ext_neg: list[Any] | None = None,
        handlers: list[Any] | None = None,
    ) -> Association:
        self._probe(what)
        connected = threading.Event()

        def opened(event: Any) -> None:
            _no_delay(event)
            connected.set()

        events: list[Any] = [(evt.EVT_CONN_OPEN, opened), *(handlers or [])]
        assoc = ae.associate(
            self.server.host,
            self.server.port,
            ae_title=self.server.called_ae,
            ext_neg=ext_neg,
            evt_handlers=events,
        )
        if assoc.is_established:
            return assoc
        name = self.server.name
        where = f"{self.server.host}:{self.server.port}"
        if assoc.is_rejected:
            raise ServerRefused(
                f"{name}: the server at {where} refused the association while {what} "
                f"(is its AE title {self.server.called_ae!r}, and does it accept ours, "
                f"{self.server.calling_ae!r}?)"
            )
        if not connected.is_set():
            raise self._unreachable(what)
        raise TransferTimedOut(
            f"{name}: the server at {where} did not complete the association "
            f"within {self.server.timeout_s:.0f} s while {what}"
        )

    def _responses(
        self, assoc: Association, responses: Iterator[tuple[Dataset, Dataset | None]], what: str
    ) -> Iterator[tuple[int, Dataset, Dataset | None]]:
        for status, identifier in responses:
            if not status or "Status" not in status:
                # pynetdicom yields an empty status when the DIMSE timeout hit or
                # the association was aborted under it.
                raise TransferTimedOut(
                    f"{self.server.name}: the server stopped answering while {what} "
                    f"(nothing for {self.server.timeout_s:.0f} s, or the connection was lost)"
                )
            yield int(status.Status), status, identifier

    # -- operations ------------------------------------------------------------------------
    def echo(self) -> None:
        ae = self._ae()
        ae.add_requested_context(Verification)
        assoc = self._associate(ae, "testing the connection")
        try:
            status = assoc.send_c_echo()
            if not status or int(status.get("Status", -1)) != _SUCCESS:
                raise ServerRefused(f"{self.server.name}: the server did not confirm C-ECHO")
        finally:
            assoc.release()

    def _find(self, model: str, query: Dataset, what: str) -> list[Dataset]:
        ae = self._ae()
        ae.add_requested_context(model)
        assoc = self._associate(ae, what)
        answers: list[Dataset] = []
        try:
            for code, _status, identifier in self._responses(
                assoc, assoc.send_c_find(query, model), what
            ):
                if code in _PENDING:
                    if identifier is not None:
                        answers.append(identifier)
                elif code == _SUCCESS:
                    break
                elif code == _CANCELLED and answers:
                    # We sent no C-CANCEL: the server stopped by itself. Orthanc does
                    # this at its LimitFindResults; a partial list must not pass as all.
                    raise ServerRefused(
                        f"{self.server.name}: the server stopped the search after "
                        f"{len(answers)} answers (it limits how many it gives); "
                        "narrow the search"
                    )
                else:
                    raise ServerRefused(
                        f"{self.server.name}: the server failed the search (status 0x{code:04X})"
                    )
        finally:
            if assoc.is_established:
                assoc.release()
        return answers

    def find_patients(self, patient_id: str = "", patient_name: str = "") -> list[PatientRecord]:
        """Patient-level C-FIND (patient root) by ID and/or name (wildcards allowed)."""
        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = patient_id
        q.PatientName = patient_name
        q.PatientBirthDate = ""
        q.NumberOfPatientRelatedStudies = ""
        out = []
        for ds in self._find(PatientRootQueryRetrieveInformationModelFind, q, "searching patients"):
            pid = str(ds.get("PatientID", "") or "")
            if pid:
                n = ds.get("NumberOfPatientRelatedStudies")
                out.append(
                    PatientRecord(
                        patient_id=pid,
                        patient_name=str(ds.get("PatientName", "") or ""),
                        patient_birth_date=str(ds.get("PatientBirthDate", "") or ""),
                        n_studies=int(n) if n not in (None, "") else None,
                    )
                )
        return out

    def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        for key in _STUDY_KEYS:
            setattr(q, key, "")
        q.PatientID = query.patient_id
        q.PatientName = query.patient_name
        q.AccessionNumber = query.accession
        q.StudyDate = query.date_range
        q.ModalitiesInStudy = query.modality
        q.StudyInstanceUID = query.study_uid
        answers = self._find(StudyRootQueryRetrieveInformationModelFind, q, "searching studies")
        records = (study_from_dataset(ds) for ds in answers)
        return [r for r in records if r is not None]

    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        for key in _SERIES_KEYS:
            setattr(q, key, "")
        q.StudyInstanceUID = study_uid
        answers = self._find(
            StudyRootQueryRetrieveInformationModelFind, q, "listing a study's series"
        )
        records = (series_from_dataset(ds, study_uid) for ds in answers)
        return [r for r in records if r is not None]

    def retrieve_series(
        self, series: SeriesRecord, sink: InstanceSink, cancel: threading.Event
    ) -> int:
        if self.server.retrieve == "move":
            return self._move(series, sink, cancel)
        return self._get(series, sink, cancel)

    @staticmethod
    def _series_query(series: SeriesRecord) -> Dataset:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        q.StudyInstanceUID = series.study_uid
        q.SeriesInstanceUID = series.series_uid
        return q

    def _get(self, series: SeriesRecord, sink: InstanceSink, cancel: threading.Event) -> int:
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for uid in _STORAGE:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in _STORAGE]
        receiver = _Receiver(sink, cancel)
        what = "retrieving a series (C-GET)"
        assoc = self._associate(
            ae, what, ext_neg=roles, handlers=[(evt.EVT_C_STORE, receiver.handle_store)]
        )
        try:
            final = self._drain(
                assoc,
                assoc.send_c_get(
                    self._series_query(series), StudyRootQueryRetrieveInformationModelGet
                ),
                cancel,
                StudyRootQueryRetrieveInformationModelGet,
                what,
            )
        finally:
            if assoc.is_established:
                assoc.release()
        return self._outcome(series, receiver, final, cancel)

    def _move(self, series: SeriesRecord, sink: InstanceSink, cancel: threading.Event) -> int:
        receiver = _Receiver(sink, cancel)
        scp_ae = self._ae()
        for uid in _STORAGE:
            scp_ae.add_supported_context(uid)
        bind = "127.0.0.1" if self.server.host in ("127.0.0.1", "localhost", "::1") else ""
        try:
            scp = scp_ae.start_server(
                (bind, self.server.move_port),
                block=False,
                evt_handlers=[
                    (evt.EVT_CONN_OPEN, _no_delay),
                    (evt.EVT_C_STORE, receiver.handle_store),
                ],
            )
        except OSError as exc:
            raise ServerRefused(
                f"{self.server.name}: our storage SCP cannot listen on port "
                f"{self.server.move_port} ({exc.strerror or exc})"
            ) from None
        what = "retrieving a series (C-MOVE)"
        try:
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = self._associate(ae, what)
            try:
                final = self._drain(
                    assoc,
                    assoc.send_c_move(
                        self._series_query(series),
                        self.server.calling_ae,
                        StudyRootQueryRetrieveInformationModelMove,
                    ),
                    cancel,
                    StudyRootQueryRetrieveInformationModelMove,
                    what,
                )
            finally:
                if assoc.is_established:
                    assoc.release()
        finally:
            if scp is not None:  # start_server returns None only when it blocks
                scp.shutdown()
        return self._outcome(series, receiver, final, cancel)

    def _drain(
        self,
        assoc: Association,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        cancel: threading.Event,
        model: str,
        what: str,
    ) -> Dataset:
        cancel_sent = False
        final = Dataset()
        for code, status, _identifier in self._responses(assoc, responses, what):
            final = status
            if code in _PENDING:
                if cancel.is_set() and not cancel_sent:
                    assoc.send_c_cancel(1, query_model=model)
                    cancel_sent = True
                continue
            break
        return final

    def _outcome(
        self,
        series: SeriesRecord,
        receiver: _Receiver,
        final: Dataset,
        cancel: threading.Event,
    ) -> int:
        if receiver.error is not None:
            raise receiver.error
        if cancel.is_set():
            return receiver.received
        code = int(final.get("Status", -1))
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        name = self.server.name
        if code == _SUCCESS and receiver.received == 0:
            raise StudyNotFound(f"{name}: the series is not, or no longer, on the server")
        if code not in (_SUCCESS, _WARNING, _CANCELLED) or failed:
            if self.server.retrieve == "move" and receiver.received == 0 and not failed:
                # 0xA801 is "move destination unknown"; Orthanc answers 0xC000.
                raise ServerRefused(
                    f"{name}: the server would not send to our AE title "
                    f"{self.server.calling_ae!r} (is it configured there as a C-MOVE "
                    f"destination at this machine, port {self.server.move_port}?) "
                    f"(status 0x{code:04X})"
                )
            raise TransferIncomplete(
                f"{name}: the server sent {receiver.received} instances and failed "
                f"{failed} (status 0x{code:04X}); the series may have been deleted or be damaged"
            )
        return receiver.received
