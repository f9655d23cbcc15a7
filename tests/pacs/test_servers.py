"""Server descriptions: URL forms, validation, the stored list, secrets in the keyring."""

from __future__ import annotations

import keyring
import pytest
from keyring.backends import fail

from app.pacs.cache import StudyCache
from app.pacs.credentials import (
    ENV_SECRET,
    KeyringUnavailable,
    get_secret,
    require_secret,
    set_secret,
)
from app.pacs.errors import AuthenticationFailed
from app.pacs.servers import (
    PacsOptions,
    ServerConfig,
    ServerConfigError,
    ServerStore,
    parse_server_url,
    resolve_server,
)


def test_dimse_url() -> None:
    s = parse_server_url("dimse://ORTHANC@pacs.example.org:4242?calling=ME", name="a")
    assert (s.protocol, s.host, s.port, s.called_ae, s.calling_ae) == (
        "dimse",
        "pacs.example.org",
        4242,
        "ORTHANC",
        "ME",
    )
    assert s.retrieve == "get"
    assert parse_server_url(s.url(), name="a") == s


def test_dimse_move_url() -> None:
    s = parse_server_url("dimse://PACS@10.0.0.5:104?retrieve=move&move_port=11113")
    assert s.retrieve == "move" and s.move_port == 11113
    assert parse_server_url(s.url(), name=s.name) == s


def test_dicomweb_urls() -> None:
    s = parse_server_url("dicomweb+https://alice@pacs.example.org/dicom-web/", name="w")
    assert s.base_url == "https://pacs.example.org/dicom-web"
    assert (s.auth, s.username) == ("basic", "alice")
    assert parse_server_url(s.url(), name="w") == s
    b = parse_server_url("dicomweb+http://127.0.0.1:8042/dicom-web?auth=bearer")
    assert b.auth == "bearer" and b.base_url == "http://127.0.0.1:8042/dicom-web"
    n = parse_server_url("dicomweb+http://127.0.0.1:8042/dicom-web")
    assert n.auth == "none" and not n.needs_secret


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://x/dicom-web", "not a server URL"),
        ("dimse://host:104", "dimse://AET@host:port"),
        ("dimse://AET@host", "dimse://AET@host:port"),
        ("dimse://AET@host:99999", "invalid port"),
        ("dimse://WAY_TOO_LONG_AE_TITLE@host:104", "AE title"),
        ("dimse://A@h:104?retrieve=move", "move_port"),
        ("dicomweb+https:///path", "as dicomweb"),
        ("dicomweb+https://h/p?auth=kerberos", "unknown authentication"),
        ("dicomweb+https://h/p?timeout=-1", "positive"),
    ],
)
def test_bad_urls(url, words) -> None:
    with pytest.raises(ServerConfigError, match=words):
        parse_server_url(url)


def test_store_round_trip_and_damage(tmp_path) -> None:
    store = ServerStore(tmp_path / "servers.json")
    assert store.load() == []
    a = parse_server_url("dimse://A@h:104", name="a")
    b = parse_server_url("dicomweb+https://u@h/p", name="b")
    store.put(a)
    store.put(b)
    assert store.load() == [a, b]
    assert resolve_server("b", store) == b
    assert resolve_server("dimse://Z@h:1", store).called_ae == "Z"
    with pytest.raises(ServerConfigError, match="no server named"):
        resolve_server("c", store)
    assert store.remove("a") and not store.remove("a")
    store.path.write_text('{"servers": [{"name": "x", "protocol": "dimse", "port": "104"}, 7]}')
    assert store.load() == []  # damaged entries skipped, no crash
    store.path.write_text("garbage")
    assert store.load() == []


def test_secrets_go_to_the_keyring(tmp_path) -> None:
    server = parse_server_url("dicomweb+https://alice@h/p", name="w")
    set_secret(server, "s3cret")
    assert get_secret(server) == "s3cret"
    store = ServerStore(tmp_path / "servers.json")
    store.put(server)
    assert "s3cret" not in store.path.read_text()


def test_without_a_keyring_the_environment_serves(monkeypatch) -> None:
    keyring.set_keyring(fail.Keyring())
    server = parse_server_url("dicomweb+https://alice@h/p", name="w")
    with pytest.raises(KeyringUnavailable, match=ENV_SECRET):
        set_secret(server, "x")
    with pytest.raises(AuthenticationFailed, match=ENV_SECRET):
        require_secret(server)
    monkeypatch.setenv(ENV_SECRET, "from-env")
    assert require_secret(server) == "from-env"


def test_config_rejects_bad_fields() -> None:
    with pytest.raises(ServerConfigError, match="name"):
        ServerConfig(name=" ", protocol="dimse", host="h", port=1, called_ae="A")
    with pytest.raises(ServerConfigError, match="CA file"):
        ServerConfig(name="w", protocol="dicomweb", base_url="https://h", ca_file="/no/such.pem")


def test_options_live_beside_the_servers(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PRIORSYNC_CONFIG_DIR", str(tmp_path / "cfg"))
    store = ServerStore()
    assert store.options() == PacsOptions()
    server = parse_server_url("dimse://A@h:104", name="a")
    store.put(server)
    store.save_options(PacsOptions(n_priors=3, cache_max_gb=0.5))
    assert store.load() == [server]
    assert store.options().n_priors == 3
    assert StudyCache(tmp_path / "c").max_bytes == 512 * 1024**2
    store.path.write_text('{"servers": [], "options": {"n_priors": -4, "cache_max_gb": "x"}}')
    assert store.options() == PacsOptions()
    with pytest.raises(ServerConfigError):
        PacsOptions(cache_max_gb=0)
