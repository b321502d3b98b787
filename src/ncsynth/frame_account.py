"""How many of a synthesis run's planned frames were taken, and whether the nucleation window
was (:class:`FrameAccount`, a document callback for the dry run and the session).

The plan puts the count and the reason of skipped frames in the stop document's ``reason``
(:func:`ncsynth.plans.stubs.run_accounting_frames`); this callback adds which frames: a run
that lost frames of the first :data:`NUCLEATION_WINDOW_S` after injection cannot give the 98 %
times of seed 000 §S.3 (the concentration builds up within seconds), and its summary says so
rather than reporting a clean success.
"""

from __future__ import annotations

from event_model import DocumentRouter

#: Frames within this time after injection are the nucleation window (seed 000 §S.3), s.
NUCLEATION_WINDOW_S = 10.0


class FrameAccount(DocumentRouter):
    """Follows raw runs (derived runs, which name a ``raw_uid``, are ignored); after each
    run's stop :attr:`result` holds ``frames_skipped`` (the stop document's reason, when frames
    were skipped) and ``nucleation_window`` ("LOST: ..." when frames of the window are
    missing), or nothing for a run that took all its frames."""

    def __init__(self):
        super().__init__()
        self.result: dict = {}
        self._start: dict | None = None

    def start(self, doc):
        if "raw_uid" in doc:
            return
        self._start, self._streams, self._t0, self._frame_times = doc, {}, None, []
        self.result = {}

    def descriptor(self, doc):
        if self._start is not None and doc.get("run_start") == self._start["uid"]:
            self._streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"]) if self._start is not None else None
        if stream == "injection" and self._t0 is None:
            fired = [v for k, v in doc["data"].items() if k.endswith("_fire_time_a") and v]
            self._t0 = fired[0] if fired else None
        elif stream == "primary":
            self._frame_times.append(min(doc["timestamps"].values()))

    def stop(self, doc):
        if self._start is None or doc.get("run_start") != self._start["uid"]:
            return
        start, self._start = self._start, None
        taken = (doc.get("num_events") or {}).get("primary", 0)
        planned = start.get("num_points")
        if not planned or taken >= planned:
            return
        self.result = {"frames_skipped": doc.get("reason") or f"{planned - taken} of {planned}"
                                                                " planned frames not taken"}
        offsets = start.get("frame_offsets_s") or []
        if self._t0 is not None and offsets:
            early = sum(1 for t in offsets if t < NUCLEATION_WINDOW_S)
            got = sum(1 for t in self._frame_times if t - self._t0 < NUCLEATION_WINDOW_S)
            if got < early:
                self.result["nucleation_window"] = (
                    f"LOST: {early - got} of the {early} frames of the first "
                    f"{NUCLEATION_WINDOW_S:g} s after injection not taken; the 98 % times "
                    f"need them")
