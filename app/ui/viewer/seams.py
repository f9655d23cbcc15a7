"""The typed seams between the main window and its parts.

Parts of the window (presets, sync wiring, saliency scheduling, export, the
sketch window) need to know which viewports are on screen and which one the
user is working in, and nothing else of the window. They receive an object
satisfying :class:`ViewportSet`, never the window itself.
"""

from __future__ import annotations

from typing import Protocol

from app.core.state import ViewportState
from app.ui.viewer.viewport import ViewportView

__all__ = ["StatusSink", "ViewportSet"]


class ViewportSet(Protocol):
    """The viewports on screen, by slot (left to right, top to bottom), and the active one."""

    @property
    def views(self) -> dict[int, ViewportView]:
        """Slot number -> viewport, for the slots whose series is shown."""
        ...

    @property
    def active_view(self) -> ViewportView | None:
        """The viewport receiving keyboard commands, if any."""
        ...

    def viewport_states(self) -> list[ViewportState]:
        """States of the shown viewports, in slot order."""
        ...

    def target_view(self) -> ViewportView | None:
        """Where a command goes: the active viewport, else the first one, else ``None``."""
        ...


class StatusSink(Protocol):
    """Where a part tells the user something short (the status bar)."""

    def status(self, message: str, timeout_ms: int = 8000) -> None:
        """Show ``message`` for ``timeout_ms`` (0: until replaced)."""
        ...
