"""The wheel carries every package: pyproject's explicit list matches the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(config["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = {"app.models"}  # models/ is installed as app.models (package-dir)
    for init in (ROOT / "app").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_package_under_app_is_listed_in_pyproject() -> None:
    missing = _on_disk() - _listed()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_pyproject_lists_no_package_that_is_gone() -> None:
    # A data folder (app/resources/icons) is a package without an __init__.py.
    gone = {p for p in _listed() - {"app.models"} if not (ROOT / p.replace(".", "/")).is_dir()}
    assert not gone, f"listed in pyproject.toml but not in the tree: {sorted(gone)}"
