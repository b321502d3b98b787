"""The SAXS area detector (seed 000 §S.1.4): ophyd devices and their back-ends.

:class:`SAXSDetector` is the detector the plans use. It acquires through a
:class:`DetectorBackend` — :class:`SimulatedBackend` speaks the TCP protocol of
``ncsynth.simulators.detector`` (``docs/protocols.md``, "SAXS detector simulator (TCP)")
whether the simulator runs in this process or in ``ncsynth sim serve`` — and writes every
frame to HDF5 itself, one file per stage (``/entry/data/data``, frames along axis 0, the
file flushed after every frame so a killed process keeps every frame written).

Two ways to acquire:

* software-triggered: one ``trigger()`` per frame; the Status finishes when the frame is on
  disk;
* detector-timed: ``prepare_sequence(start_times)`` with absolute frame start times (epoch s),
  then the flyer methods ``kickoff`` / ``complete`` / ``collect``: the detector keeps the
  schedule, not the RunEngine (the §S.1.4 schedule ``t_i + t_w·1.015^(n-1)``). The plan
  declares the stream first and names it when collecting::

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

:class:`~ncsynth.devices.area_detector.AreaDetectorSAXS` is the same user-facing detector on
an EPICS areaDetector IOC (cam + HDF5 plugin).
"""

from __future__ import annotations

import abc
import itertools
import json
import math
import os
import re
import socket
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import h5py
import numpy as np
from event_model import StreamRange, compose_stream_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus, Status

from ncsynth import timebase
from . import background
from ncsynth.analysis.geometry import DetectorGeometry

#: Default exposure (seed 000 §S.1.4: integration time 75 ms).
DEFAULT_EXPOSURE_S = 0.075
#: Mimetype of the frame files in the stream_resource documents.
FRAME_MIMETYPE = "application/x-hdf5"
#: Frames inside each HDF5 file.
FRAME_DATASET = "/entry/data/data"
#: Frame start times (epoch s) inside each HDF5 file, one per frame.
START_TIME_DATASET = "/entry/data/t_start"
_MAX_HEADER_BYTES = 1 << 16


class DetectorError(RuntimeError):
    """The detector refused a request or the link to it failed."""


