"""Which of a synthesis run's planned frames were taken in their time, counted from the run's
own documents (:class:`FrameAccount`): by the plan for its stop document
(:func:`ncsynth.plans.stubs.run_accounting_frames` subscribes one for its run), and by the dry
run and the session for their summaries.

Frame ``i`` of the schedule owns the slot from its start time ``t0 + offsets[i]`` to the next
frame's (seed 000 §S.1.4; the last slot stays open), ``t0`` being the firing of the run's
piston (stream ``injection``). A slot in which no frame started was missed. Software-triggered frames whose successor is already due are skipped
(:func:`ncsynth.plans.stubs._follow`); a detector-timed sequence starts them late instead, in
later slots, back to back. Both leave slots empty and are counted alike, as are frames a
sequence dropped.

A decision of the steering (stream ``agent``, :mod:`ncsynth.plans.steering`) that acts (ends
the growth, fires piston B) ends the schedule: slots after it were not planned any more.

A run that missed slots of the first :data:`NUCLEATION_WINDOW_S` after injection cannot give
the 98 % times of seed 000 §S.3 (the concentration builds up within seconds): its summary says
so rather than reporting a clean success.
"""

from __future__ import annotations

import bisect
import math

from event_model import DocumentRouter

from .decisions import AGENT

#: Frames within this time after injection are the nucleation window (seed 000 §S.3), s.
NUCLEATION_WINDOW_S = 10.0
#: A frame starting this little before its slot is in it (epoch seconds carry ~2e-7 s of rounding;
#: frames are at least an exposure apart), s.
SLOT_TOLERANCE_S = 1e-4
#: Why frames are missing, by acquisition mode (the run's ``acquisition``; software by default).
SKIPPED_REASON = ("{missing} of {planned} frames skipped: their deadlines had passed (a pause, "
                  "or a machine too slow for the clock speed)")
LATE_REASON = ("{missing} of {planned} frame slots missed: the detector-timed sequence started "
               "their frames late, after the next frame was due, or dropped them (a stall, or "
               "a detector too slow for the schedule)")


class FrameAccount(DocumentRouter):
    """Follows raw runs (derived runs, which name a ``raw_uid``, are ignored). At a run's end
    :meth:`reason` says how many frames were skipped or missed and why (None: none); after
    the stop of a successful run :attr:`result` holds ``frames_skipped`` (that text) and
    ``nucleation_window`` ("LOST: ..." when slots of the window were missed), or nothing for
    a run that took every frame in its time (or did not succeed: its stop says why)."""

    def __init__(self):
        super().__init__()
        self.result: dict = {}
        self._start: dict | None = None

    def start(self, doc):
        if "raw_uid" in doc:
            return
        self._start, self._streams, self._t0, self._frame_times = doc, {}, None, []
        self._schedule_end = math.inf  # world time of an acting decision, epoch s
        self.result = {}

    def descriptor(self, doc):
        if self._start is not None and doc.get("run_start") == self._start["uid"]:
            self._streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"]) if self._start is not None else None
        if stream == "injection" and self._t0 is None:
            piston = str(self._start.get("piston", "A")).lower()
            fired = doc["data"].get(next((k for k in doc["data"]
                                          if k.endswith(f"_fire_time_{piston}")), ""))
            self._t0 = fired if isinstance(fired, (int, float)) and math.isfinite(fired) else None
        elif stream == "primary":
            self._frame_times.append(min(doc["timestamps"].values()))  # the frame's start
        elif stream == AGENT and math.isinf(self._schedule_end):
            data = doc["data"]
            action = str(data.get(f"{AGENT}_action", ""))
            if action and not action.startswith(("refused", "none")):
                self._schedule_end = float(data.get(f"{AGENT}_world_time", math.inf))

    def stop(self, doc):
        if self._start is None or doc.get("run_start") != self._start["uid"]:
            return
        reason, window = self.reason(), self._window()
        self._start = None
        if doc.get("exit_status") != "success":  # frames not taken: the run ended (its reason)
            reason = window = None
        self.result = {**({"frames_skipped": reason} if reason else {}),
                       **({"nucleation_window": window} if window else {})}

    def reason(self) -> str | None:
        """How many frames of the open run's schedule were skipped or missed, and why, once
        its frames are taken (the plan's ``close_run``); None if none."""
        if self._start is None:
            return None
        slots = self._slots()
        planned = self._start.get("num_points") or 0
        if math.isfinite(self._schedule_end):  # a decision ended the schedule: its slots so far
            planned, taken = len(slots), sum(t < self._schedule_end for t in self._frame_times)
        else:
            taken = len(self._frame_times)
        missing = max(planned - taken, slots.count(False))
        if missing == 0:
            return None
        template = LATE_REASON if self._start.get("acquisition") == "detector" else SKIPPED_REASON
        return template.format(missing=missing, planned=planned)

    def _slots(self) -> list[bool]:
        """Whether a frame started in each slot of the schedule (``frame_offsets_s``); [] if
        the schedule or the firing time is unknown."""
        offsets = self._start.get("frame_offsets_s") or []
        if self._t0 is None or not offsets:
            return []
        starts = [self._t0 + offset - SLOT_TOLERANCE_S for offset in offsets
                  if self._t0 + offset < self._schedule_end]
        taken = {bisect.bisect_right(starts, t) - 1 for t in self._frame_times
                 if t < self._schedule_end}
        return [index in taken for index in range(len(starts))]

    def _window(self) -> str | None:
        offsets = self._start.get("frame_offsets_s") or []
        early = sum(1 for offset in offsets if offset < NUCLEATION_WINDOW_S)
        if self._t0 is None or not early:
            return None
        missed = sum(1 for offset, taken in zip(offsets, self._slots())
                     if offset < NUCLEATION_WINDOW_S and not taken)
        if not missed:
            return None
        return (f"LOST: {missed} of the {early} frames of the first {NUCLEATION_WINDOW_S:g} s "
                f"after injection not taken in their time; the 98 % times need them")
