"""A private Orthanc server on loopback: for the tests, the benchmark and ``priorsync demo --pacs``.

Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``) is started as a
child process with a throw-away configuration and storage folder, on free
loopback ports, with basic authentication on and a known AE title. The
system-wide Orthanc service the Debian package installs is never used.

Orthanc's DICOM port is started with DCMTK's ``TCP_NODELAY=1`` switch (an
environment variable): DCMTK leaves Nagle's algorithm on otherwise, and every
DIMSE answer then waits ~40 ms for the client's delayed acknowledgement (a
C-ECHO takes 48 ms instead of 4). A site's own DCMTK-based PACS wants the
same setting.

HTTPS is not offered, and no configuration can make it work: Debian 12's
``libcivetweb1`` 1.15 (Orthanc's HTTP server) loads OpenSSL at run time with
the OpenSSL 1.1 symbol table, and ``SSL_get_peer_certificate`` is no longer
an exported symbol of OpenSSL 3 (civetweb/civetweb#1334). It calls that
null pointer after every TLS handshake: SIGSEGV in a ``civetweb-worker``
thread, whatever ``SslCertificate`` (key + certificate PEM, either order),
``SslMinimumProtocolVersion``, ``SslCiphersAccepted``, ``HttpThreadsCount`` or
``KeepAlive`` say. The tests put a TLS endpoint of their own in front of the
HTTP port instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

__all__ = [
    "LocalOrthanc",
    "OrthancUnavailable",
    "find_dicomweb_plugin",
    "find_orthanc",
    "free_port",
]

log = logging.getLogger(__name__)

# Where Debian's orthanc-dicomweb puts the plugin (``dpkg -L orthanc-dicomweb``).
_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
_START_TIMEOUT_S = 30.0


class OrthancUnavailable(RuntimeError):
    """Orthanc is not installed, or would not start; the message says which."""


def find_orthanc() -> str | None:
    """The Orthanc executable, or None when it is not installed."""
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None
    )


def find_dicomweb_plugin() -> str | None:
    """The DICOMweb plugin's shared library, or None when it is not installed."""
    for candidate in _PLUGIN_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalOrthanc:
    """One Orthanc process of ours, configured in its own folder.

    Parameters
    ----------
    workdir
        Folder for the configuration, storage and log (created; a temporary
        folder when None, removed again by :meth:`stop`).
    aet
        Orthanc's own AE title; ``DicomCheckCalledAet`` is on, so a client
        calling another title is refused.
    username, password
        The one registered HTTP user (basic authentication is always on).
    modalities
        AE title -> (host, port) of DICOM peers Orthanc may send to (C-MOVE).
    extra
        More configuration options, merged last (tests change behaviour with them);
        its ``RegisteredUsers`` are added to ours.
    """

    workdir: Path | None = None
    aet: str = "ORTHANC"
    username: str = "priorsync"
    password: str = field(default_factory=lambda: os.urandom(9).hex())
    modalities: dict[str, tuple[str, int]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    http_port: int = 0
    dicom_port: int = 0

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_workdir = self.workdir is None
        self._log_file: Any = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        """Orthanc's own REST API root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.rest_url}/dicom-web"

    @property
    def pid(self) -> int | None:
        """The Orthanc process's id while it runs (the benchmark reads its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def session(self) -> requests.Session:
        """A requests session with Orthanc's credentials."""
        s = requests.Session()
        s.auth = (self.username, self.password)
        return s

    # -- life cycle ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The configuration Orthanc is started with."""
        assert self.workdir is not None
        plugin = find_dicomweb_plugin()
        cfg: dict[str, Any] = {
            "Name": "PriorSync test PACS",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "Plugins": [plugin] if plugin else [],
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": {
                aet: [aet, host, port] for aet, (host, port) in self.modalities.items()
            },
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "HttpCompressionEnabled": False,
            "StableAge": 1,
            # Answer C-FIND/QIDO-RS from the index alone, as an indexed archive
            # does, instead of re-reading a DICOM file per matching study.
            "StorageAccessOnFind": "Never",
            "SaveJobs": False,
            "DeidentifyLogs": True,
            "DicomScpTimeout": 30,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        cfg.update(self.extra)
        # Users in ``extra`` come beside ours: the launcher itself must still log in.
        cfg["RegisteredUsers"] = {
            **self.extra.get("RegisteredUsers", {}),
            self.username: self.password,
        }
        return cfg

    def start(self) -> LocalOrthanc:
        """Start Orthanc and wait until both its HTTP and DICOM ports answer.

        Raises
        ------
        OrthancUnavailable
            Orthanc or its DICOMweb plugin is not installed, or it did not start.
        """
        exe = find_orthanc()
        if exe is None:
            raise OrthancUnavailable(
                "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb)"
            )
        if find_dicomweb_plugin() is None:
            raise OrthancUnavailable(
                "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
            )
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="priorsync-orthanc-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "storage").mkdir(exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        self._log_file = open(self.workdir / "orthanc.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [exe, str(config_path)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        try:
            self._wait_ready()
        except OrthancUnavailable:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        session = self.session()
        while time.monotonic() < deadline:
            if not self.running:
                raise OrthancUnavailable(f"Orthanc exited at start; see {self.log_path}")
            try:
                if session.get(f"{self.rest_url}/system", timeout=2).ok:
                    with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=2):
                        return
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.1)
        raise OrthancUnavailable(f"Orthanc did not answer within {_START_TIMEOUT_S:.0f} s")

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "orthanc.log" if self.workdir else None

    def stop(self, *, keep_storage: bool = False) -> None:
        """Stop the process (and remove a temporary work folder unless ``keep_storage``)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self.resume()
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=5)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir and not keep_storage and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def restart(self, **changes: Any) -> None:
        """Stop, apply ``changes`` to the fields (``extra``, ``modalities``...), start again.

        The storage is kept, so the studies survive; the ports stay the same.
        """
        self.stop(keep_storage=True)
        for name, value in changes.items():
            setattr(self, name, value)
        self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------------------
    def upload(self, files: Iterable[Path]) -> int:
        """Store DICOM files through the REST API; return how many were stored."""
        session = self.session()
        n = 0
        for path in files:
            r = session.post(f"{self.rest_url}/instances", data=Path(path).read_bytes(), timeout=60)
            r.raise_for_status()
            n += 1
        return n

    def upload_folder(self, folder: Path) -> int:
        """Store every ``*.dcm`` file under ``folder`` (recursively)."""
        return self.upload(sorted(Path(folder).rglob("*.dcm")))

    def study_id(self, study_uid: str) -> str:
        """Orthanc's own identifier of the study with this Study Instance UID."""
        r = self.session().post(f"{self.rest_url}/tools/lookup", data=study_uid, timeout=10)
        r.raise_for_status()
        for item in r.json():
            if item.get("Type") == "Study":
                return str(item["ID"])
        raise KeyError(study_uid)

    def delete_study(self, study_uid: str) -> None:
        """Delete a study from the server."""
        r = self.session().delete(f"{self.rest_url}/studies/{self.study_id(study_uid)}", timeout=30)
        r.raise_for_status()
