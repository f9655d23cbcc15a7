"""Each fault against a real Orthanc (stopped, paused or reconfigured mid-test):
a clear one-line message, and a cache with nothing half-done in it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading

import pytest
from pacs_data import (
    PATIENT_ID,
    TlsFront,
    assert_cache_clean,
    dicomweb_config,
    dimse_config,
    self_signed_certificate,
)

from app.pacs.backend import open_backend
from app.pacs.cache import StudyCache
from app.pacs.errors import (
    AuthenticationFailed,
    BadInstances,
    CacheFailed,
    PacsError,
    ServerRefused,
    ServerUnreachable,
    StudyNotFound,
    TlsFailed,
    TransferIncomplete,
    TransferTimedOut,
)
from app.pacs.records import StudyQuery
from app.pacs.retrieve import fetch_study

PROTOCOLS = ["dimse-get", "dimse-move", "dicomweb"]


def config_for(protocol: str, server, **changes):
    if protocol == "dicomweb":
        return dicomweb_config(server, **changes)
    return dimse_config(server, retrieve=protocol.split("-")[1], **changes)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_down(private_orthanc, protocol, patients, cache) -> None:
    server = private_orthanc()
    config = config_for(protocol, server)
    server.stop()
    with open_backend(config) as backend, pytest.raises(ServerUnreachable) as info:
        fetch_study(backend, patients["current"].study_uid, cache)
    assert "cannot connect" in one_line(info.value)
    assert_cache_clean(cache)


@pytest.mark.parametrize("protocol", ["dimse-get", "dimse-move"])
def test_wrong_called_ae_title(orthanc, protocol) -> None:
    config = config_for(protocol, orthanc, called_ae="NOTORTHANC")
    with open_backend(config) as backend, pytest.raises(ServerRefused) as info:
        backend.echo()
    assert "NOTORTHANC" in one_line(info.value)


def test_c_move_to_an_unknown_destination(orthanc, patients, cache) -> None:
    config = dimse_config(orthanc, retrieve="move", calling_ae="STRANGER")
    with open_backend(config) as backend, pytest.raises(PacsError) as info:
        fetch_study(backend, patients["prior1"].study_uid, cache)
    assert "STRANGER" in one_line(info.value)
    assert_cache_clean(cache)


@pytest.mark.parametrize("status", [401, 403])
def test_wrong_credentials(private_orthanc, orthanc, patients, cache, tmp_path, status) -> None:
    if status == 401:
        server, config = orthanc, dicomweb_config(orthanc, password="wrong")
    else:
        # A known user that Orthanc's request filter (a Lua script) turns away: HTTP 403.
        lua = tmp_path / "filter.lua"
        lua.write_text(
            "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
            "  return username ~= 'visitor'\n"
            "end\n"
        )
        server = private_orthanc(
            extra={"LuaScripts": [str(lua)], "RegisteredUsers": {"visitor": "visitor-pw"}}
        )
        # The shared user still gets in (the server works); the visitor does not.
        with open_backend(dicomweb_config(server)) as backend:
            backend.echo()
        config = dicomweb_config(server, username="visitor", password="visitor-pw")
    with open_backend(config) as backend, pytest.raises(AuthenticationFailed) as info:
        fetch_study(backend, patients["current"].study_uid, cache)
    assert f"HTTP {status}" in one_line(info.value) and "credentials" in str(info.value)
    assert server.password not in str(info.value)
    assert_cache_clean(cache)


def test_tls_with_and_without_the_ca_file(orthanc, tmp_path, patients, cache) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = self_signed_certificate(tmp_path)
    front = TlsFront(key, cert, orthanc.http_port)
    try:
        url = f"https://127.0.0.1:{front.port}/dicom-web"
        with open_backend(dicomweb_config(orthanc, base_url=url, ca_file=str(cert))) as backend:
            backend.echo()
            assert backend.find_studies(StudyQuery(patient_id=PATIENT_ID))
        # Without the CA file the self-signed certificate is not trusted.
        with (
            open_backend(dicomweb_config(orthanc, base_url=url)) as backend,
            pytest.raises(TlsFailed) as info,
        ):
            fetch_study(backend, patients["current"].study_uid, cache)
        assert "CA file" in one_line(info.value)
        # Plain HTTP to the TLS port fails too, with a one-line message.
        plain = dicomweb_config(orthanc, base_url=url.replace("https:", "http:"))
        with open_backend(plain) as backend, pytest.raises(PacsError) as info:
            backend.echo()
        one_line(info.value)
    finally:
        front.close()
    assert_cache_clean(cache)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_mid_transfer(private_orthanc, protocol, patients, cache) -> None:
    server = private_orthanc()
    config = config_for(protocol, server, timeout_s=2.0)
    paused = threading.Event()

    def freeze_once_started(done: int, total: int) -> None:
        # The second series of the study is asked for after the server froze.
        if done >= 1 and not paused.is_set():
            server.pause()
            paused.set()

    try:
        with open_backend(config) as backend, pytest.raises(TransferTimedOut) as info:
            fetch_study(backend, patients["current"].study_uid, cache, freeze_once_started)
    finally:
        server.resume()
    assert paused.is_set()
    assert "2 s" in one_line(info.value) or "broke off" in str(info.value)
    assert_cache_clean(cache)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_study_deleted_during_transfer(private_orthanc, protocol, patients, cache) -> None:
    server = private_orthanc()
    config = config_for(protocol, server)
    study_uid = patients["current"].study_uid
    deleted = threading.Event()

    def delete_once_started(done: int, total: int) -> None:
        if not deleted.is_set():
            deleted.set()
            server.delete_study(study_uid)

    with (
        open_backend(config) as backend,
        pytest.raises((StudyNotFound, TransferIncomplete)) as info,
    ):
        fetch_study(backend, study_uid, cache, delete_once_started)
    assert deleted.is_set()
    one_line(info.value)
    assert_cache_clean(cache)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_study_without_ct(orthanc, protocol, patients, cache) -> None:
    with (
        open_backend(config_for(protocol, orthanc)) as backend,
        pytest.raises(BadInstances) as info,
    ):
        fetch_study(backend, patients["mr"].study_uid, cache)
    assert "no CT series (only MR)" in one_line(info.value)
    assert_cache_clean(cache)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_corrupt_instances(orthanc, protocol, patients, cache) -> None:
    with (
        open_backend(config_for(protocol, orthanc)) as backend,
        pytest.raises(BadInstances) as info,
    ):
        fetch_study(backend, patients["corrupt"].study_uid, cache)
    assert "corrupt" in one_line(info.value)
    assert_cache_clean(cache)


def test_unknown_study(orthanc, cache) -> None:
    with open_backend(dicomweb_config(orthanc)) as backend, pytest.raises(StudyNotFound):
        fetch_study(backend, "1.2.3.4.5", cache)
    assert_cache_clean(cache)


def _tmpfs(folder, size: str) -> bool:
    """Mount a small tmpfs at ``folder`` (root on Linux only); False when not possible."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def _umount(folder) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("protocol", ["dimse-get", "dicomweb"])
