"""Progress of a timed-acquisition run: the dry run's bar, the session's status line.

:class:`ProgressBar` (the dry run): frames done / total, time to the end.
:class:`StatusLine` (the session): one line while the RunEngine waits (preheat, settling,
long gaps between frames), printed through a :class:`Terminal` that also prints the live
table's rows above it, from the analysis thread.

The bar is a plain document callback (subscribe it to the RunEngine, or to a 0MQ
dispatcher in another process). It reads the frame schedule from the start
document (``num_points``, ``frame_offsets_s``), t = 0 from the ``injection``
stream and counts ``primary`` events. The times shown are experiment times
(seconds after injection), so a fast-forwarded dry run shows the protocol's
clock, not the wall clock.
"""

from __future__ import annotations

import math
import sys
import threading
import time

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


class Terminal:
    """One status line at the bottom of a terminal, and whole lines printed above it, from
    any thread. On a terminal the status line is redrawn in place (``\\r``); elsewhere (a
    pipe, a log file) it is printed as a line of its own at most every ``plain_every_s``."""

    def __init__(self, file=None, plain_every_s: float = 15.0):
        self.file = file or sys.stdout
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.plain_every_s = plain_every_s
        self._lock = threading.Lock()
        self._shown = ""
        self._plain_at = -math.inf

    def status(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self.file.write("\r\033[K" + text)
                self._shown = text
            elif time.monotonic() - self._plain_at >= self.plain_every_s:
                self.file.write(text + "\n")
                self._plain_at = time.monotonic()
            self.file.flush()

    def clear(self) -> None:
        with self._lock:
            self._clear()
            self.file.flush()

    def print(self, text: str = "") -> None:
        """``text`` on lines of its own (the status line, if shown, is redrawn later)."""
        with self._lock:
            self._clear()
            self.file.write(f"{text}\n")
            self.file.flush()

    def _clear(self) -> None:
        if self._shown:
            self.file.write("\r\033[K")
            self._shown = ""


class StatusLine(DocumentRouter):
    """What the run is doing while the RunEngine waits more than ``after_s`` (preheat,
    settling, a long gap between frames): one line, refreshed every ``every_s`` —
    ``scan 7 · preheat · heater 183.4 °C → 290 °C · 2:31 · frames 0/60 · Ctrl-C pauses``.

    Subscribe it to the RunEngine (documents: the scan, the phase, frames taken) and make
    :meth:`waiting` the RunEngine's ``waiting_hook`` (called with the Statuses waited on, then
    None). ``heater`` (optional) is read for the line: its ``temperature`` and ``setpoint``.
    """

    PHASES = {"background": "background frames", "injection": "acquisition",
              "primary": "acquisition", "temperature": "acquisition"}

    def __init__(self, terminal: Terminal, heater=None, *, after_s: float = 2.0,
                 every_s: float = 1.0):
        super().__init__()
        self.terminal, self.heater = terminal, heater
        self.after_s, self.every_s = after_s, every_s
        self._streams: dict[str, str] = {}
        self._run: dict | None = None
        self._since: float | None = None
        self._wake = threading.Event()
        self._closed = False
        threading.Thread(target=self._tick, name="ncsynth-status", daemon=True).start()

    def close(self) -> None:
        """End the thread that refreshes the line."""
        self._closed = True
        self._wake.set()

    # -- documents --------------------------------------------------------------------
    def start(self, doc):
        if "raw_uid" in doc:  # an analysis run
            return
        self._streams.clear()
        self._run = {"scan": doc.get("scan_id", "?"), "phase": "preheat", "frames": 0,
                     "total": doc.get("num_points")}

    def descriptor(self, doc):
        self._streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"])
        if self._run is None or stream is None:
            return
        self._run["phase"] = self.PHASES.get(stream, self._run["phase"])
        if stream == "primary":
            self._run["frames"] += 1

    def stop(self, doc):
        self._run = None
        self.terminal.clear()

    # -- the RunEngine's waiting hook -------------------------------------------------
    def waiting(self, statuses) -> None:
        if statuses is None:
            if self._since is not None and time.monotonic() - self._since >= self.after_s:
                self.terminal.clear()
            self._since = None
        else:
            self._since = time.monotonic()
            self._wake.set()

    def describe(self) -> str:
        run = self._run or {}
        parts = [f"scan {run.get('scan', '?')}", run.get("phase", "waiting")]
        if self.heater is not None:
            try:
                parts.append(f"heater {self.heater.temperature.get():.1f} °C → "
                             f"{self.heater.setpoint.get():.0f} °C")
            except Exception as exc:  # a link hiccup must not end the display
                parts.append(f"heater unreadable ({type(exc).__name__})")
        since = self._since
        if since is not None:
            waited = int(time.monotonic() - since)
            parts.append(f"waiting {waited // 60}:{waited % 60:02d}")
        if run.get("total"):
            parts.append(f"frames {run['frames']}/{run['total']}")
        return " · ".join(parts) + " · Ctrl-C pauses"

    def _tick(self) -> None:
        while not self._closed:
            self._wake.wait(self.every_s)
            self._wake.clear()
            since = self._since
            if since is not None and self._run is not None \
                    and time.monotonic() - since >= self.after_s:
                self.terminal.status(self.describe())
