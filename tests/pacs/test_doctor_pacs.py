"""`priorsync doctor` echoes every configured PACS server (a real Orthanc, and one that is down)."""

from __future__ import annotations

import socket

from pacs_data import dimse_config

from app.commands.doctor_checks import pacs_server_findings
from app.pacs.servers import ServerStore, parse_server_url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_server_configured_is_information_not_a_failure():
    (finding,) = pacs_server_findings()
    assert finding.value == "none configured"
    assert finding.ok and not finding.needed
    assert "priorsync pacs add" in (finding.fix or "")


def test_a_live_server_answers_and_a_down_one_is_reported(orthanc):
    store = ServerStore()
    store.put(dimse_config(orthanc))
    store.put(parse_server_url(f"dimse://NOBODY@127.0.0.1:{_closed_port()}", name="gone"))
    findings = {f.label: f for f in pacs_server_findings()}
    live = findings["PACS test-dimse"]
    assert live.ok and live.value.startswith("answers (dimse://")
    down = findings["PACS gone"]
    assert not down.ok and not down.needed
    assert down.value.startswith("not reachable: ") and "\n" not in down.value
    assert down.fix == "priorsync pacs echo gone"
