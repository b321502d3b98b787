"""An aborted run's stop document says why it was aborted (issue 12): a real RunEngine running
a plan shaped like ncsynth's (run_wrapper around a finalize_wrapper clean-up), aborted from
the paused state (Ctrl-C), by SIGTERM sent to this process, and by a bare ``RE.abort()``.
bluesky's run_wrapper used to close such a run with ``reason: ""``."""

from __future__ import annotations

import os
import signal
import threading

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky.utils import RunEngineInterrupted

from ncsynth.run_engine import NO_REASON, RunEngine
from ncsynth.termination import TerminationSignals


def synthesis_like(cleaned_up: list):
    """A long plan in a run, with a clean-up that must run whatever ends it."""
    def steps():
        for _ in range(2000):
            yield from bps.checkpoint()
            yield from bps.sleep(0.01)

    def clean_up():
        cleaned_up.append(True)
        yield from bps.null()

    return bpp.run_wrapper(bpp.finalize_wrapper(steps(), clean_up()), md={"purpose": "test"})


@pytest.fixture
def RE():
    engine = RunEngine({}, context_managers=[])
    engine.stops = []
    engine.subscribe(lambda name, doc: engine.stops.append(doc), "stop")
    return engine


def test_an_abort_from_the_paused_state_records_its_reason(RE):
    cleaned_up = []
    threading.Timer(0.3, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(synthesis_like(cleaned_up))
    RE.abort("interrupted by the user (Ctrl-C)")
    [stop] = RE.stops
    assert stop["exit_status"] == "abort" and stop["reason"] == "interrupted by the user (Ctrl-C)"
    assert cleaned_up == [True]


def test_sigterm_aborts_the_run_and_the_stop_document_names_the_signal(RE):
    cleaned_up = []
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with TerminationSignals(RE) as signals, pytest.raises(RunEngineInterrupted):
        RE(synthesis_like(cleaned_up))  # as after Ctrl-C: the run was interrupted
    assert signals.received == "SIGTERM"
    [stop] = RE.stops
    assert stop["exit_status"] == "abort" and stop["reason"] == "terminated by SIGTERM"
    assert cleaned_up == [True]


def test_an_abort_without_a_reason_says_so_and_the_next_run_starts_clean(RE):
    threading.Timer(0.3, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(synthesis_like([]))
    RE.abort()
    RE(bpp.run_wrapper(bps.null()))
    assert [(s["exit_status"], s["reason"]) for s in RE.stops] == [("abort", NO_REASON), ("success", "")]
