"""What a SAXS frame detector gives the plans and the catalog (seed 000 §S.1.4), whatever drives it.

:class:`FrameDetector` is the base of :class:`~ncsynth.devices.area_detector.AreaDetectorSAXS`
(the detector on an EPICS areaDetector IOC, at the hutch and in the dry run): its readings, its
asset documents and its detector-timed sequence (flyer).

Two ways to acquire:

* software-triggered: one ``trigger()`` per frame; the Status finishes when the frame is on
  disk;
* detector-timed: ``prepare(start_times)`` (``bps.prepare``; or ``prepare_sequence``) with
  absolute frame start times (epoch s), then the flyer methods ``kickoff`` / ``complete`` / ``collect`` (the §S.1.4 schedule
  ``t_i + t_w·1.015^(n-1)``). The plan declares the stream first and names it when collecting::

      yield from bps.declare_stream(det, name="primary", collect=True)
      yield from bps.kickoff(det, wait=True)
      ...
      yield from bps.collect(det, name="primary")

Every frame's own start time (reported by the detector, not the time of ``read()``) is the
reading ``<name>_frame_time`` (epoch s, also its timestamp) and, for collected frames, the
event's timestamps.

Assets: StreamResource/StreamDatum documents (event-model >= 1.19), see :class:`FrameAssets`.
The image data key ``<name>_image`` is described as ``external="STREAM:"`` and is absent from
the events; one ``stream_resource`` per HDF5 file (mimetype ``application/x-hdf5``, uri
``file://localhost/<absolute path>``, parameters ``{"dataset": "/entry/data/data",
"chunk_shape": [1, rows, cols]}``) and ``stream_datum`` documents whose ``indices`` are the
frames' positions along axis 0 — one per software-triggered frame, one per ``collect`` batch of
a sequence — emitted only once those frames are flushed to the file. The catalog
(``bluesky_tiled_plugins.TiledWriter``'s HDF5 consolidator) then serves the stream's frames as
one ``(n, rows, cols)`` array of exactly the frames the stream_datums reference: frames the
file holds beyond them (e.g. written just before a ``kill -9``) are not exposed.

One staging, one file, one stream: the RunEngine binds a stream_resource to the stream of the
first event that references it, so stage the detector separately for each stream it records
(as ``ncsynth.plans`` does for ``background`` and ``primary``).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np
from event_model import StreamRange, compose_stream_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus, Status

#: Mimetype of the frame files in the stream_resource documents.
FRAME_MIMETYPE = "application/x-hdf5"
#: Frames inside each HDF5 file.
FRAME_DATASET = "/entry/data/data"


class DetectorError(RuntimeError):
    """The detector refused a request or the link to it failed."""


class SequenceAborted(DetectorError):
    """A detector-timed sequence was stopped (``stop()``, an abort): its frames not yet
    written end with this, and the sequence ends without an error of its own."""


def frame_uri(path) -> str:
    """The stream_resource ``uri`` of a frame file: ``file://localhost`` + its absolute path."""
    return "file://localhost" + Path(os.path.abspath(path)).as_posix()


