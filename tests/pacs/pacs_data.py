"""A small test PACS: a real Orthanc of our own, filled with synthetic patients.

Shared by tests/pacs and tests/ui/pacs (both put this folder on ``sys.path``).
Everything is made here: no shared data and no network beyond loopback.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from keyring.backend import KeyringBackend
from pydicom.uid import generate_uid

from app.core.volume import Geometry, SeriesInfo, Volume
from app.io.dicom_write import write_dicom_series
from app.pacs.cache import StudyCache
from app.pacs.credentials import set_secret
from app.pacs.local_orthanc import LocalOrthanc, OrthancUnavailable, find_orthanc, free_port
from app.pacs.servers import ServerConfig

PATIENT_ID = "PACS-0042"
PATIENT_NAME = "Zebedee^Quillfeather"
OTHER_ID = "PACS-0099"
OTHER_NAME = "Other^Person"
CALLING_AE = "PRIORSYNC"
CT_DATES = ("20261014", "20251007", "20240918")


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps secrets in this process only (the tests' system keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        import keyring.errors

        if self.secrets.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


def phantom_volume(n: int, rows: int, cols: int, seed: int, info: SeriesInfo) -> Volume:
    """A CT-like phantom (body, lungs, spine) whose slices all differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    voxels = np.full((n, rows, cols), -1000, dtype=np.int16)
    for k in range(n):
        s = 1.0 - 0.3 * k / max(n - 1, 1)
        body = ((x - cx) / (0.45 * cols * s)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2 <= 1
        lungs = (np.abs(x - cx) - 0.18 * cols) ** 2 / (0.12 * cols) ** 2 + (
            (y - cy) / (0.2 * rows)
        ) ** 2 <= 1
        voxels[k][body] = 40
        voxels[k][lungs] = -850
        voxels[k] += rng.integers(-20, 21, size=(rows, cols), dtype=np.int16)
    return Volume(
        voxels=voxels,
        geometry=Geometry(
            origin=(-0.4 * cols, -0.4 * rows, -100.0), spacing=(0.8, 0.8, 2.5), direction=np.eye(3)
        ),
        info=info,
    )


@dataclass
class StudyFiles:
    study_uid: str
    date: str
    modality: str
    series_uids: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _info(pid: str, name: str, date: str, accession: str, description: str, **kw) -> SeriesInfo:
    return SeriesInfo(
        patient_id=pid,
        patient_name=name,
        patient_birth_date="19610203",
        study_date=date,
        study_time="101500",
        study_description=description,
        accession_number=accession,
        series_description="Axial 2.5",
        series_number=2,
        body_part="CHEST",
        **kw,
    )


def write_patients(root: Path, n_slices: int = 10, matrix: int = 48) -> dict[str, StudyFiles]:
    """The test patients as DICOM files under ``root``.

    Keys: ``current``, ``prior1``, ``prior2`` (one CT patient, newest first;
    ``current`` has two CT series and a non-CT one), ``mr`` (the same patient,
    an MR-only study), ``other`` (another patient's CT) and ``corrupt`` (a CT
    study of another patient whose second image has its pixel data cut short).
    """
    out: dict[str, StudyFiles] = {}
    specs = [
        (
            "current",
            PATIENT_ID,
            PATIENT_NAME,
            CT_DATES[0],
            "ACC-26",
            "CT CHEST",
            ("CT", "CT", "SR"),
        ),
        ("prior1", PATIENT_ID, PATIENT_NAME, CT_DATES[1], "ACC-25", "CT CHEST", ("CT",)),
        ("prior2", PATIENT_ID, PATIENT_NAME, CT_DATES[2], "ACC-24", "CT THORAX", ("CT",)),
        ("mr", PATIENT_ID, PATIENT_NAME, "20250101", "ACC-MR", "MR BRAIN", ("MR",)),
        ("other", OTHER_ID, OTHER_NAME, "20230505", "ACC-OT", "CT ABDOMEN", ("CT",)),
        ("corrupt", "PACS-0666", "Broken^Files", "20220202", "ACC-BAD", "CT BROKEN", ("CT",)),
    ]
    for seed, (key, pid, name, date, acc, desc, modalities) in enumerate(specs):
        study = StudyFiles(study_uid=generate_uid(), date=date, modality=modalities[0])
        for number, modality in enumerate(modalities):
            info = _info(pid, name, date, acc, desc, modality=modality)
            info = replace(
                info, series_number=number + 2, series_description=f"{modality} {number}"
            )
            volume = phantom_volume(n_slices, matrix, matrix, seed * 10 + number, info)
            series_uid = generate_uid()
            files = write_dicom_series(
                volume,
                root / key / str(number),
                study_uid=study.study_uid,
                series_uid=series_uid,
            )
            study.series_uids.append(series_uid)
            study.files += files
        out[key] = study
    _cut_pixel_data(out["corrupt"].files[1])
    return out


def _cut_pixel_data(path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3 * 2 // 2 * 2]
    ds.save_as(path)


def start_orthanc(workdir: Path | None = None, **kwargs) -> LocalOrthanc:
    """Start a private Orthanc or skip the test, saying why."""
    if find_orthanc() is None:
        pytest.skip("Orthanc is not installed (scripts/system-deps.sh --tests installs it)")
    kwargs.setdefault("modalities", {CALLING_AE: ("127.0.0.1", free_port())})
    try:
        return LocalOrthanc(workdir=workdir, **kwargs).start()
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(private key, certificate) for 127.0.0.1, made with openssl; the certificate is its own CA."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


class TlsFront:
    """HTTPS on a free loopback port, relaying to a plain HTTP port (Orthanc's).

    Debian 12's Orthanc 1.10.1 crashes on every HTTPS connection (its civetweb
    calls OpenSSL 1.1's ``SSL_get_peer_certificate``, which OpenSSL 3 does not
    export; test_local_orthanc.py checks it still does), so this real TLS
    endpoint (Python's ssl module) stands in front of it, as a hospital's
    reverse proxy would.
    """

    def __init__(self, key: Path, cert: Path, target_port: int) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(str(cert), str(key))
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.extend(socks)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._keep(conn)
            try:
                conn.settimeout(10)
                tls = self._ctx.wrap_socket(conn, server_side=True)
                tls.settimeout(None)
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except (OSError, ssl.SSLError):
                conn.close()
                continue
            self._keep(tls, upstream)
            for src, dst in ((tls, upstream), (upstream, tls)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for s in self._open:
                s.close()


def dimse_config(server, retrieve: str = "get", **changes) -> ServerConfig:
    move_port = server.modalities[CALLING_AE][1]
    values = {
        "name": "test-dimse",
        "protocol": "dimse",
        "host": "127.0.0.1",
        "port": server.dicom_port,
        "called_ae": server.aet,
        "calling_ae": CALLING_AE,
        "retrieve": retrieve,
        "move_port": move_port,
        "timeout_s": 10.0,
    }
    values.update(changes)
    return ServerConfig(**values)


def dicomweb_config(server, password: str | None = None, **changes) -> ServerConfig:
    values = {
        "name": "test-web",
        "protocol": "dicomweb",
        "base_url": server.dicomweb_url,
        "auth": "basic",
        "username": server.username,
        "timeout_s": 10.0,
    }
    values.update(changes)
    config = ServerConfig(**values)
    if config.auth != "none":
        set_secret(config, server.password if password is None else password)
    return config


def assert_cache_clean(cache: StudyCache) -> None:
    """No study and no staging left: a failed transfer left nothing behind."""
    assert cache.studies() == []
    staging = cache.staging_root
    assert not staging.exists() or list(staging.iterdir()) == []
    studies = cache.studies_root
    assert not studies.exists() or list(studies.iterdir()) == []
