"""docs/architecture.md stays true: what it names exists, and it names every package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def _named() -> set[str]:
    """Every `app...` written in code style in the doc (dotted names and paths)."""
    spans = re.findall(r"`([^`]+)`", DOC.read_text(encoding="utf-8"))
    return {s for s in spans if s.startswith(("app.", "app/"))}


def _module_file(dotted: str) -> Path | None:
    base = ROOT / Path(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defines(module: Path, name: str) -> bool:
    """Whether ``module`` defines ``name`` at top level or inside a top-level class."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _exists(name: str) -> bool:
    if "/" in name:
        return (ROOT / name).exists()
    if _module_file(name) is not None:
        return True
    # A name inside a module (a class, a function, a constant, a class member).
    parts = name.split(".")
    for split in range(len(parts) - 1, 1, -1):
        module = _module_file(".".join(parts[:split]))
        if module is not None:
            return all(_defines(module, attr) for attr in parts[split:])
    return False


def test_everything_the_architecture_doc_names_exists() -> None:
    named = _named()
    assert len(named) > 30, "the doc names its packages in `code` style"
    missing = sorted(n for n in named if not _exists(n))
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_the_architecture_doc_names_every_package() -> None:
    packages = [
        ".".join(init.parent.relative_to(ROOT).parts)
        for pattern in ("app/*/__init__.py", "app/ml/*/__init__.py", "app/ml/train/*/__init__.py")
        for init in ROOT.glob(pattern)
    ]
    named = _named()
    unnamed = sorted(p for p in packages if p not in named)
    assert not unnamed, f"add these packages to docs/architecture.md: {unnamed}"


def test_the_check_catches_a_name_that_does_not_exist() -> None:
    assert not _exists("app.ml.nowhere")
    assert not _exists("app.core.state.NoSuchChannel")
    assert _exists("app.core.state.Channel")
    assert _exists("app/io/registry.py")
