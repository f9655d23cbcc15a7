"""The bounded job window shared by header scanning and slice decoding."""

from __future__ import annotations

import threading

import pytest

from app.io.bounded_pool import run_bounded
from app.io.errors import Cancelled


def test_every_job_runs_once_and_the_window_is_never_exceeded():
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    submitted = []

    def work(x: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        with lock:
            in_flight -= 1
        return x * x

    def jobs():
        for i in range(50):
            submitted.append(i)
            yield i, (i,)

    results: dict[int, int] = {}
    run_bounded(work, jobs(), lambda k, f: results.__setitem__(k, f.result()), workers=2, window=3)
    assert results == {i: i * i for i in range(50)}
    assert peak <= 2


def test_exceptions_reach_the_caller_through_on_result():
    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad slice")
        return x

    errors: dict[int, str] = {}
    ok: list[int] = []

    def on_result(key: int, fut) -> None:
        try:
            ok.append(fut.result())
        except ValueError as exc:
            errors[key] = str(exc)

    run_bounded(work, ((i, (i,)) for i in range(6)), on_result, workers=2, window=2)
    assert errors == {3: "bad slice"}
    assert sorted(ok) == [0, 1, 2, 4, 5]


def test_cancel_stops_submitting_and_raises():
    cancel = threading.Event()
    consumed = []

    def jobs():
        for i in range(1000):
            consumed.append(i)
            yield i, (i,)

    def on_result(_key: int, _fut) -> None:
        cancel.set()

    with pytest.raises(Cancelled, match="scan was cancelled"):
        run_bounded(
            lambda x: x,
            jobs(),
            on_result,
            workers=2,
            window=4,
            cancel=cancel,
            cancel_message="scan was cancelled",
        )
    # Only the first window (plus nothing more) was ever taken from the source.
    assert len(consumed) <= 4
