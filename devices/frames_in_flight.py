"""The frames of an areaDetector between their start and the file: exposed, not yet written.

:class:`FramesInFlight` keeps them in order (thread-safe: the plan's thread starts frames, the
Channel Access monitors of the cam's ``ArrayCounter`` and the HDF5 plugin's ``NumCaptured``
end them) for :class:`~ncsynth.devices.area_detector.AreaDetectorSAXS`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from ophyd.status import DeviceStatus

from .background import Timer


@dataclass(eq=False)
class PendingFrame:
    """A frame started and not yet reported written: its index in the file, start (epoch s),
    whether a sequence collects it, its Statuses (``exposed``: the cam has ended the exposure;
    ``written``: the HDF5 plugin has written it), its readings (signal -> value, the beam
    monitors when the exposure ended; None until then), and the timer that fails it."""

    index: int
    t_start: float
    collected: bool
    written: DeviceStatus
    exposed: DeviceStatus
    readings: dict | None = None
    timer: Timer | None = field(default=None, repr=False)


class FramesInFlight:
    """The pending frames of one staging, in the order they were started."""

    def __init__(self):
        self._lock = threading.Lock()
        self._frames: deque[PendingFrame] = deque()
        self.started = 0  # frames started this staging: the next frame's index in its file

    def reset(self) -> None:
        """A new staging (a new file): the next frame is index 0."""
        with self._lock:
            self.started = 0

    def start(self, t_start: float, collected: bool, device) -> PendingFrame:
        """A new frame at the next index (Statuses of ``device``)."""
        with self._lock:
            frame = PendingFrame(self.started, t_start, collected, DeviceStatus(device), DeviceStatus(device))
            self._frames.append(frame)
            self.started += 1
        return frame

    def unstart(self, frame: PendingFrame) -> None:
        """``frame`` never started (the cam refused it): its index is free again."""
        with self._lock:
            self._frames.remove(frame)
            self.started -= 1

    def before(self, count: int) -> list[PendingFrame]:
        """The pending frames whose index is below ``count``."""
        with self._lock:
            return [frame for frame in self._frames if frame.index < count]

    def all(self) -> list[PendingFrame]:
        with self._lock:
            return list(self._frames)

    def remove(self, frame: PendingFrame) -> bool:
        """Take ``frame`` off; False if it was not (or no longer) pending."""
        with self._lock:
            if frame not in self._frames:
                return False
            self._frames.remove(frame)
            return True


def raise_failed(statuses: list[DeviceStatus]) -> None:
    """Drop the finished Statuses from ``statuses``; raise the error of a failed one."""
    for status in [s for s in statuses if s.done]:
        statuses.remove(status)
        status.wait()  # raises its exception if it failed