def _write_failure(error: Exception) -> str:
    """The cause of a failed frame write in a few words ("No space left on device"):
    the OS's message for an errno, else HDF5's own "error message = '...'", else the
    first line of the error."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    found = re.search(r"error message = '([^']*)'", str(error))
    return found.group(1) if found else str(error).splitlines()[0]


@dataclass(frozen=True)
class Frame:
    """One exposure: counts (rows × columns), start time (epoch s), exposure (s), frame number."""

    data: np.ndarray
    t_start: float
    exposure_s: float
    frame_number: int


class DetectorBackend(abc.ABC):
    """What :class:`SAXSDetector` needs from the camera behind it."""

    @abc.abstractmethod
    def info(self) -> dict:
        """Detector description: at least ``shape`` and ``dtype``; ``geometry`` and calibration if known."""

    @abc.abstractmethod
    def acquire(self, exposure_s: float,
                on_start: Callable[[float | None], None] | None = None) -> Frame:
        """Expose one frame starting now; block until it is read out.

        ``on_start(t_start)`` is called once the detector has confirmed that the exposure
        has begun (epoch s), or ``on_start(None)`` if the acquisition failed before that.
        """

    @abc.abstractmethod
    def sequence(self, start_times: list[float], exposure_s: float) -> Iterator[Frame]:
        """Start a detector-timed sequence; return an iterator over its frames as they arrive.

        Raises before returning if the detector refuses the sequence.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """End a running acquisition or sequence early (thread-safe)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""


class SimulatedBackend(DetectorBackend):
    """Client of the detector simulator's TCP protocol at ``url`` (``socket://host:port``).

    ``timeout_s`` (wall time) bounds every reply, plus the exposure for ``ACQUIRE``; frames of a
    sequence may be far apart and are waited for without a time-out (``abort`` ends the wait).
    Any protocol or link error drops the connection; the next request reconnects.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "socket" or not parts.hostname or parts.port is None:
            raise ValueError(f"url must look like 'socket://host:port', got {url!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self.url = url
        self.address = (parts.hostname, parts.port)
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()  # one request at a time on the connection
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._rfile = None
        self._aborting = threading.Event()

    # -- DetectorBackend -----------------------------------------------------------------
    def info(self) -> dict:
        with self._lock:
            header, _ = self._request("INFO?", expect={"info"}, timeout_s=self.timeout_s)
        return header

    def acquire(self, exposure_s: float,
                on_start: Callable[[float | None], None] | None = None) -> Frame:
        _check_exposure(exposure_s)
        pending = [on_start] if on_start is not None else []
        try:
            with self._lock:
                self._aborting.clear()
                started, _ = self._request(f"ACQUIRE {float(exposure_s)!r}", expect={"started"},
                                           timeout_s=self.timeout_s)
                while pending:
                    pending.pop()(float(started["t_start"]))
                header, data = self._reply({"frame"}, timeout_s=self.timeout_s + exposure_s)
        finally:
            while pending:  # failed before the start
                pending.pop()(None)
        return _frame(header, data)

    def sequence(self, start_times: list[float], exposure_s: float) -> Iterator[Frame]:
        _check_exposure(exposure_s)
        request = json.dumps({"start_times": [float(t) for t in start_times], "exposure_s": float(exposure_s)})
        self._lock.acquire()
        try:
            self._aborting.clear()
            self._request(f"SEQUENCE {request}", expect={"sequence"}, timeout_s=self.timeout_s)
        except BaseException:
            self._lock.release()
            raise
        frames = self._stream_sequence()
        next(frames)  # enter its try/finally: closing the iterator releases the connection
        return frames

    def abort(self) -> None:
        """Send ``ABORT``; if the detector does not end the sequence within ``timeout_s``, hang up."""
        self._aborting.set()
        sock = self._sock
        if sock is None:
            return
        try:
            with self._send_lock:
                sock.sendall(b"ABORT\n")
        except OSError:
            pass
        timer = threading.Timer(self.timeout_s, self._hang_up_if_aborting, args=(sock,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self._aborting.set()
        self._disconnect()

    # -- connection ----------------------------------------------------------------------
    def _request(self, line: str, expect: set[str], timeout_s: float | None):
        try:
            if self._sock is None:
                self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._rfile = self._sock.makefile("rb")
            with self._send_lock:
                self._sock.sendall(line.encode("ascii") + b"\n")
        except OSError as error:
            self._disconnect()
            raise DetectorError(f"detector at {self.url}: {error}") from error
        return self._reply(expect, timeout_s, line)

    def _reply(self, expect: set[str], timeout_s: float | None, request: str = "ACQUIRE"):
        """The next reply of a kind in ``expect`` within ``timeout_s`` (wall s), as
        :meth:`_receive`; a refusal or a broken link raises :class:`DetectorError`."""
        try:
            self._sock.settimeout(timeout_s)
            return self._receive(expect)
        except _Refused as refusal:
            raise DetectorError(f"detector at {self.url} refused {request[:40]!r}: {refusal}") from None
        except (OSError, ValueError) as error:
            self._disconnect()
            raise DetectorError(f"detector at {self.url}: {error}") from error

    def _receive(self, expect: set[str]):
        """(header, payload) of the next message other than an ABORT acknowledgement.

        ``error`` replies raise :class:`_Refused`; damaged or unexpected ones ValueError.
        """
        while True:
            line = self._rfile.readline(_MAX_HEADER_BYTES)
            if not line:
                raise ConnectionError("connection closed by the detector")
            try:
                header = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"garbled reply header {line[:80]!r}") from None
            kind = header.get("type") if isinstance(header, dict) else None
            if kind == "ok":
                continue
            if kind == "error":
                raise _Refused(header.get("message", "unspecified error"))
            if kind not in expect:
                raise ValueError(f"expected one of {sorted(expect)}, got {line[:80]!r}")
            data = None
            if kind == "frame":
                data = self._rfile.read(header["nbytes"])
                if len(data) != header["nbytes"] or zlib.crc32(data) != header["crc32"]:
                    raise ValueError(f"frame {header.get('frame_number')} arrived damaged")
            return header, data

    def _stream_sequence(self) -> Iterator[Frame | None]:
        """Frames of the running sequence; the first ``next`` only primes it (yields None)."""
        try:
            yield None
            while True:
                try:
                    self._sock.settimeout(None)
                    header, data = self._receive({"frame", "done"})
                except _Refused as refusal:
                    raise DetectorError(f"detector at {self.url} ended the sequence: {refusal}") from None
                except (OSError, ValueError) as error:
                    self._disconnect()
                    if self._aborting.is_set():
                        return
                    raise DetectorError(f"detector at {self.url}: {error}") from error
                if header["type"] == "done":
                    return
                yield _frame(header, data)
        finally:
            self._lock.release()

    def _hang_up_if_aborting(self, sock) -> None:
        if self._aborting.is_set() and self._sock is sock and self._lock.locked():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class _Refused(ValueError):
    """An ``error`` reply: the link is fine, the request was refused."""


def _frame(header: dict, data: bytes) -> Frame:
    array = np.frombuffer(data, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
    return Frame(array, float(header["t_start"]), float(header["exposure_s"]), int(header["frame_number"]))


def _check_exposure(exposure_s) -> None:
    if isinstance(exposure_s, bool) or not isinstance(exposure_s, (int, float)) \
            or not (math.isfinite(exposure_s) and exposure_s > 0):
        raise ValueError(f"exposure_s must be a positive finite number, got {exposure_s!r}")


class FrameFileWriter:
    """One HDF5 file of frames: ``/entry/data/data`` (n, rows, cols) and ``/entry/data/t_start`` (n,).

    Opened in SWMR mode (readers may follow the file live) and flushed after every frame.
    """

    def __init__(self, path: Path, shape: tuple[int, int], dtype: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w", libver="latest")
        entry = self._file.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        group = entry.create_group("data")
        group.attrs.update(NX_class="NXdata", signal="data")
        self._frames = group.create_dataset("data", shape=(0, *shape), maxshape=(None, *shape),
                                            dtype=dtype, chunks=(1, *shape))
        self._times = group.create_dataset("t_start", shape=(0,), maxshape=(None,), dtype="<f8",
                                           chunks=(1024,))
        self._times.attrs["units"] = "s since the epoch"
        self._file.swmr_mode = True
        self.count = 0

    def append(self, data: np.ndarray, t_start: float) -> int:
        """Write one frame; return its index along axis 0."""
        index = self.count
        self._frames.resize(index + 1, axis=0)
        self._frames[index] = data
        self._times.resize(index + 1, axis=0)
        self._times[index] = t_start
        self._file.flush()
        self.count += 1
        return index

    def close(self) -> None:
        self._file.close()


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

    def kickoff(self):
        """Start the prepared sequence; Status done when the detector has accepted it."""
        if self._sequence is None:
            raise DetectorError(f"{self.name}: call prepare_sequence(start_times) before kickoff()")
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is already running")
        start_times, exposure = self._sequence
        kickoff_status = DeviceStatus(self)
        complete_status = DeviceStatus(self)
        self._complete_status = complete_status

        def run():
            try:
                frames = self._start_sequence(start_times, exposure)
            except Exception as error:
                kickoff_status.set_exception(error)
                complete_status.set_exception(error)
                return
            kickoff_status.set_finished()
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


class SAXSDetector(FrameDetector):
    """SAXS area detector writing HDF5 through a :class:`DetectorBackend` (see module docstring).

    Parameters
    ----------
    backend : e.g. ``SimulatedBackend("socket://127.0.0.1:PORT")``.
    write_root : directory under which ``YYYY/MM/DD/<uuid>.h5`` files are written.
    name : ophyd name; the data keys are ``<name>_image`` (external) and ``<name>_frame_time``.

    Components: ``image`` (the frame, external), ``frame_time`` (frame start, epoch s),
    ``exposure_time`` (s, default 0.075), and read-only configuration from the detector:
    ``geometry_json``, ``flux_ph_per_s``, ``transmission``, ``thickness_cm`` (the calibration
    of absolute intensities).
    """

    exposure_time = Cpt(Signal, value=DEFAULT_EXPOSURE_S, kind="config")
    geometry_json = Cpt(Signal, value="", kind="config")
    flux_ph_per_s = Cpt(Signal, value=float("nan"), kind="config")
    transmission = Cpt(Signal, value=float("nan"), kind="config")
    thickness_cm = Cpt(Signal, value=float("nan"), kind="config")

    def __init__(self, backend: DetectorBackend, *, write_root, name: str, **kwargs):
        if not isinstance(backend, DetectorBackend):
            raise TypeError(f"backend must be a DetectorBackend, got {type(backend).__name__}")
        super().__init__(name=name, **kwargs)
        self.backend = backend
        self.write_root = Path(write_root)
        self._info: dict | None = None
        self._file_lock = threading.RLock()
        self._writer: FrameFileWriter | None = None
        self.last_frame: Frame | None = None

    # -- detector description ----------------------------------------------------------------
    def _ensure_info(self) -> dict:
        if self._info is None:
            info = self.backend.info()
            self.image.frame_shape = tuple(info["shape"])
            self.image.frame_dtype = info["dtype"]
            if "geometry" in info:
                self.geometry_json.put(json.dumps(info["geometry"], sort_keys=True))
            for key in ("flux_ph_per_s", "transmission", "thickness_cm"):
                if key in info:
                    getattr(self, key).put(float(info[key]))
            self._info = info
        return self._info

    @property
    def detector_geometry(self) -> DetectorGeometry:
        """The detector's geometry (from its ``INFO?`` reply) for the reduction."""
        info = self._ensure_info()
        if "geometry" not in info:
            raise DetectorError(f"{self.name}: the detector does not report its geometry")
        return DetectorGeometry.from_dict(info["geometry"])

    def describe(self):
        self._ensure_info()
        return super().describe()

    def describe_configuration(self):
        self._ensure_info()
        return super().describe_configuration()

    def read_configuration(self):
        self._ensure_info()
        return super().read_configuration()

    # -- staging and files ------------------------------------------------------------------
    def stage(self):
        self._ensure_info()
        staged = super().stage()
        with self._file_lock:
            self._close_file()
            self._assets.reset()
            self._open_file()
        return staged

    def unstage(self):
        self._end_sequence()
        with self._file_lock:
            self._close_file()
        return super().unstage()

    @property
    def file_path(self) -> Path | None:
        """HDF5 file being written, if any."""
        return None if self._writer is None else self._writer.path

    def _open_file(self) -> None:
        today = datetime.fromtimestamp(timebase.now(), tz=timezone.utc)
        path = self.write_root / today.strftime("%Y/%m/%d") / f"{uuid.uuid4()}.h5"
        self._writer = FrameFileWriter(path, self.image.frame_shape, self.image.frame_dtype)
        self._assets.new_file(path, self.image.frame_shape)

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _store(self, frame: Frame, *, collected: bool) -> None:
        """Write ``frame`` to the file (flushed), then record it for the asset documents."""
        with self._file_lock:
            if self._writer is None:
                self._ensure_info()
                self._open_file()
            try:
                index = self._writer.append(frame.data, frame.t_start)
            except (OSError, RuntimeError) as error:  # h5py reports a failed write as either
                raise DetectorError(f"{self.name}: frame not stored in {self._writer.path}: "
                                    f"{_write_failure(error)}") from error
            self._record(index, frame.t_start, collected=collected)
        self.last_frame = frame

    # -- software trigger -------------------------------------------------------------------
    def trigger(self):
        """Expose one frame now; the Status finishes once it is written to HDF5."""
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is running")
        exposure = checked_exposure(self.exposure_time.get())
        self._ensure_info()
        status = DeviceStatus(self)
        # A jumping clock must not move before the exposure has begun (the RunEngine waits
        # on this Status, releasing its own hold, before the request has even reached the
        # detector), nor past its end until the frame is stored and the Status finished.
        release = timebase.hold()
        barriers = []

        def started(t_start: float | None) -> None:
            if t_start is not None:
                barriers.append(timebase.barrier(t_start + exposure))
            release()

        def expose():
            try:
                frame = self.backend.acquire(exposure, on_start=started)
                with timebase.busy():
                    self._store(frame, collected=False)
            except Exception as error:
                status.set_exception(error)
            else:
                status.set_finished()
            finally:
                release()
                for passed in barriers:
                    passed()

        background.run(expose, name=f"{self.name}-trigger")
        return status

    # -- detector-timed sequence ------------------------------------------------------------
    def _start_sequence(self, start_times, exposure_s):
        self._ensure_info()
        return self._store_each(self.backend.sequence(start_times, exposure_s))

    def _store_each(self, frames) -> Iterator[None]:
        try:
            for frame in frames:
                self._store(frame, collected=True)
                yield
        finally:
            frames.close()  # releases the backend's connection

    def _abort_sequence(self) -> None:
        self.backend.abort()


def checked_exposure(value) -> float:
    _check_exposure(value)
    return float(value)
