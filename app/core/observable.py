"""A tiny Qt-free signal so the core state can notify views without importing Qt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Signal"]


class Signal:
    """Synchronous publish/subscribe. Slots run in connection order.

    The UI connects slots that repaint; Qt-side code that needs thread hopping
    wraps its slot itself. Exceptions propagate to the emitter on purpose: a
    broken view should fail a test, not be swallowed.
    """

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)
