"""`--json` results are written atomically, and a failure is one line and an exit status."""

from __future__ import annotations

import json

from app.commands.exit_codes import EXIT_OK, EXIT_OUTPUT
from app.commands.options import write_json_results


def test_results_replace_the_file_in_one_piece(tmp_path, capsys) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    assert write_json_results(path, {"mean": 1.03}, "eval") == EXIT_OK
    assert json.loads(path.read_text()) == {"mean": 1.03}
    assert f"results written to {path}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_an_unwritable_place_is_one_line_and_exit_output(tmp_path, capsys) -> None:
    path = tmp_path / "missing-folder" / "results.json"
    assert write_json_results(path, {"mean": 1.03}, "eval-sketch") == EXIT_OUTPUT
    err = capsys.readouterr().err
    assert err.startswith("priorsync eval-sketch: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
