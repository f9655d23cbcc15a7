"""The demo patient built in a background thread from the moment ``priorsync demo`` starts.

On a first run the demo build (simulating and writing three studies) is most of
the wait. Started before the viewer imports Qt and builds its window, it runs
beside that start-up (its numpy and SimpleITK work releases the GIL), and the
window's loader, instead of building, waits for it (:meth:`DemoBuild.wait` is the
loader's ``build_demo``). The result is the one a build inside the loader gives:
the same function, the same cache folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["DemoBuild", "DemoBuildStopped"]

# How often a waiting loader job passes progress on (and notices its cancel).
_POLL_S = 0.1

Progress = Callable[[int, int], None] | None


class DemoBuildStopped(Exception):
    """The build was stopped by :meth:`DemoBuild.stop` (the viewer closed first)."""


class DemoBuild:
    """One run of ``build(progress=...)`` in its own thread; the result is kept.

    Parameters
    ----------
    build
        ``build(progress=callback) -> list of series folders``; default
        :func:`app.sim.demo.build_demo_patient`.
    """

    def __init__(self, build: Callable[..., list[Path]] | None = None) -> None:
        if build is None:
            from app.sim.demo import build_demo_patient

            build = build_demo_patient
        self._build = build
        self._stop = threading.Event()
        self._done = threading.Event()
        self._progress: tuple[int, int] = (0, 0)
        self._result: list[Path] | None = None
        self._error: BaseException | None = None
        # stop() ends the build at its next step, so the interpreter does not finalise
        # under running numpy/ITK code. A daemon all the same: a window closed while
        # the source CT is downloaded (a pip subprocess, minutes) must not keep the
        # process alive after stop() has waited its time.
        self._thread = threading.Thread(target=self._run, name="demo-build", daemon=True)

    def start(self) -> DemoBuild:
        """Start building; returns ``self``."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = [Path(p) for p in self._build(progress=self._report)]
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting loader job
            self._error = exc
        finally:
            self._done.set()

    def _report(self, done: int, total: int) -> None:
        if self._stop.is_set():
            raise DemoBuildStopped("the demo build was stopped")
        self._progress = (int(done), int(total))

    def wait(self, progress: Progress = None) -> list[Path]:
        """The series folders, once built (the loader's ``build_demo``).

        Parameters
        ----------
        progress
            ``progress(done, total)``, called while waiting; whatever it raises
            (the loader's ``Cancelled``) ends the wait, not the build.

        Raises
        ------
        Exception
            What the build raised (e.g. :class:`app.sim.sources.SourceError`).
        """
        while not self._done.wait(_POLL_S):
            done, total = self._progress
            if progress is not None and total:
                progress(done, total)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        if progress is not None:
            total = max(self._progress[1], 1)
            progress(total, total)
        return list(self._result)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the build at its next step (if still running) and wait for its thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