class FrameAssets:
    """The StreamResource/StreamDatum documents of one detector's frames (thread-safe).

    :meth:`new_file` composes the stream_resource of a new HDF5 file
    (:func:`event_model.compose_stream_resource`); it is emitted with the file's first frame, so
    a file that gets no frame gets no document. :meth:`add` records a frame once it is flushed
    to the file; :meth:`documents` (the device's ``collect_asset_docs``) announces every frame
    recorded since its last call in one stream_datum per file, ``indices`` = the frames'
    positions along axis 0 (the RunEngine fills ``descriptor`` and ``seq_nums``). Frames of a
    detector-timed sequence also become the events of :meth:`events` (``collect()``): exactly
    the frames announced so far, in order, so the events' seq_nums are the stream_datums'.
    """

    def __init__(self, data_key: str, time_key: str):
        self.data_key = data_key
        self.time_key = time_key
        self._lock = threading.Lock()
        self._bundle = None
        self._unannounced: set[str] = set()  # uids of stream_resources not emitted yet
        self._frames: list[tuple] = []  # (bundle, index, t_start, collected, readings), on disk, not announced
        self._events: deque = deque()

    def new_file(self, path, frame_shape) -> None:
        """Frames recorded from now on are in ``path`` (HDF5, :data:`FRAME_DATASET`)."""
        bundle = compose_stream_resource(
            mimetype=FRAME_MIMETYPE, uri=frame_uri(path), data_key=self.data_key,
            parameters={"dataset": FRAME_DATASET, "chunk_shape": [1, *map(int, frame_shape)]})
        with self._lock:
            self._bundle = bundle
            self._unannounced.add(bundle.stream_resource_doc["uid"])

    def add(self, index: int, t_start: float, *, collected: bool, readings: dict | None = None) -> None:
        """Frame ``index`` of the current file (start ``t_start``, epoch s) is on disk;
        ``collected``: it belongs to a detector-timed sequence (an event for ``collect()``, with
        ``readings``, data key -> value, beside the start time)."""
        with self._lock:
            if self._bundle is None:
                raise RuntimeError("FrameAssets.add before new_file")
            self._frames.append((self._bundle, int(index), float(t_start), collected, dict(readings or {})))

    def documents(self) -> Iterator[tuple[str, dict]]:
        """stream_resource (first time only) and stream_datum of the frames not yet announced."""
        with self._lock:
            frames, self._frames = self._frames, []
            docs = []
            for uid, group in itertools.groupby(frames, key=lambda f: f[0].stream_resource_doc["uid"]):
                group = list(group)
                bundle = group[0][0]
                if uid in self._unannounced:
                    self._unannounced.discard(uid)
                    docs.append(("stream_resource", bundle.stream_resource_doc))
                docs.append(("stream_datum", bundle.compose_stream_datum(
                    indices=StreamRange(start=group[0][1], stop=group[-1][1] + 1))))
                self._events.extend({"time": t, "data": {self.time_key: t, **readings},
                                     "timestamps": dict.fromkeys([self.time_key, *readings], t)}
                                    for _, _, t, collected, readings in group if collected)
        return iter(docs)

    def events(self) -> Iterator[dict]:
        """Events (frame start as time and value of the time key) of the announced sequence frames."""
        while self._events:
            yield self._events.popleft()

    def reset(self) -> None:
        """Forget everything not yet announced (a new staging)."""
        with self._lock:
            self._bundle = None
            self._unannounced.clear()
            self._frames.clear()
            self._events.clear()


