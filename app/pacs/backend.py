"""The protocol backends' common interface and the registry that picks one for a server.

A backend is made for one :class:`~app.pacs.servers.ServerConfig` and speaks
one protocol. :func:`open_backend` asks the registered backends in order; the
first whose ``matches(server)`` is true is used, so a site-specific backend
registered with ``first=True`` overrides the built-in ones.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from app.pacs.records import SeriesRecord, StudyQuery, StudyRecord
from app.pacs.servers import ServerConfig

__all__ = [
    "Instance",
    "InstanceSink",
    "PacsBackend",
    "open_backend",
    "quiet_library_loggers",
    "register_backend",
]

# Where the retrieved instances go, one call each, in the order they arrive.
InstanceSink = Callable[["Instance"], None]


@dataclass(frozen=True)
class Instance:
    """One retrieved instance: a complete DICOM file's bytes, or a parsed dataset.

    DIMSE hands over the encoded file (no re-encoding needed); DICOMweb's
    client library hands over datasets.
    """

    data: bytes | None = None
    dataset: Dataset | None = None


class PacsBackend(abc.ABC):
    """Query/retrieve against one server. Not thread-safe: one user at a time."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server

    @abc.abstractmethod
    def echo(self) -> None:
        """Check that the server answers (C-ECHO, or a QIDO-RS request)."""

    @abc.abstractmethod
    def find_studies(self, query: StudyQuery) -> list[StudyRecord]:
        """Studies matching ``query``."""

    @abc.abstractmethod
    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        """The series of one study."""

    @abc.abstractmethod
    def retrieve_series(
        self, series: SeriesRecord, sink: InstanceSink, cancel: threading.Event
    ) -> int:
        """Send each instance of ``series`` to ``sink``; return how many arrived.

        Raises
        ------
        app.pacs.errors.PacsError
            The transfer failed; instances already handed to ``sink`` stay
            the caller's to discard.
        """

    def close(self) -> None:
        """Release connections (the default holds none between calls)."""
        return None

    def __enter__(self) -> PacsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_Matcher = Callable[[ServerConfig], bool]
_Factory = Callable[[ServerConfig], PacsBackend]
_REGISTRY: list[tuple[_Matcher, _Factory]] = []


def register_backend(matches: _Matcher, factory: _Factory, *, first: bool = False) -> None:
    """Add a backend; with ``first`` it is asked before the ones already registered."""
    if first:
        _REGISTRY.insert(0, (matches, factory))
    else:
        _REGISTRY.append((matches, factory))


def _builtins() -> None:
    # Imported here, once: each backend module pulls in its protocol library.
    if _REGISTRY:
        return

    def dimse(server: ServerConfig) -> PacsBackend:
        from app.pacs.dimse import DimseBackend

        return DimseBackend(server)

    def dicomweb(server: ServerConfig) -> PacsBackend:
        from app.pacs.dicomweb import DicomWebBackend

        return DicomWebBackend(server)

    register_backend(lambda s: s.protocol == "dimse", dimse)
    register_backend(lambda s: s.protocol == "dicomweb", dicomweb)


def open_backend(server: ServerConfig) -> PacsBackend:
    """The first registered backend that handles ``server``.

    Raises
    ------
    LookupError
        No backend handles the server's protocol.
    """
    _builtins()
    for matches, factory in _REGISTRY:
        if matches(server):
            return factory(server)
    raise LookupError(f"no backend speaks {server.protocol!r}")


def quiet_library_loggers() -> None:
    """Keep the protocol libraries' debug output (which quotes queries) out of our log.

    pynetdicom dumps C-FIND identifiers, and dicomweb-client and urllib3 log
    request URLs (``?PatientID=...``) at debug level; at warning level none
    of them quotes a patient identifier.
    """
    for name in ("pynetdicom", "dicomweb_client", "urllib3", "requests"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
