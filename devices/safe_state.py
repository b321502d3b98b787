"""Pursue a device's safe state until its own read-back confirms it.

A single attempt with bounded retries is not safe: a serial link that is down for a few
seconds makes every retry fail, and when the link returns nobody asks again, so a heater
stays in auto at its growth setpoint after the plan has ended. :class:`SafeStatePursuit`
commands the safe state and reads it back; until the read-back confirms it, it keeps
trying in a thread of its own, with back-off (0.5 s doubling to 10 s, wall time, like the
serial time-outs), for as long as it takes, logging CRITICAL at every failed attempt and
publishing its state as one line of text (``report``), which the device exposes as a
signal so that a plan records it in the run.

Only a deliberate new command (the device's ``set()``: the user heats again) or the
device's destruction ends a pursuit that has not succeeded; the caller may wait for it
(:meth:`wait`) before a process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
LONGEST_RETRY_S = 10.0


class SafeStatePursuit:
    """Drive a device safe and confirm it, retrying in the background until confirmed.

    Parameters
    ----------
    device : the device's name, for messages
    drive : commands the safe state; raises on a communication failure
    confirm : reads the device back; returns None when safe, else what is not safe (text);
        raises on a communication failure
    report : receives the state as text after every attempt ("confirmed ..." or
        "NOT confirmed ...")
    """

    def __init__(self, device: str, drive: Callable[[], None],
                 confirm: Callable[[], str | None], report: Callable[[str], None]):
        self.device, self._drive, self._confirm, self._report = device, drive, confirm, report
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._confirmed = threading.Event()
        self._problem = "not pursued yet"

    @property
    def confirmed(self) -> bool:
        """True once the read-back has confirmed the safe state of the latest pursuit."""
        return self._confirmed.is_set()

    @property
    def problem(self) -> str:
        """Why the safe state is not (yet) confirmed; empty once it is."""
        return "" if self.confirmed else self._problem

    @property
    def pursuing(self) -> bool:
        """True while a pursuit thread is still trying."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def pursue(self, wait_s: float) -> bool:
        """Start pursuing the safe state (or join the pursuit under way); wait up to
        ``wait_s`` wall seconds for the confirmation. Returns whether it is confirmed; if
        not, the pursuit goes on in the background."""
        with self._lock:
            if not self.pursuing:
                self._cancel = threading.Event()
                self._confirmed.clear()
                self._problem = "pursuit started"
                self._thread = threading.Thread(target=self._run, args=(self._cancel,),
                                                name=f"{self.device}-safe", daemon=True)
                self._thread.start()
        return self._confirmed.wait(wait_s)

    def wait(self, timeout_s: float | None = None, *, nag_every_s: float = 10.0) -> bool:
        """Block until the safe state is confirmed or no pursuit is running (``timeout_s``
        None: as long as it takes), logging CRITICAL every ``nag_every_s`` meanwhile."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.pursuing and not self.confirmed:
            left = nag_every_s if deadline is None else min(nag_every_s,
                                                            deadline - time.monotonic())
            if left <= 0:
                break
            if not self._confirmed.wait(left):
                log.critical("%s: waiting for the safe state to be confirmed: %s",
                             self.device, self._problem)
        return self.confirmed

    def cancel(self, join: bool = False) -> None:
        """End a pursuit (the device was deliberately commanded again, or destroyed); with
        ``join``, wait for its attempt under way to finish, so that no late safe-state
        write lands after the caller's next command."""
        with self._lock:
            self._cancel.set()
            self._confirmed.clear()
            thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self, cancel: threading.Event) -> None:
        delay_s, attempt, since = FIRST_RETRY_S, 0, time.time()
        while not cancel.is_set():
            attempt += 1
            try:
                self._drive()
                problem = self._confirm()
            except Exception as exc:  # a lost link, a refused write: keep trying
                problem = f"{type(exc).__name__}: {exc}"
            if cancel.is_set():
                return
            if problem is None:
                self._problem = ""
                self._confirmed.set()
                self._report(f"confirmed safe after {attempt} attempt(s)")
                if attempt > 1:
                    log.warning("%s: safe state confirmed after %d attempts (%.1f s)",
                                self.device, attempt, time.time() - since)
                return
            self._problem = (f"NOT confirmed safe after {attempt} attempt(s) over "
                             f"{time.time() - since:.1f} s: {problem}")
            self._report(self._problem)
            log.critical("%s: %s; retrying in %.1f s", self.device, self._problem, delay_s)
            cancel.wait(delay_s)
            delay_s = min(2 * delay_s, LONGEST_RETRY_S)
