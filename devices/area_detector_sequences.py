"""The detector-timed sequences (seed 000 §S.1.4) of an areaDetector, two ways:

* kept by the timing system: the cam armed for ``n`` externally triggered images, the pulse
  sequencer (:mod:`.trigger_sequencer`) loaded with the ``n`` start times and armed; each
  frame's time is its start as the IOC stamped it;
* kept by this computer (no sequencer): a thread starts each exposure at its start time.

:class:`AreaDetectorSequences` is that part of
:class:`~ncsynth.devices.area_detector.AreaDetectorSAXS` (a mixin: it uses the detector's
``cam``, ``hdf5``, ``sequencer``, frames in flight and time-outs).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Iterator

from ophyd.device import Staged
from ophyd.status import DeviceStatus, SubscriptionStatus, WaitTimeoutError

from ncsynth import timebase
from ncsynth.errors import first_line
from .detector import DetectorError, SequenceAborted
from .frames_in_flight import PendingFrame, raise_failed

logger = logging.getLogger(__name__)


class AreaDetectorSequences:
    """The detector-timed sequences of an areaDetector (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a triggered sequence's frame starts as the IOC stamped them (EPICS epoch s), in the
        # order written; None outside one. _stamp_floor: the stamp of the last frame before it
        self._stamps: list[float] | None = None
        self._stamp_floor = -math.inf
        self._first_stamped = 0  # the file index of the sequence's first frame

    def kickoff(self):
        """Start the prepared sequence, with a cancel of its own (set by an abort from now on)."""
        if not self._sequence_running():
            self._cancel = threading.Event()
        return super().kickoff()

    def _start_sequence(self, start_times, exposure_s):
        self.exposure_time.put(exposure_s)
        if self.sequencer is None:
            return self._scheduled_frames(start_times, exposure_s)
        return self._start_triggered(start_times, exposure_s)

    def _scheduled_frames(self, start_times, exposure_s: float) -> Iterator[None]:
        """Each start in turn once the previous exposure has ended (not once it is written:
        the plugin writes while the next frame exposes); at the end, every frame written. A
        failed write ends the sequence with its error at the next start."""
        writing: list[DeviceStatus] = []
        try:
            for _ in timebase.deadlines(start_times, self._cancel):
                raise_failed(writing)
                frame = self._expose(collected=True, exposure_s=exposure_s)
                writing.append(frame.written)
                frame.exposed.wait()
                yield
            for status in writing:
                status.wait()
        except SequenceAborted:
            return

    def _abort_sequence(self) -> None:
        self._cancel.set()
        if self._ioc_gone is None:  # else each put would wait out its connection time-out
            if self.sequencer is not None:
                self.sequencer.disarm()
            self.cam.acquire.put(0, wait=False)
        for frame in self._in_flight.all():
            self._finish(frame, SequenceAborted(f"{self.name}: sequence aborted"))

    def _start_triggered(self, start_times, exposure_s: float) -> Iterator[None]:
        """Arm the cam and the sequencer for ``start_times`` (epoch s; those passed or too soon
        moved on, :func:`catch_up`); the iterator of the sequence's steps
        (:meth:`_triggered_frames`). Raises :class:`DetectorError` if either refuses."""
        pulses = catch_up(start_times, timebase.now() + ARMING_S, exposure_s)
        return self._triggered_frames(self._arm_triggered(pulses), pulses, exposure_s)

    def _stamped(self, value, **kwargs) -> None:
        """The HDF5 plugin's ``TimeStamp_RBV`` changed (Channel Access monitor, during a
        triggered sequence): the start of the frame it is about to count."""
        stamps = self._stamps  # starts increase: a repeated update of the last one is no frame
        if stamps is not None and value > (stamps[-1] if stamps else self._stamp_floor):
            stamps.append(float(value))

    def _stamped_start(self, index: int) -> float:
        """The start (POSIX epoch s) the IOC stamped on frame ``index`` of a triggered
        sequence; NaN if none arrived."""
        stamps, k = self._stamps or [], index - self._first_stamped
        return stamps[k] + timebase.EPICS_EPOCH_S if 0 <= k < len(stamps) else math.nan

    def _arm_triggered(self, start_times) -> list[PendingFrame]:
        """Arm the cam for ``len(start_times)`` external triggers, then the sequencer with the
        start times; the frames, pending. Raises :class:`DetectorError` naming what failed."""
        if self._staged != Staged.yes:
            raise DetectorError(f"{self.name}: stage the detector (it opens the HDF5 file) first")
        frames = [self._in_flight.start(math.nan, True, self) for _ in start_times]
        self._first_stamped = frames[0].index
        try:
            # frames stamped later than the last one before the sequence are its frames (a
            # new monitor's first update repeats that one)
            self._stamp_floor = float(self.hdf5.time_stamp.get())
            self._stamps = []
            self.hdf5.time_stamp.subscribe(self._stamped, run=False)
            put = {"wait": True, "timeout": self.timeout_s}
            self.cam.trigger_mode.put(1, **put)
            self.cam.num_images.put(len(start_times), **put)
            self.cam.acquire.put(1, wait=False)
            SubscriptionStatus(self.cam.acquire, lambda value, **_: value == 1,
                               timeout=self.timeout_s).wait()
            self.sequencer.fire_at(start_times, self.timeout_s)
        except Exception as error:
            for frame in reversed(frames):  # none was taken: their indices are free again
                self._in_flight.unstart(frame)
            self._end_triggered(error)
            raise DetectorError(f"{self.name}: cannot arm the triggered sequence: {first_line(error)}") from error
        return frames

    def _triggered_frames(self, frames, pulses, exposure_s: float) -> Iterator[None]:
        """One step per pulse of an armed triggered sequence, at its scheduled end (on the
        clock), once its frame is written: at most ``timeout_s`` (wall) later, else the
        sequence fails. A pulse that came while the detector was still exposing (a stall: the
        frame before it started late) took no frame: it is passed over, and the frames
        not taken are given back at the end (their slots show as missed in the run's
        account, :mod:`ncsynth.plans.frame_account`)."""
        ends = timebase.deadlines([t + exposure_s for t in pulses], self._cancel)
        waiting, busy_until, error = iter(frames), -math.inf, None
        frame = next(waiting)
        try:
            for k, _ in enumerate(ends):
                if pulses[k] < busy_until:
                    yield  # still exposing the last frame: this trigger took none
                    continue
                try:
                    frame.written.wait(timeout=self.timeout_s)
                except WaitTimeoutError:
                    self._late(frame, self.timeout_s)
                frame.written.wait()  # raises if it failed
                if k + 1 < len(pulses) and frame.t_start >= pulses[k + 1]:
                    yield  # the frame of a later pulse: this one took none
                    continue
                busy_until = frame.t_start + exposure_s
                frame = next(waiting, None)
                yield
        except SequenceAborted as failure:
            error = failure
        except Exception as failure:
            error = failure
            raise
        finally:
            ends.close()
            self._end_triggered(error)

    def _end_triggered(self, error: Exception | None) -> None:
        """After a triggered sequence: frames still pending fail with ``error``, or, when it
        ended, are given back (their triggers took none); the cam stops waiting for triggers
        and returns to one internally triggered image, unless its IOC is gone."""
        self._stamps = None
        self.hdf5.time_stamp.clear_sub(self._stamped)
        for pending in reversed(self._in_flight.all()):
            if error is not None:
                self._finish(pending, error)
            elif pending.collected:
                self._in_flight.unstart(pending)
        if self._ioc_gone is not None:
            return
        try:
            if error is not None:
                self.sequencer.disarm()
            self.cam.acquire.put(0, wait=True, timeout=self.timeout_s)
            self.cam.trigger_mode.put(0, wait=True, timeout=self.timeout_s)
            self.cam.num_images.put(1, wait=True, timeout=self.timeout_s)
        except Exception as failure:
            self._ioc_gone = first_line(failure)
            logger.warning("%s: cannot return the cam to internal triggering: %s", self.name, self._ioc_gone)


#: Time (s) given to loading and arming the cam and the sequencer: a start time sooner than this
#: at kickoff is moved to it (:func:`catch_up`).
ARMING_S = 0.02


def catch_up(start_times, earliest: float, exposure_s: float) -> list[float]:
    """The pulse times of a triggered sequence: ``start_times`` (epoch s), those before
    ``earliest`` (passed, or too soon to arm for) moved to it and the following ones as much
    as needed to keep the schedule's shortest dead time after each exposure (a trigger that
    came while the detector still exposes would be lost). The frames record their real,
    late starts."""
    times = [float(t) for t in start_times]
    dead_s = min((b - a for a, b in zip(times, times[1:])), default=exposure_s) - exposure_s
    pulses, next_free = [], earliest
    for t in times:
        pulses.append(max(t, next_free))
        next_free = pulses[-1] + exposure_s + dead_s
    return pulses
