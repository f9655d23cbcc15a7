"""DICOMweb backend: QIDO-RS search and WADO-RS retrieve through dicomweb-client.

Authentication is basic (user name + keyring password) or a bearer token
(from the keyring); HTTPS checks the server against the system's authorities
or the server's CA file. Every requests/HTTP failure becomes a
:class:`~app.pacs.errors.PacsError` naming the server and the fault.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import requests
import urllib3.exceptions
from dicomweb_client.api import DICOMwebClient

from app.pacs.backend import Instance, InstanceSink, PacsBackend, quiet_library_loggers
from app.pacs.credentials import require_secret
from app.pacs.errors import (
    AuthenticationFailed,
    PacsError,
    ServerRefused,
    ServerUnreachable,
    StudyNotFound,
    TlsFailed,
    TransferTimedOut,
)
from app.pacs.records import (
    SeriesRecord,
    StudyQuery,
    StudyRecord,
    json_attributes,
    series_from_dataset,
    study_from_dataset,
)
from app.pacs.servers import ServerConfig

__all__ = ["STUDY_FIELDS", "DicomWebBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a study search asks for (QIDO-RS includefield); StudyDescription is not in the
# standard default set (PS3.18 table 6.7.1-2), the rest are.
STUDY_FIELDS = [
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]
# Instances as stored: asking for one transfer syntax would make the server transcode.
_ANY_SYNTAX = (("application/dicom", "*"),)
_SERIES_FIELDS = [
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
]


class _WildcardSession(requests.Session):
    """Sends ``*`` in query strings as itself, not as ``%2A``, and honours ``verify``.

    dicomweb-client percent-encodes every filter value, and Orthanc (1.10 with
    DICOMweb 1.7) then takes ``%2A`` for a literal asterisk, so ``DOE*`` would
    match nobody. ``*`` is legal unescaped in a query (RFC 3986 sub-delims).
    """

    def __init__(self) -> None:
        super().__init__()
        self._streams: list[requests.Response] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if isinstance(url, str) and "?" in url:
            path, query = url.split("?", 1)
            url = f"{path}?{query.replace('%2A', '*')}"
        # requests lets REQUESTS_CA_BUNDLE override a session's own ``verify``
        # (psf/requests#3829); the server's CA file must win.
        kwargs.setdefault("verify", self.verify)
        response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]  # requests accepts bytes URLs at run time; its stubs say str
        if kwargs.get("stream"):
            # A streamed body abandoned mid-way (timeout, error) keeps its
            # connection out of the pool; close() must still release it.
            self._streams.append(response)
        return response

    def close(self) -> None:
        for response in self._streams:
            response.close()
        self._streams.clear()
        super().close()


class DicomWebBackend(PacsBackend):
    """QIDO-RS/WADO-RS against ``server.base_url``."""

    def __init__(self, server: ServerConfig) -> None:
        super().__init__(server)
        quiet_library_loggers()
        session = _WildcardSession()
        if server.auth == "basic":
            session.auth = (server.username, require_secret(server))
        elif server.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {require_secret(server)}"
        if server.ca_file:
            session.verify = server.ca_file
        self._session = session
        self._client = DICOMwebClient(
            server.base_url,
            session=session,
            # (connect, read): a server that stops sending for this long has stalled.
            timeout=(min(server.timeout_s, 10.0), server.timeout_s),
        )
        # Retrying a refused login or a missing study only delays the answer.
        self._client.set_http_retry_params(retry=False)

    def close(self) -> None:
        self._session.close()

    @contextmanager
    def _faults(self, what: str) -> Iterator[None]:
        name = self.server.name
        try:
            yield
        except PacsError:
            raise
        except requests.exceptions.SSLError:
            raise TlsFailed(
                f"{name}: the TLS check failed while {what} (certificate not trusted or "
                "not for this host; set the server's CA file)"
            ) from None
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
            raise TransferTimedOut(
                f"{name}: no answer for {self.server.timeout_s:.0f} s while {what}"
            ) from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise AuthenticationFailed(
                    f"{name}: the server refused the credentials (HTTP {status}) while {what}"
                ) from None
            if status == 404:
                raise StudyNotFound(
                    f"{name}: not found on the server (HTTP 404) while {what}"
                ) from None
            raise ServerRefused(f"{name}: the server answered HTTP {status} while {what}") from None
        except requests.exceptions.ConnectionError as exc:
            # A read timeout inside a streamed body surfaces as a ConnectionError.
            inner = exc.args[0] if exc.args else None
            if isinstance(inner, urllib3.exceptions.ReadTimeoutError):
                raise TransferTimedOut(
                    f"{name}: no answer for {self.server.timeout_s:.0f} s while {what}"
                ) from None
            if isinstance(inner, urllib3.exceptions.ProtocolError) and "IncompleteRead" in str(
                inner
            ):
                raise TransferTimedOut(f"{name}: the connection broke off while {what}") from None
            raise ServerUnreachable(
                f"{name}: cannot connect to {self.server.base_url} while {what} "
                "(server down, or wrong host or port)"
            ) from None
        except requests.exceptions.ChunkedEncodingError:
            raise TransferTimedOut(f"{name}: the connection broke off while {what}") from None
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"{name}: {type(exc).__name__} while {what}") from None
        except ValueError as exc:
            # dicomweb-client raises ValueError on answers it cannot decode.
            raise ServerRefused(
                f"{name}: the server's answer could not be read while {what}: {exc}"
            ) from None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._faults(what):
            return fn()

    def echo(self) -> None:
        self._call("testing the connection", lambda: self._client.search_for_studies(limit=1))

    def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        filters: dict[str, str] = {}
        if query.patient_id:
            filters["PatientID"] = query.patient_id
        if query.patient_name:
            filters["PatientName"] = query.patient_name
        if query.accession:
            filters["AccessionNumber"] = query.accession
        if query.date_range:
            filters["StudyDate"] = query.date_range
        if query.modality:
            filters["ModalitiesInStudy"] = query.modality
        if query.study_uid:
            filters["StudyInstanceUID"] = query.study_uid
        answers = self._call(
            "searching studies",
            lambda: self._client.search_for_studies(
                search_filters=filters, fields=STUDY_FIELDS, get_remaining=True
            ),
        )
        records = (study_from_dataset(json_attributes(a)) for a in answers)
        return [r for r in records if r is not None]

    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        answers = self._call(
            "listing a study's series",
            lambda: self._client.search_for_series(study_uid, fields=_SERIES_FIELDS),
        )
        records = (series_from_dataset(json_attributes(a), study_uid) for a in answers)
        return [r for r in records if r is not None]

    def retrieve_series(
        self, series: SeriesRecord, sink: InstanceSink, cancel: threading.Event
    ) -> int:
        n = 0
        with self._faults("retrieving a series"):
            # iter_series streams the multipart answer: one instance in memory at a time.
            for dataset in self._client.iter_series(
                series.study_uid, series.series_uid, media_types=_ANY_SYNTAX
            ):
                sink(Instance(dataset=dataset))
                n += 1
                if cancel.is_set():
                    break
        return n
