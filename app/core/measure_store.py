"""The measurements of the studies on screen, with one undo stack (Qt-free).

A :class:`MeasurementStore` holds :class:`~app.core.measure.Measurement` objects
by id. Every change (add, edit, delete, a propagation that adds several at
once, a whole reload) is one *step* of ``(id, before, after)`` records, so
undo and redo treat all of them alike. Views listen to :attr:`changed` and
repaint from the store; they never keep their own copy of a measurement.

Measurements are grouped into findings by :attr:`Measurement.finding`: a
measurement and its propagated copies share the name, and
:meth:`MeasurementStore.findings` gives what the follow-up table shows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from app.core.measure import Finding, Measurement
from app.core.observable import Signal

__all__ = ["Change", "MeasurementStore"]


@dataclass(frozen=True)
class Change:
    """One measurement's change within a step: ``None`` before (added) or after (deleted)."""

    id: str
    before: Measurement | None
    after: Measurement | None


class MeasurementStore:
    """Measurements by id, the selection and the undo/redo history.

    Signals
    -------
    changed(what: str)
        ``"measurements"`` after any change of the measurements (also by
        undo/redo and :meth:`replace_all`), ``"selection"`` when the selected
        measurement changes.
    """

    def __init__(self) -> None:
        self.changed = Signal()
        self._items: dict[str, Measurement] = {}
        self._undo: list[tuple[Change, ...]] = []
        self._redo: list[tuple[Change, ...]] = []
        self._ids = itertools.count(1)
        self._selected: str | None = None

    # -- reading -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def get(self, mid: str) -> Measurement | None:
        """The measurement ``mid``, or ``None`` when there is none (any more)."""
        return self._items.get(mid)

    def items(self, series_uid: str | None = None) -> list[tuple[str, Measurement]]:
        """``(id, measurement)`` pairs in the order added, of one series when given."""
        return [
            (mid, m)
            for mid, m in self._items.items()
            if series_uid is None or m.series_uid == series_uid
        ]

    def ids_of_finding(self, name: str) -> list[str]:
        """Ids of the measurements of finding ``name``."""
        return [mid for mid, m in self._items.items() if m.finding == name]

    def findings(self) -> list[Finding]:
        """The findings, in the order their first measurement was added."""
        groups: dict[str, Finding] = {}
        for m in self._items.values():
            groups.setdefault(m.finding, Finding(m.finding)).measurements.append(m)
        return list(groups.values())

    def new_finding_name(self) -> str:
        """The next free finding name: ``"F1"``, ``"F2"``, ..."""
        taken = {m.finding for m in self._items.values()}
        n = 1
        while f"F{n}" in taken:
            n += 1
        return f"F{n}"

    # -- selection -----------------------------------------------------------------
    @property
    def selected(self) -> str | None:
        """Id of the selected measurement (what Delete and Propagate act on)."""
        return self._selected

    def select(self, mid: str | None) -> None:
        """Select ``mid`` (``None``: nothing); unknown ids select nothing."""
        mid = mid if mid in self._items else None
        if mid != self._selected:
            self._selected = mid
            self.changed.emit("selection")

    # -- changing (each call is one undo step) -----------------------------------------
    def add(self, measurement: Measurement) -> str:
        """Add ``measurement``; returns its id. A measurement without a finding starts one."""
        return self.add_many([measurement])[0]

    def add_many(self, measurements: Sequence[Measurement]) -> list[str]:
        """Add several measurements as one step (a propagation); returns their ids."""
        new = self.new_finding_name()
        changes = []
        for m in measurements:
            if not m.finding:
                m = replace(m, finding=new)
            changes.append(Change(self._next_id(), None, m))
        self._apply_new(changes)
        return [c.id for c in changes]

    def edit(self, mid: str, points: Iterable[Sequence[float]]) -> bool:
        """Move the control points of ``mid``; False when it does not exist or nothing moved.

        Raises
        ------
        app.core.measure.MeasurementError
            When ``points`` do not make a measurement of its kind.
        """
        old = self._items.get(mid)
        if old is None:
            return False
        new = old.moved([tuple(p) for p in points], old.series_uid, old.study_date)  # type: ignore[misc]
        if new == old:
            return False
        self._apply_new([Change(mid, old, new)])
        return True

    def delete(self, mid: str) -> bool:
        """Delete ``mid``; False when it does not exist."""
        old = self._items.get(mid)
        if old is None:
            return False
        self._apply_new([Change(mid, old, None)])
        return True

    def replace_all(self, measurements: Sequence[Measurement]) -> None:
        """Drop everything and the history, and hold ``measurements`` (studies opened)."""
        self._items = {self._next_id(): m for m in measurements}
        self._undo.clear()
        self._redo.clear()
        self._selected = None
        self.changed.emit("measurements")
        self.changed.emit("selection")

    # -- history -------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Revert the last step; False when there is none."""
        if not self._undo:
            return False
        step = self._undo.pop()
        self._redo.append(step)  # before the change is announced: listeners see the history
        self._apply(reversed([Change(c.id, c.after, c.before) for c in step]))
        return True

    def redo(self) -> bool:
        """Apply the last undone step again; False when there is none."""
        if not self._redo:
            return False
        step = self._redo.pop()
        self._undo.append(step)
        self._apply(step)
        return True

    # -- internals -----------------------------------------------------------------
    def _next_id(self) -> str:
        return f"m{next(self._ids)}"

    def _apply_new(self, changes: list[Change]) -> None:
        self._undo.append(tuple(changes))
        self._redo.clear()
        self._apply(changes)

    def _apply(self, changes: Iterable[Change]) -> None:
        for c in changes:
            if c.after is None:
                self._items.pop(c.id, None)
            else:
                self._items[c.id] = c.after
        self.changed.emit("measurements")
        if self._selected is not None and self._selected not in self._items:
            self._selected = None
            self.changed.emit("selection")
