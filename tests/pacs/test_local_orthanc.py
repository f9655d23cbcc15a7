"""The private Orthanc launcher: DICOM sockets without Nagle delays, and why it offers no HTTPS."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from types import SimpleNamespace

import psutil
import pytest
from pacs_data import self_signed_certificate

from app.pacs.dimse import _no_delay
from app.pacs.local_orthanc import find_orthanc, free_port


def test_dicom_ports_send_without_nagle_delays(orthanc) -> None:
    # With Nagle's algorithm on either side, each DIMSE message waited ~40 ms for
    # the peer's delayed ACK (a C-ECHO took 48 ms instead of 4; see bench_pacs.py).
    assert orthanc.pid is not None
    assert psutil.Process(orthanc.pid).environ().get("TCP_NODELAY") == "1"  # DCMTK's switch

    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        try:
            # What pynetdicom's EVT_CONN_OPEN carries: event.assoc.dul.socket.socket.
            wrapper = SimpleNamespace(socket=client)
            _no_delay(SimpleNamespace(assoc=SimpleNamespace(dul=SimpleNamespace(socket=wrapper))))
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            client.close()
    _no_delay(SimpleNamespace(assoc=SimpleNamespace(dul=SimpleNamespace(socket=None))))


def test_orthanc_builtin_https_still_crashes(tmp_path) -> None:
    """Why the tests put a TLS relay in front of Orthanc (TlsFront in pacs_data.py).

    Debian 12's libcivetweb1 1.15 loads OpenSSL with the 1.1 symbol table;
    ``SSL_get_peer_certificate`` is not exported by OpenSSL 3, and civetweb calls
    that null pointer after every handshake (civetweb/civetweb#1334). If this
    test fails, Orthanc's own HTTPS works: drop the relay and use ``SslEnabled``.
    """
    exe = find_orthanc()
    if exe is None:
        pytest.skip("Orthanc is not installed (scripts/system-deps.sh --tests installs it)")
    key, cert = self_signed_certificate(tmp_path)
    pem = tmp_path / "orthanc.pem"  # the private key, then the certificate (Orthanc's book)
    pem.write_text(key.read_text() + cert.read_text())
    port = free_port()
    config = {
        "StorageDirectory": str(tmp_path / "db"),
        "IndexDirectory": str(tmp_path / "db"),
        "HttpPort": port,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": True,
        "SslCertificate": str(pem),
        "Plugins": [],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [exe, str(tmp_path / "config.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, "Orthanc did not start with SslEnabled"
        context = ssl.create_default_context(cafile=str(cert))
        answer = b""
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                answer = tls.recv(200)
        except (OSError, ssl.SSLError):
            pass
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == -signal.SIGSEGV, (
            f"Orthanc's own HTTPS answered {answer[:40]!r} (exit {code}): it works now, "
            "so the TLS relay of the tests can go"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
