"""SIGTERM and SIGHUP end a run the way Ctrl-C does: abort, clean-up, run closed.

bluesky's RunEngine handles SIGINT only; a service manager stopping the process (SIGTERM)
or a closed terminal (SIGHUP) would otherwise kill it on the spot: no clean-up, the
journal left active, no stop document, the heater on and the injector armed.

While :class:`TerminationSignals` is entered, either signal aborts the RunEngine's plan
(``RE.abort``: the plan's clean-up makes the heater safe and disarms the injector, the run
is closed as "abort" with everything acquired). What follows is the caller's choice:

* without ``finish`` (the dry run), the handler returns at once, ``RE(...)`` comes back
  when the clean-up is done and the caller reports ``received`` and exits with
  ``128 + signal number``; a signal arriving while no plan runs raises ``SystemExit``;
* with ``finish`` (the interactive session, where nobody may be left to type), the
  handler waits for the RunEngine to become idle and calls ``finish(signal_name)``, which
  makes the hardware safe, closes the session and ends the process.

A second terminating signal during the clean-up is logged and otherwise ignored: the
clean-up is the point.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Callable

from bluesky.utils import RequestAbort, RunEngineInterrupted, TransitionError


logger = logging.getLogger(__name__)

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_IDLE_WAIT_S = 300.0  # longest wait for a plan's clean-up before ``finish`` runs anyway


def exit_code(signal_name: str) -> int:
    """The shell's convention for a process ended by ``signal_name``: 128 + its number."""
    return 128 + int(signal.Signals[signal_name])


class TerminationSignals:
    """Context manager: SIGTERM/SIGHUP abort ``RE``'s plan (see the module docstring).

    ``received`` holds the name of the first terminating signal ("SIGTERM"), else None.
    Must be entered from the main thread (Python delivers signals there).
    """

    def __init__(self, RE, finish: Callable[[str], None] | None = None):
        self._RE, self._finish = RE, finish
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "TerminationSignals":
        for sig in TERMINATING:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            logger.critical("%s received while ending the run for %s: the clean-up goes on",
                            name, self.received)
            return
        self.received = name
        busy = not self._RE.state.is_idle
        logger.critical("%s received: %s", name,
                        "aborting the run (heater safe, injector disarmed, everything "
                        "acquired kept)" if busy else "no plan running")
        if busy:
            try:
                self._RE.abort(reason=f"terminated by {name}")
            except TransitionError:  # it ended meanwhile
                pass
        if self._finish is not None:
            deadline = time.monotonic() + _IDLE_WAIT_S
            while not self._RE.state.is_idle and time.monotonic() < deadline:
                time.sleep(0.05)
            self._finish(name)
        elif not busy:
            raise SystemExit(exit_code(name))


def run_to_the_end(RE, plan, *, what: str, safe: str) -> tuple[str | None, str | None]:
    """Run ``plan`` in ``RE`` to its end, as a command nobody steers does; return (what ended
    it, or None if it ended on its own; the name of the terminating signal received, or None).

    Ctrl-C pauses a RunEngine, and nobody resumes a dry run: the run is aborted (the plan's
    clean-up makes the set-up safe, the run is closed as "abort" with everything acquired).
    SIGTERM and SIGHUP abort it the same way (:class:`TerminationSignals`); the result then
    names the signal. A plan that fails is closed by the RunEngine ("fail"); its error, in one
    line, is the result. ``what`` names the command in the log ("dry run"), ``safe`` what its
    clean-up leaves ("heater safe, injector disarmed"). ncsynth's
    :class:`~ncsynth.run_engine.RunEngine` runs the plan and the abort's clean-up with the heap
    frozen (:func:`~ncsynth.heap.frozen_heap`)."""
    quiet = _AbortIsNoError()
    logging.getLogger("bluesky").addFilter(quiet)
    signals = TerminationSignals(RE)
    try:
        with signals:
            try:
                RE(plan)
            except RunEngineInterrupted:
                if signals.received is None:
                    logger.warning("%s interrupted: aborting the run (%s, everything acquired "
                                   "kept)", what, safe)
                    RE.abort("interrupted by the user (Ctrl-C)")
        if signals.received is not None:
            return f"terminated by {signals.received}", signals.received
    except Exception as exc:  # the plan failed: the RunEngine closed the run ("fail")
        from ncsynth.plans.safety import DeviceFailure

        logger.error("%s failed: %s", what, exc)
        error = str(exc) if isinstance(exc, DeviceFailure) else f"{type(exc).__name__}: {exc}"
        return error, signals.received
    finally:
        logging.getLogger("bluesky").removeFilter(quiet)
    return None, None


class _AbortIsNoError(logging.Filter):
    """bluesky logs an abort as an error with the plan's traceback; after the user's Ctrl-C
    the command says what happens itself, so that record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RequestAbort))
