"""The README is right: its command list is complete, its marked commands run on the demo
patient, and its documented JSON has the shape of the real output.

How to document a command so that this test checks it: put an HTML comment right
before a fenced code block in README.md::

    <!-- readme-test: run -->                    every line runs and must exit 0
    <!-- readme-test: run exit=2 -->             ... must exit 2
    <!-- readme-test: run needs=orthanc -->      skipped, with the reason, unless NEEDS says
                                                 the need is met on this machine
    <!-- readme-test: json-of="priorsync X --json" -->
                                                 the JSON block below is the documented
                                                 shape of that command's output

Each line is one command (``#`` starts a comment); ``priorsync`` runs this
checkout's CLI. Words in :data:`PLACEHOLDERS` (``CURRENT_DIR``...) stand for
demo-patient paths; commands run in a fresh folder, so relative output files
land there. A new command that needs a new placeholder or a new need adds one
entry to :data:`PLACEHOLDERS` or :data:`NEEDS`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND_TIMEOUT_S = 600
_MARKED_BLOCK = re.compile(
    r"<!--\s*readme-test:(?P<args>.*?)-->\s*\n```(?P<lang>[\w-]*)\n(?P<body>.*?)\n```", re.DOTALL
)


def _which(program: str, hint: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(program) else f"needs {program} ({hint})"


# need -> a function returning why it is not met here, or None when it is.
NEEDS: dict[str, Callable[[], str | None]] = {
    "display": _which("Xvfb", "scripts/system-deps.sh --tests installs it"),
    "orthanc": _which("Orthanc", "a local Orthanc DICOM server"),
    "slow": lambda: (
        None
        if os.environ.get("PRIORSYNC_README_SLOW") == "1"
        else "takes minutes; PRIORSYNC_README_SLOW=1 runs it"
    ),
}

# README placeholder -> its value for the demo patient (see the `demo` fixture).
PLACEHOLDERS: dict[str, Callable[[DemoData], str]] = {
    "CURRENT_DIR": lambda d: str(d.current),
    "PRIOR_DIR": lambda d: str(d.prior),
    "CURRENT": lambda d: str(d.current),
    "PRIOR": lambda d: str(d.prior),
    "FOLDER": lambda d: str(d.root),
}


@dataclass(frozen=True)
class DemoData:
    """The demo patient's folders: newest (current) study, the one before, their parent."""

    root: Path
    current: Path
    prior: Path


@dataclass(frozen=True)
class Block:
    """A marked code block of the README."""

    options: dict[str, str]
    lang: str
    body: str
    line: int  # 1-based line of the marker, for messages


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every code block with a ``readme-test`` marker, in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for m in _MARKED_BLOCK.finditer(text):
        options = {}
        for word in shlex.split(m["args"]):
            key, _, value = word.partition("=")
            options[key] = value
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(options, m["lang"], m["body"], line))
    return blocks


