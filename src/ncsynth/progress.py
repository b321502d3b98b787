"""A progress bar over a timed-acquisition run: frames done / total, time to the end.

A plain document callback (subscribe it to the RunEngine, or to a 0MQ
dispatcher in another process). It reads the frame schedule from the start
document (``num_points``, ``frame_offsets_s``), t = 0 from the ``injection``
stream and counts ``primary`` events. The times shown are experiment times
(seconds after injection), so a fast-forwarded dry run shows the protocol's
clock, not the wall clock.
"""

from __future__ import annotations

import sys

from event_model import DocumentRouter
from tqdm import tqdm


class ProgressBar(DocumentRouter):
    """tqdm bar of acquired frames with the experiment time left."""

    def __init__(self, file=None, disable: bool | None = None):
        super().__init__()
        self.file = file or sys.stderr
        self.disable = disable
        self._bar = None
        self._streams: dict[str, str] = {}
        self._t0 = None
        self._end_offset = None
        self.frames = 0

    def start(self, doc):
        self._streams.clear()
        self._t0 = None
        self.frames = 0
        offsets = doc.get("frame_offsets_s") or [0.0]
        self._end_offset = float(offsets[-1])
        self._bar = tqdm(total=doc.get("num_points"), unit="frame", file=self.file,
                         disable=self.disable, desc=f"scan {doc.get('scan_id', '?')}",
                         dynamic_ncols=True)

    def descriptor(self, doc):
        self._streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"])
        if stream == "injection":
            times = [v for k, v in doc["data"].items() if k.endswith("_fire_time_a")
                     or k.endswith("_fire_time_b")]
            times = [t for t in times if t]
            if times:
                self._t0 = max(times)
        elif stream == "primary" and self._bar is not None:
            self.frames += 1
            self._bar.update(1)
            if self._t0 is not None:
                elapsed = min(doc["timestamps"].values()) - self._t0
                self._bar.set_postfix_str(
                    f"t={elapsed:8.1f} s, {max(0.0, self._end_offset - elapsed):8.1f} s to go",
                    refresh=False)

    def stop(self, doc):
        if self._bar is not None:
            self._bar.set_postfix_str(f"{doc.get('exit_status')}", refresh=False)
            self._bar.close()
            self._bar = None