class StreamImageSignal(Signal):
    """The frame data key ``<device>_image``: an external array (``external="STREAM:"``: the
    frames stay in HDF5, referenced by stream_datum documents), therefore absent from
    ``read()``. Its value is the last frame's index in its file (-1: none yet)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, value=-1, **kwargs)
        self.frame_shape: tuple[int, ...] = ()
        self.frame_dtype = "<u4"

    def read(self):
        return {}

    def describe(self):
        description = super().describe()
        description[self.name].update(dtype="array", shape=list(self.frame_shape),
                                      dtype_numpy=self.frame_dtype, external="STREAM:")
        return description


class FrameDetector(Device):
    """What both SAXS detectors share: the ``image`` (external) and ``frame_time`` readings,
    the asset documents (:class:`FrameAssets`) and the detector-timed sequence (flyer).

    Subclasses provide ``exposure_time`` (s), ``_start_sequence(start_times, exposure_s)`` —
    raises if the detector refuses, else returns an iterator that records one frame (with
    :meth:`_record`, ``collected=True``) per step — and ``_abort_sequence()`` (thread-safe).
    """

    image = Cpt(StreamImageSignal, kind="normal")
    frame_time = Cpt(Signal, value=math.nan, kind="normal")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._assets = FrameAssets(self.image.name, self.frame_time.name)
        self._sequence: tuple[list[float], float] | None = None
        self._sequence_thread: threading.Thread | None = None
        self._complete_status: Status | None = None

    def _record(self, index: int, t_start: float, *, collected: bool, readings: dict | None = None) -> None:
        """Frame ``index`` of the current file is on disk: its readings (``image``,
        ``frame_time`` and ``readings``, signal -> value, all stamped with the frame's start)
        and asset documents."""
        readings = readings or {}
        self.image.put(index, timestamp=t_start)
        self.frame_time.put(t_start, timestamp=t_start)
        for signal, value in readings.items():
            signal.put(value, timestamp=t_start)
        self._assets.add(index, t_start, collected=collected,
                         readings={signal.name: value for signal, value in readings.items()})

    def collect_asset_docs(self):
        """stream_resource / stream_datum documents of the frames written since the last call."""
        yield from self._assets.documents()

    def prepare_sequence(self, start_times, exposure_s: float | None = None) -> None:
        """Set the absolute frame start times (epoch s) of the next :meth:`kickoff`.

        ``exposure_s`` defaults to ``exposure_time``; the times must increase by at least it.
        """
        times = np.asarray(start_times, dtype=float)
        exposure = checked_exposure(self.exposure_time.get() if exposure_s is None else exposure_s)
        if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
            raise ValueError(f"start_times must be a non-empty 1-D array of finite epoch seconds, "
                             f"got {np.asarray(start_times)!r:.80}")
        steps = np.diff(times)
        if steps.size and steps.min() < exposure:
            raise ValueError(f"start_times must increase by at least exposure_s={exposure} s, "
                             f"smallest step {steps.min()!r} s")
        self._sequence = (times.tolist(), exposure)

    def prepare(self, start_times) -> Status:
        """Bluesky's Preparable interface (``bps.prepare(detector, start_times)``): the frame
        start times (epoch s) of the next :meth:`kickoff`, checked as by :meth:`prepare_sequence`;
        the Status is finished at once (the sequence is loaded into the IOC at kickoff)."""
        self.prepare_sequence(start_times)
        status = Status(obj=self)
        status.set_finished()
        return status

    def kickoff(self):
        """Start the prepared sequence (``_start_sequence`` is called here: it arms the
        detector); Status done when the detector has accepted it."""
        if self._sequence is None:
            raise DetectorError(f"{self.name}: call prepare_sequence(start_times) before kickoff()")
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is already running")
        start_times, exposure = self._sequence
        kickoff_status = DeviceStatus(self)
        complete_status = DeviceStatus(self)
        self._complete_status = complete_status

        try:  # here, in the RunEngine's call: a simulated clock holds still while it arms
            frames = self._start_sequence(start_times, exposure)
        except Exception as error:
            kickoff_status.set_exception(error)
            complete_status.set_exception(error)
            return kickoff_status
        kickoff_status.set_finished()

        def run():
            try:
                written = sum(1 for _ in frames)
                if written < len(start_times):
                    raise DetectorError(f"{self.name}: sequence ended after {written} of "
                                        f"{len(start_times)} frames (aborted)")
            except Exception as error:
                complete_status.set_exception(error)
            else:
                complete_status.set_finished()

        self._sequence_thread = threading.Thread(target=run, name=f"{self.name}-sequence", daemon=True)
        self._sequence_thread.start()
        return kickoff_status

    def complete(self):
        """Status that finishes when the last frame of the sequence is written."""
        if self._complete_status is None:
            raise DetectorError(f"{self.name}: complete() called before kickoff()")
        return self._complete_status

    def describe_collect(self):
        """The data keys of the collected events, those of a triggered frame (one stream:
        declare it, see module docstring)."""
        return self.describe()

    def collect(self):
        """One event per frame announced by the last ``collect_asset_docs``, timed by its start."""
        yield from self._assets.events()

    def stop(self, *, success: bool = False):
        self._end_sequence(wait=False)
        super().stop(success=success)

    def _sequence_running(self) -> bool:
        return self._sequence_thread is not None and self._sequence_thread.is_alive()

    def _end_sequence(self, wait: bool = True) -> None:
        if self._sequence_running():
            self._abort_sequence()
            if wait:
                self._sequence_thread.join()

    def _start_sequence(self, start_times: list[float], exposure_s: float) -> Iterator[None]:
        raise NotImplementedError

    def _abort_sequence(self) -> None:
        raise NotImplementedError


def checked_exposure(value) -> float:
    """``value`` as an exposure time (s); ValueError unless a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"exposure_s must be a positive finite number, got {value!r}")
    return float(value)