def command_lines(block: Block) -> list[str]:
    """The commands of a ``run`` block: one per line, comments and blank lines dropped."""
    lines = []
    for raw in block.body.splitlines():
        words = shlex.split(raw, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


def _run_cases() -> list[pytest.param]:
    cases = []
    for block in readme_blocks():
        if "run" not in block.options:
            continue
        for command in command_lines(block):
            cases.append(pytest.param(block, command, id=command))
    return cases


def _json_cases() -> list[pytest.param]:
    return [
        pytest.param(b, id=b.options["json-of"]) for b in readme_blocks() if "json-of" in b.options
    ]


def _skip_unmet_needs(block: Block) -> None:
    for need in filter(None, block.options.get("needs", "").split(",")):
        if need not in NEEDS:
            pytest.fail(f"README line {block.line}: unknown need {need!r}; add it to NEEDS")
        reason = NEEDS[need]()
        if reason:
            pytest.skip(f"README line {block.line}: {reason}")


def run_readme_command(command: str, demo: DemoData, cwd: Path) -> subprocess.CompletedProcess:
    """Run one README command line with this checkout's CLI and the demo's paths."""
    words = shlex.split(command)
    if not words or words[0] != "priorsync":
        pytest.fail(f"README command does not start with `priorsync`: {command}")
    args = [PLACEHOLDERS[w](demo) if w in PLACEHOLDERS else w for w in words[1:]]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def demo() -> DemoData:
    """The real demo patient (built once into the session cache, shared with the UI tests)."""
    from app.sim.demo import build_demo_patient
    from app.sim.sources import SourceError

    try:
        folders = build_demo_patient()
    except SourceError as exc:
        pytest.skip(f"the demo patient's CT cannot be had here: {exc}")
    return DemoData(folders[0].parent, folders[0], folders[1])


def test_the_command_list_names_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^priorsync ([a-z][a-z-]*)", section, flags=re.MULTILINE))
    assert listed == set(COMMANDS), (
        f"README's command list lacks {sorted(set(COMMANDS) - listed)}, "
        f"lists unknown {sorted(listed - set(COMMANDS))}"
    )


def test_the_readme_has_marked_blocks() -> None:
    # Guards the markers themselves: a typo would silently turn every check off.
    blocks = readme_blocks()
    assert sum("run" in b.options for b in blocks) >= 1
    assert sum("json-of" in b.options for b in blocks) >= 1
    for block in blocks:
        assert set(block.options) <= {"run", "exit", "needs", "json-of"}, block


@pytest.mark.slow
@pytest.mark.parametrize(("block", "command"), _run_cases())
def test_readme_command_runs(block: Block, command: str, demo: DemoData, tmp_path: Path) -> None:
    _skip_unmet_needs(block)
    proc = run_readme_command(command, demo, tmp_path)
    want = int(block.options.get("exit") or 0)
    output = proc.stdout + proc.stderr
    assert proc.returncode == want, f"`{command}` exited {proc.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output


# -- documented JSON vs real output ---------------------------------------------------


def shape_problems(doc: object, real: object, where: str = "$") -> list[str]:
    """How ``real`` differs in shape from the documented ``doc`` (empty: it matches).

    Dicts must have the same keys; a list of documented objects stands for a list
    whose every element matches one of them; a list of documented numbers (a
    position) must have as many numbers; ints stay ints, floats may be whole; a
    documented string ending in ``…`` must be the real one's beginning.
    """
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{where}: documented an object, got {type(real).__name__}"]
        problems = []
        if set(doc) != set(real):
            problems.append(f"{where}: documented keys {sorted(doc)}, real {sorted(real)}")
        for key in set(doc) & set(real):
            problems += shape_problems(doc[key], real[key], f"{where}.{key}")
        return problems
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{where}: documented a list, got {type(real).__name__}"]
        if not doc:
            return []
        numbers = all(isinstance(d, int | float) and not isinstance(d, bool) for d in doc)
        if numbers and len(real) != len(doc):
            return [f"{where}: documented {len(doc)} numbers, got {len(real)}"]
        if not real:
            return [f"{where}: the real list is empty, so nothing was checked"]
        problems = []
        for i, item in enumerate(real):
            per_doc = [shape_problems(d, item, f"{where}[{i}]") for d in doc]
            if all(per_doc):
                problems += min(per_doc, key=len)
        return problems
    if doc is None or isinstance(doc, bool):
        ok = real is doc if doc is None else isinstance(real, bool)
        return [] if ok else [f"{where}: documented {json.dumps(doc)}, got {real!r}"]
    if isinstance(doc, int):
        ok = isinstance(real, int) and not isinstance(real, bool)
        return [] if ok else [f"{where}: documented an integer, got {real!r}"]
    if isinstance(doc, float):
        ok = isinstance(real, int | float) and not isinstance(real, bool)
        return [] if ok else [f"{where}: documented a number, got {real!r}"]
    if isinstance(doc, str):
        if not isinstance(real, str):
            return [f"{where}: documented a string, got {real!r}"]
        if doc.endswith("…") and not real.startswith(doc[:-1]):
            return [f"{where}: documented {doc!r}, got {real!r}"]
        return []
    return [f"{where}: cannot compare documented {doc!r}"]


def test_shape_check_catches_what_it_should() -> None:
    doc = {"model": "m-1.0 sha256:ab…", "items": [{"i": 0, "p": [1.0, 2.0]}, {"i": 1, "p": None}]}
    good = {"model": "m-1.0 sha256:abcd", "items": [{"i": 3, "p": [4, 5.5]}, {"i": 4, "p": None}]}
    assert shape_problems(doc, good) == []
    assert shape_problems(doc, {**good, "model": "m sha256:abcd"})  # wrong name
    assert shape_problems(doc, {**good, "extra": 1})  # undocumented key
    assert shape_problems(doc, {**good, "items": [{"i": 1.5, "p": None}]})  # float index
    assert shape_problems(doc, {**good, "items": [{"i": 1, "p": [1.0]}]})  # short position
    assert shape_problems(doc, {**good, "items": []})  # nothing checked
    assert shape_problems(doc, {**good, "items": [{"i": 1, "p": "x"}]})


@pytest.mark.slow
@pytest.mark.parametrize("block", _json_cases())
def test_documented_json_has_the_real_shape(block: Block, demo: DemoData, tmp_path: Path) -> None:
    _skip_unmet_needs(block)
    try:
        documented = json.loads(block.body)
    except ValueError as exc:
        pytest.fail(f"README line {block.line}: the documented JSON does not parse: {exc}")
    proc = run_readme_command(block.options["json-of"], demo, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    real = json.loads(proc.stdout)
    problems = shape_problems(documented, real)
    assert not problems, f"README line {block.line}: " + "; ".join(problems[:10])
