"""Icons and the style sheet shipped in :mod:`app.resources`."""

from __future__ import annotations

from importlib import resources

from PySide6 import QtGui

__all__ = ["icon", "clear_icon_cache", "style_sheet"]

# Qt objects must not outlive the QApplication (their destructors would run
# during interpreter finalisation), so the cache is emptied at teardown.
_ICONS: dict[str, QtGui.QIcon] = {}


def icon(name: str) -> QtGui.QIcon:
    """The SVG icon ``app/resources/icons/<name>.svg`` (cached; needs a QGuiApplication).

    Raises
    ------
    FileNotFoundError
        When no such icon is shipped; a missing icon is a packaging bug, not
        something to paper over with a blank button.
    """
    cached = _ICONS.get(name)
    if cached is not None:
        return cached
    path = resources.files("app.resources") / "icons" / f"{name}.svg"
    if not path.is_file():
        raise FileNotFoundError(f"icon {name!r} is not in app/resources/icons")
    with resources.as_file(path) as p:
        result = QtGui.QIcon(str(p))
    _ICONS[name] = result
    return result


def clear_icon_cache() -> None:
    """Drop cached icons (called before the QApplication is destroyed)."""
    _ICONS.clear()


def style_sheet() -> str:
    """The application's Qt style sheet."""
    return (resources.files("app.resources") / "priorsync.qss").read_text(encoding="utf-8")
