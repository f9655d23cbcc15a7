"""``priorsync pacs ...`` and ``view --pacs`` against the real Orthanc, in process."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pacs_data import OTHER_ID, PATIENT_ID, PATIENT_NAME

from app.cli import main
from app.pacs.servers import ServerStore


def _web_url(orthanc) -> str:
    return f"dicomweb+http://{orthanc.username}@127.0.0.1:{orthanc.http_port}/dicom-web"


def _dimse_url(orthanc) -> str:
    return f"dimse://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"


def test_add_list_echo_remove(orthanc, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(orthanc.password + "\n"))
    assert main(["pacs", "add", "web", _web_url(orthanc), "--password-stdin"]) == 0
    assert main(["pacs", "add", "dimse", _dimse_url(orthanc)]) == 0
    stored = ServerStore().path.read_text(encoding="utf-8")
    assert orthanc.password not in stored  # the secret went to the keyring only
    assert main(["pacs", "list"]) == 0
    out = capsys.readouterr().out
    assert "web: dicomweb+http://" in out and "dimse: dimse://ORTHANC@" in out
    assert main(["pacs", "echo", "web"]) == 0
    assert main(["pacs", "echo", "dimse"]) == 0
    assert main(["pacs", "remove", "web"]) == 0
    assert main(["pacs", "echo", "web"]) == 2
    assert "no server named 'web'" in capsys.readouterr().err


def test_find_json_and_table(orthanc, patients, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    assert main(["pacs", "find", _dimse_url(orthanc), "--patient", PATIENT_ID, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [s["study_uid"] for s in found] == [  # newest first
        patients[k].study_uid for k in ("current", "prior1", "mr", "prior2")
    ]
    assert main(["pacs", "find", _dimse_url(orthanc), "--patient", OTHER_ID]) == 0
    table = capsys.readouterr().out
    assert "2023-05-05" in table and "CT ABDOMEN" in table
    # What the server said about patients reached the terminal, never the log.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for identifier in (PATIENT_ID, OTHER_ID, PATIENT_NAME, "Zebedee", "19610203"):
        assert identifier not in logged


def test_fetch_to_a_folder_and_never_over_it(orthanc, patients, tmp_path, capsys) -> None:
    study = patients["prior1"]
    out = tmp_path / "out"
    args = ["pacs", "fetch", _dimse_url(orthanc), "--study", study.study_uid, "--out", str(out)]
    assert main(args) == 0
    files = sorted((out / study.study_uid).rglob("*.dcm"))
    assert len(files) == 10
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(sorted((out / study.study_uid).rglob("*.dcm"))) == 10


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["pacs", "echo", "ftp://x"], "not a server URL"),
        (["pacs", "echo", "dimse://host:104"], "dimse://AET@host:port"),
        (["pacs", "find", "dimse://A@127.0.0.1:9"], "give at least one of"),
        (["pacs", "find", "dimse://A@127.0.0.1:9", "--from", "2024"], "not a date"),
        (["pacs", "echo", "dimse://A@127.0.0.1:9"], "cannot connect"),
        (["view", "--pacs", "dimse://A@127.0.0.1:9"], "--pacs needs --patient"),
        (["view", "--pacs", "dimse://A@127.0.0.1:9", "--patient", "P"], "cannot connect"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, words, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_dicomweb_without_a_secret_says_where_to_put_one(orthanc, capsys) -> None:
    assert main(["pacs", "echo", _web_url(orthanc)]) == 2
    assert "no password or token is stored" in capsys.readouterr().err
