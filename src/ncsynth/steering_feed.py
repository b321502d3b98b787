"""The documents in-run decisions read and write (issue 19).

* :class:`FitFeed` takes the live analysis's derived-run documents (subscribe it where the
  analysis emits them, beside the catalog writer) and keeps each frame's mean radius, its
  error, its time after the first firing and the wall time it arrived, for the steering
  plan (:mod:`ncsynth.plans.steering`) to wait on and read from the RunEngine's thread.
* :class:`DecisionLog` follows a raw run's documents and collects the events of its
  ``agent`` stream: the decisions, what a dry run's summary lists under ``decisions``
  (and what a replay of the run reads back).

Light: the standard library, :mod:`ncsynth.timebase` and :mod:`ncsynth.plans.decisions`
(numpy) only.
"""

from __future__ import annotations

import math
import threading
import time

from ncsynth import timebase
from ncsynth.analysis.derived_run import FITS
from ncsynth.plans.decisions import AGENT, FitPoint

#: How often a waiting :meth:`FitFeed.wait_for` asks whether the analysis is still alive, s.
HEALTH_POLL_S = 0.1


class FitFeed:
    """Per-frame fits of the live analysis, in frame order, for the RunEngine's thread.

    ``feed(name, doc)`` (any thread) takes derived-run documents; :meth:`wait_for` blocks
    until the fit of a given frame has come, :meth:`points` gives what has. A derived run's
    start resets it (one synthesis at a time). ``error`` (set by whoever runs the analysis,
    or :meth:`lost`) says the analysis has stopped delivering.
    """

    def __init__(self, health=None):
        #: () -> None, or why the analysis is lost (asked while :meth:`wait_for` waits)
        self.health = health
        self._cond = threading.Condition()
        self._points: list[FitPoint] = []
        self._fits_descriptors: set[str] = set()
        self.error: str | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            with self._cond:
                self._points, self._fits_descriptors = [], set()
        elif name == "descriptor" and doc.get("name") == FITS:
            self._fits_descriptors.add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in self._fits_descriptors:
            data = doc["data"]
            point = FitPoint(_number(data.get("time_s")), _number(data.get("radius_nm")),
                             _number(data.get("radius_err_nm")), time.perf_counter())
            with self._cond:
                self._points.append(point)
                self._cond.notify_all()

    def lost(self, why: str) -> None:
        """The analysis has stopped delivering (``why``); waiters return at once."""
        with self._cond:
            self.error = self.error or why
            self._cond.notify_all()

    def wait_for(self, count: int, timeout_s: float | None,
                 world_deadline: float | None = None) -> bool:
        """Block until ``count`` frames' fits have come (True), or until ``timeout_s`` of wall
        time has passed, the active clock (:mod:`ncsynth.timebase`) has reached
        ``world_deadline`` (epoch s) or the analysis is lost (False).

        ``world_deadline`` is the world's: at the hutch it comes with the wall clock; in a dry
        run on a jumping clock held by the waiting plan the world stands still, and only the
        fit (or ``timeout_s``) ends a wait begun before the world reached ``world_deadline``,
        however slowly this machine analyses (one begun at it ends at once: issue 15)."""
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        with self._cond:
            while len(self._points) < count and not self.error:
                problem = self.health() if self.health is not None else None
                if problem:
                    self.error = problem
                    break
                left = HEALTH_POLL_S if deadline is None else \
                    min(deadline - time.perf_counter(), HEALTH_POLL_S)
                if world_deadline is not None:  # world seconds left, in wall seconds
                    clock = timebase.get_clock()
                    left = min(left, (world_deadline - clock.now()) /
                               (getattr(clock, "speed", None) or 1.0))
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(self._points) >= count

    def points(self) -> list[FitPoint]:
        with self._cond:
            return list(self._points)

    def __len__(self) -> int:
        with self._cond:
            return len(self._points)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class DecisionLog:
    """The ``agent`` stream's events of the raw runs it follows, as dicts (``decisions``)."""

    def __init__(self):
        self.decisions: list[dict] = []
        self._agent: set[str] = set()

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start" and "raw_uid" not in doc:
            self.decisions, self._agent = [], set()
        elif name == "descriptor" and doc.get("name") == AGENT:
            self._agent.add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in self._agent:
            self.decisions.append({key.removeprefix(f"{AGENT}_"): value
                                   for key, value in doc["data"].items()})
