"""The user's preferences, kept with QSettings between sessions.

Every read and write of the settings store goes through :class:`Preferences`,
so the keys and their types live in one place. Values read back are checked:
a hand-edited or stale settings file yields the default, never a crash.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6 import QtCore

from app.core.imaging import PRESETS, Window

__all__ = ["APPLICATION", "MAX_RECENT", "ORGANISATION", "Preferences"]

ORGANISATION = "PriorSync"
APPLICATION = "priorsync"
# File ▸ Open Recent lists at most this many folders/files.
MAX_RECENT = 8

_GEOMETRY = "window/geometry"
_STATE = "window/state"
_LAST_FOLDER = "files/lastFolder"
_RECENT = "files/recent"
_LINK_WINDOW = "sync/linkWindow"
_LINK_CAMERA = "sync/linkCamera"
_SYNC_SLICES = "sync/syncSlices"
_OPACITY = "saliency/opacity"
_COLORMAP = "saliency/colormap"
_LAYOUT = "viewer/layout"
_SKETCH_ARCHIVE = "sketch/archive"
_SKETCH_FOLDER = "sketch/folder"
# One group per preset name: "presets/<name>/center" and ".../width" (HU).
_PRESETS = "presets"


class Preferences:
    """Typed access to PriorSync's persisted preferences.

    Parameters
    ----------
    settings
        The store; by default the user's, in QSettings' default format (tests
        point that format at a temporary folder with ``QSettings.setPath``).
    """

    def __init__(self, settings: QtCore.QSettings | None = None) -> None:
        if settings is None:
            # The four-argument form honours QSettings.setDefaultFormat (the
            # organisation/application form always uses the native format).
            settings = QtCore.QSettings(
                QtCore.QSettings.defaultFormat(),
                QtCore.QSettings.Scope.UserScope,
                ORGANISATION,
                APPLICATION,
            )
        self._settings = settings

    def sync(self) -> None:
        """Write pending changes to disk now."""
        self._settings.sync()

    # -- helpers ---------------------------------------------------------------------------
    def _bytes(self, key: str) -> QtCore.QByteArray | None:
        value = self._settings.value(key)
        return value if isinstance(value, QtCore.QByteArray) and not value.isEmpty() else None

    def _bool(self, key: str) -> bool | None:
        # Ini files give booleans back as the strings "true"/"false".
        value = self._settings.value(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return None

    def _str(self, key: str) -> str | None:
        value = self._settings.value(key)
        return value if isinstance(value, str) and value else None

    # -- window ----------------------------------------------------------------------------
    def window_geometry(self) -> QtCore.QByteArray | None:
        """The main window's saved geometry (``QWidget.saveGeometry``), if any."""
        return self._bytes(_GEOMETRY)

    def set_window_geometry(self, data: QtCore.QByteArray) -> None:
        """Keep the main window's geometry."""
        self._settings.setValue(_GEOMETRY, data)

    def window_state(self) -> QtCore.QByteArray | None:
        """The docks' and toolbars' saved state (``QMainWindow.saveState``), if any."""
        return self._bytes(_STATE)

    def set_window_state(self, data: QtCore.QByteArray) -> None:
        """Keep the docks' and toolbars' state."""
        self._settings.setValue(_STATE, data)

    # -- files -----------------------------------------------------------------------------
    def last_folder(self) -> str:
        """The folder the open dialogs start in: the last one used, or ``""`` (Qt's default)."""
        return self._str(_LAST_FOLDER) or ""

    def set_last_folder(self, folder: Path | str) -> None:
        """Remember the folder last used by an open dialog."""
        self._settings.setValue(_LAST_FOLDER, str(folder))

    def recent_paths(self) -> list[str]:
        """Recently opened folders/files, most recent first (at most :data:`MAX_RECENT`)."""
        value = self._settings.value(_RECENT)
        if isinstance(value, str):
            value = [value]  # an ini list of one element reads back as a plain string
        if not isinstance(value, list):
            return []
        return [p for p in value if isinstance(p, str) and p][:MAX_RECENT]

    def set_recent_paths(self, paths: list[str]) -> None:
        """Replace the recent list (de-duplicated, most recent first, trimmed)."""
        unique = list(dict.fromkeys(p for p in paths if p))[:MAX_RECENT]
        if unique:
            self._settings.setValue(_RECENT, unique)
        else:
            self._settings.remove(_RECENT)

    def add_recent_path(self, path: Path | str) -> None:
        """Put ``path`` first in the recent list (moving it up if already there)."""
        text = str(path)
        self.set_recent_paths([text, *(p for p in self.recent_paths() if p != text)])

    # -- linking ---------------------------------------------------------------------------
    def link_window(self) -> bool | None:
        """Link W/L as last chosen, or ``None`` when never chosen."""
        return self._bool(_LINK_WINDOW)

    def set_link_window(self, on: bool) -> None:
        """Remember the Link W/L toggle."""
        self._settings.setValue(_LINK_WINDOW, bool(on))

    def link_camera(self) -> bool | None:
        """Link zoom/pan as last chosen, or ``None`` when never chosen."""
        return self._bool(_LINK_CAMERA)

    def set_link_camera(self, on: bool) -> None:
        """Remember the Link zoom/pan toggle."""
        self._settings.setValue(_LINK_CAMERA, bool(on))

    def sync_slices(self) -> bool | None:
        """Sync slices as last chosen by the user, or ``None`` when never chosen."""
        return self._bool(_SYNC_SLICES)

    def set_sync_slices(self, on: bool) -> None:
        """Remember the user's Sync slices choice."""
        self._settings.setValue(_SYNC_SLICES, bool(on))

    # -- saliency overlay ------------------------------------------------------------------
    def saliency_opacity(self) -> int | None:
        """The overlay opacity in percent (0-100), or ``None`` when not saved or invalid."""
        value = self._settings.value(_OPACITY)
        try:
            percent = int(value)
        except (TypeError, ValueError):
            return None
        return percent if 0 <= percent <= 100 else None

    def set_saliency_opacity(self, percent: int) -> None:
        """Remember the overlay opacity (percent)."""
        self._settings.setValue(_OPACITY, int(percent))

    def saliency_colormap(self) -> str | None:
        """The overlay colour map's name, or ``None`` when not saved."""
        return self._str(_COLORMAP)

    def set_saliency_colormap(self, name: str) -> None:
        """Remember the overlay colour map."""
        self._settings.setValue(_COLORMAP, name)

    # -- viewer layout ---------------------------------------------------------------------
    def layout(self) -> str | None:
        """The hanging layout's name (``"1xN"`` or ``"2x2"``), ``None`` if never chosen."""
        return self._str(_LAYOUT)

    def set_layout(self, name: str) -> None:
        self._settings.setValue(_LAYOUT, name)

    # -- sketch query ----------------------------------------------------------------------
    def sketch_archive(self) -> str:
        """The archive folder last searched by sketch (made by ``priorsync index``), or ``""``."""
        return self._str(_SKETCH_ARCHIVE) or ""

    def set_sketch_archive(self, folder: Path | str) -> None:
        """Remember the archive folder searched by sketch."""
        self._settings.setValue(_SKETCH_ARCHIVE, str(folder))

    def sketch_folder(self) -> str:
        """The folder sketch PNGs were last loaded from or saved to, or ``""``."""
        return self._str(_SKETCH_FOLDER) or ""

    def set_sketch_folder(self, folder: Path | str) -> None:
        """Remember the folder of the last sketch PNG loaded or saved."""
        self._settings.setValue(_SKETCH_FOLDER, str(folder))

    # -- window/level presets --------------------------------------------------------------
    def _float(self, key: str) -> float | None:
        # Ini files give numbers back as strings; anything unparsable or non-finite is junk.
        value = self._settings.value(key)
        if isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    def window_presets(self) -> dict[str, Window]:
        """The W/L presets, in :data:`app.core.imaging.PRESETS` order, with the user's values.

        A preset never customised, or whose stored value is missing or invalid
        (not a finite number, width below 1 HU), keeps its default.
        """
        presets = dict(PRESETS)
        for name in PRESETS:
            center = self._float(f"{_PRESETS}/{name}/center")
            width = self._float(f"{_PRESETS}/{name}/width")
            # Window would silently widen a width < 1; a stored one that small is corrupt.
            if center is not None and width is not None and width >= 1:
                presets[name] = Window(center, width)
        return presets

    def set_window_preset(self, name: str, window: Window) -> None:
        """Store ``window`` as the preset ``name`` (one of :data:`app.core.imaging.PRESETS`).

        Raises
        ------
        KeyError
            If ``name`` is not a known preset (the viewer's keys 1-5 cover a fixed set).
        """
        if name not in PRESETS:
            raise KeyError(f"unknown window preset {name!r}")
        self._settings.setValue(f"{_PRESETS}/{name}/center", float(window.center))
        self._settings.setValue(f"{_PRESETS}/{name}/width", float(window.width))

    def reset_window_presets(self) -> None:
        """Forget every customised preset: all go back to their defaults."""
        self._settings.remove(_PRESETS)