def test_cache_folder_full(orthanc, protocol, patients, tmp_path, monkeypatch) -> None:
    root = tmp_path / "small"
    mounted = _tmpfs(root, "64k")  # the study is ~100 kB
    if not mounted:
        # No tmpfs to fill (not root): the disk fills at the first instance write.
        real_open = open

        def full_open(path, mode="r", *args, **kwargs):
            if "x" in mode and str(path).startswith(str(root)):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", full_open)
    try:
        cache = StudyCache(root)
        with (
            open_backend(config_for(protocol, orthanc)) as backend,
            pytest.raises(CacheFailed) as info,
        ):
            fetch_study(backend, patients["current"].study_uid, cache)
        assert "the disk is full" in one_line(info.value)
        monkeypatch.undo()
        assert_cache_clean(cache)
    finally:
        if mounted:
            _umount(root)


def test_cache_folder_read_only(orthanc, patients, tmp_path) -> None:
    root = tmp_path / "ro"
    if _tmpfs(root, "1m"):
        remount = ["mount", "-o", "remount,ro", str(root)]
        if subprocess.run(remount, capture_output=True).returncode != 0:
            _umount(root)
            pytest.skip("cannot remount the tmpfs read-only")
        cleanup = lambda: _umount(root)  # noqa: E731
    elif os.geteuid() != 0:
        root.mkdir()
        root.chmod(0o555)
        cleanup = lambda: root.chmod(0o755)  # noqa: E731
    else:
        pytest.skip("running as root without mount: no folder is read-only to us")
    try:
        cache = StudyCache(root)
        with open_backend(dicomweb_config(orthanc)) as backend, pytest.raises(CacheFailed) as info:
            fetch_study(backend, patients["current"].study_uid, cache)
        text = one_line(info.value)
        assert "read-only" in text or "permission denied" in text
        assert cache.studies() == []
    finally:
        cleanup()


@pytest.mark.parametrize("protocol", ["dimse-get", "dicomweb"])
def test_search_against_a_server_that_went_away(private_orthanc, protocol) -> None:
    server = private_orthanc()
    config = config_for(protocol, server)
    with open_backend(config) as backend:
        assert backend.find_studies(StudyQuery(patient_id=PATIENT_ID))
        server.stop()
        with pytest.raises(ServerUnreachable):
            backend.find_studies(StudyQuery(patient_id=PATIENT_ID))


def test_a_server_that_caps_its_c_find_answers(private_orthanc) -> None:
    # Orthanc's LimitFindResults ends a C-FIND with "cancelled" after the cap: a
    # partial list must not pass as the whole answer. (Over QIDO-RS the same
    # Orthanc truncates without any sign, no Warning header, and an offset does
    # not page past the cap, so a DICOMweb client cannot tell: see the README.)
    server = private_orthanc(extra={"LimitFindResults": 2})
    with open_backend(config_for("dimse-get", server)) as backend:
        with pytest.raises(ServerRefused) as info:
            backend.find_studies(StudyQuery(patient_name="Zebedee*"))  # four studies
        assert "narrow the search" in one_line(info.value)
        assert len(backend.find_studies(StudyQuery(accession="ACC-25"))) == 1  # under the cap
