"""Run many small I/O jobs on a few threads with a bounded window of submissions.

Scanning headers and decoding slices both hand thousands of small jobs to a
thread pool. Submitting them all at once would make a cancel wait for the whole
queue to drain; keeping only a small window in flight keeps cancel (and progress
reports) responsive while the threads stay busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from app.io.errors import Cancelled

__all__ = ["run_bounded"]

K = TypeVar("K")


def run_bounded(
    fn: Callable[..., Any],
    jobs: Iterable[tuple[K, tuple[Any, ...]]],
    on_result: Callable[[K, Future[Any]], None],
    *,
    workers: int,
    window: int,
    cancel: threading.Event | None = None,
    after_round: Callable[[], None] | None = None,
    cancel_message: str = "",
    thread_name_prefix: str = "",
) -> None:
    """Call ``fn(*args)`` for every ``(key, args)`` job on a thread pool.

    Parameters
    ----------
    fn
        The work; runs in a pool thread.
    jobs
        ``(key, args)`` pairs, consumed lazily.
    on_result
        ``on_result(key, future)`` in the calling thread as each job finishes;
        it reads ``future.result()`` and decides what an exception means.
    workers
        Pool threads.
    window
        Most jobs submitted but not yet handled.
    cancel
        Checked after each round of finished jobs; when set, pending jobs are
        cancelled and :class:`~app.io.errors.Cancelled` is raised.
    after_round
        Called in the calling thread after each round (progress reports).
    cancel_message
        Message of the :class:`~app.io.errors.Cancelled` raised on cancel.
    thread_name_prefix
        Names the pool's threads (shows in profilers and crash reports).
    """
    source = iter(jobs)
    pending: dict[Future[Any], K] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix) as pool:
        try:
            while True:
                while len(pending) < window:
                    job = next(source, None)
                    if job is None:
                        break
                    key, args = job
                    pending[pool.submit(fn, *args)] = key
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    on_result(pending.pop(fut), fut)
                if cancel is not None and cancel.is_set():
                    raise Cancelled(cancel_message) if cancel_message else Cancelled()
                if after_round is not None:
                    after_round()
        finally:
            for fut in pending:
                fut.cancel()
