"""Volumes in memory, keyed by series identity (the catalogue's stable series key).

The series on screen stay; a few others are kept so that flipping back to a
series just looked at does not read it again. Keys are the
:attr:`~app.io.records.SeriesRef.key` strings: the same files give the same key,
so a volume is never confused with another one that happens to reuse a
Python object id after the first was freed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from app.core.volume import Volume

__all__ = ["EXTRA_CACHED_VOLUMES", "VolumeCache"]

# Volumes kept in memory besides the ones on screen.
EXTRA_CACHED_VOLUMES = 2


class VolumeCache:
    """Loaded volumes by series key (least recently used first) and the keys being loaded."""

    def __init__(self, extra: int = EXTRA_CACHED_VOLUMES) -> None:
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self.pending: set[str] = set()
        self.extra = extra

    def __contains__(self, key: str) -> bool:
        return key in self._volumes

    def __iter__(self) -> Iterator[str]:
        return iter(self._volumes)

    def __len__(self) -> int:
        return len(self._volumes)

    def get(self, key: str) -> Volume | None:
        """The volume of series ``key`` (marked as just used), else ``None``."""
        volume = self._volumes.get(key)
        if volume is not None:
            self._volumes.move_to_end(key)
        return volume

    def put(self, key: str, volume: Volume) -> None:
        """Keep ``volume`` as series ``key`` (no longer pending)."""
        self.pending.discard(key)
        self._volumes[key] = volume
        self._volumes.move_to_end(key)

    def trim(self, shown: set[str]) -> None:
        """Drop the least recently used volumes not in ``shown`` beyond :attr:`extra`."""
        extra = [k for k in self._volumes if k not in shown]
        for key in extra[: max(0, len(extra) - self.extra)]:
            del self._volumes[key]

    def clear(self) -> None:
        """Forget every volume and pending load."""
        self._volumes.clear()
        self.pending.clear()
