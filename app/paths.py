"""Where PriorSync keeps caches, demo data and finds its model."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_dir", "config_dir", "models_dir", "shared_data_dir"]


def cache_dir() -> Path:
    """User cache directory (``PRIORSYNC_CACHE_DIR`` overrides, e.g. in tests)."""
    env = os.environ.get("PRIORSYNC_CACHE_DIR")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("priorsync"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """User configuration directory (``PRIORSYNC_CONFIG_DIR`` overrides, e.g. in tests)."""
    env = os.environ.get("PRIORSYNC_CONFIG_DIR")
    path = Path(env) if env else Path(platformdirs.user_config_dir("priorsync"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Directory holding the shipped ONNX models.

    ``PRIORSYNC_MODELS_DIR`` overrides. Otherwise the data package ``app.models``,
    which setuptools builds from the checkout's top-level ``models/`` folder (so
    an installed wheel and an editable install both carry it), and last the
    checkout's ``models/`` itself (source tree on ``sys.path``, or a frozen app).
    """
    env = os.environ.get("PRIORSYNC_MODELS_DIR")
    if env:
        return Path(env)
    try:
        import app.models

        for entry in app.models.__path__:
            if Path(entry).is_dir():
                return Path(entry)
    except ImportError:
        pass
    return Path(__file__).resolve().parent.parent / "models"


def shared_data_dir() -> Path | None:
    """``../shared/data/ct`` beside the checkout, when present (development and CI only)."""
    env = os.environ.get("PRIORSYNC_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [
        here.parent / "shared" / "data" / "ct",
        Path.cwd().parent / "shared" / "data" / "ct",
    ]
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    return None
