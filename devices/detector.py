"""The SAXS area detector (seed 000 §S.1.4): ophyd devices and their back-ends.

:class:`SAXSDetector` is the detector the plans use. It acquires through a
:class:`DetectorBackend` — :class:`SimulatedBackend` speaks the TCP protocol of
``ncsynth.simulators.detector`` (``docs/protocols.md``, "SAXS detector simulator (TCP)")
whether the simulator runs in this process or in ``ncsynth sim serve`` — and writes every
frame to HDF5 itself, one file per stage (``/entry/data/data``, frames along axis 0, the
file flushed after every frame so a killed process keeps every frame written).

Two ways to acquire:

* software-triggered: one :meth:`SAXSDetector.trigger` per frame; the Status finishes when
  the frame is on disk;
* detector-timed: :meth:`SAXSDetector.prepare_sequence` with absolute frame start times
  (epoch s), then the flyer methods ``kickoff`` / ``complete`` / ``collect``: the detector
  keeps the schedule, not the RunEngine (the §S.1.4 schedule ``t_i + t_w·1.015^(n-1)``).

Every reading and every collected event carries the frame's own start time (reported by
the detector), not the time of ``read()``.

Assets: legacy Resource/Datum documents with spec ``AD_HDF5`` (resource_kwargs
``{"frame_per_point": 1}``, datum_kwargs ``{"point_number": i}``) — what ophyd's
areaDetector HDF5 plugin (:class:`AreaDetectorSAXS`) emits too, and what
``bluesky_tiled_plugins.TiledWriter`` converts to StreamResource/StreamDatum
(mimetype ``application/x-hdf5``, dataset ``/entry/data/data``).

:class:`AreaDetectorSAXS` is the same user-facing detector on an EPICS areaDetector IOC
(cam + HDF5 plugin) for a hutch that runs one.
"""

from __future__ import annotations

import abc
import json
import math
import socket
import threading
import uuid
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import h5py
import numpy as np
from event_model import compose_resource
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.areadetector import DetectorBase, SingleTrigger
from ophyd.areadetector.cam import AreaDetectorCam
from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
from ophyd.areadetector.plugins import HDF5Plugin
from ophyd.signal import DerivedSignal
from ophyd.status import DeviceStatus, Status

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry

#: Default exposure (seed 000 §S.1.4: integration time 75 ms).
DEFAULT_EXPOSURE_S = 0.075
#: Asset spec of the frames (see module docstring).
ASSET_SPEC = "AD_HDF5"
#: Frames inside each HDF5 file.
FRAME_DATASET = "/entry/data/data"
#: Frame start times (epoch s) inside each HDF5 file, one per frame.
START_TIME_DATASET = "/entry/data/t_start"
_MAX_HEADER_BYTES = 1 << 16


class DetectorError(RuntimeError):
    """The detector refused a request or the link to it failed."""


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
    def acquire(self, exposure_s: float) -> Frame:
        """Expose one frame starting now; block until it is read out."""

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

    def acquire(self, exposure_s: float) -> Frame:
        _check_exposure(exposure_s)
        with self._lock:
            self._aborting.clear()
            header, data = self._request(f"ACQUIRE {float(exposure_s)!r}", expect={"frame"},
                                         timeout_s=self.timeout_s + exposure_s)
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
            self._sock.settimeout(timeout_s)
            with self._send_lock:
                self._sock.sendall(line.encode("ascii") + b"\n")
            return self._receive(expect)
        except _Refused as refusal:
            raise DetectorError(f"detector at {self.url} refused {line[:40]!r}: {refusal}") from None
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


class ExternalFrameSignal(Signal):
    """Holds the datum id of the last frame; described as an external (FILESTORE) array."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, value="", **kwargs)
        self.frame_shape: tuple[int, ...] = ()
        self.frame_dtype = "<u4"

    def describe(self):
        description = super().describe()
        description[self.name].update(dtype="array", shape=list(self.frame_shape),
                                      dtype_numpy=self.frame_dtype, external="FILESTORE:")
        return description


class SAXSDetector(Device):
    """SAXS area detector writing HDF5 through a :class:`DetectorBackend` (see module docstring).

    Parameters
    ----------
    backend : e.g. ``SimulatedBackend("socket://127.0.0.1:PORT")``.
    write_root : directory under which ``YYYY/MM/DD/<uuid>.h5`` files are written
        (the Resource ``root``).
    name : ophyd name; the frame data key is ``<name>_image``.
    stream_name : event stream of the detector-timed sequences (flyer ``collect``).

    Components: ``image`` (the frame, external), ``exposure_time`` (s, default 0.075), and
    read-only configuration from the detector: ``geometry_json``, ``flux_ph_per_s``,
    ``transmission``, ``thickness_cm`` (the calibration of absolute intensities).
    """

    image = Cpt(ExternalFrameSignal, kind="normal")
    exposure_time = Cpt(Signal, value=DEFAULT_EXPOSURE_S, kind="config")
    geometry_json = Cpt(Signal, value="", kind="config")
    flux_ph_per_s = Cpt(Signal, value=float("nan"), kind="config")
    transmission = Cpt(Signal, value=float("nan"), kind="config")
    thickness_cm = Cpt(Signal, value=float("nan"), kind="config")

    def __init__(self, backend: DetectorBackend, *, write_root, name: str,
                 stream_name: str = "primary", **kwargs):
        if not isinstance(backend, DetectorBackend):
            raise TypeError(f"backend must be a DetectorBackend, got {type(backend).__name__}")
        if not isinstance(stream_name, str) or not stream_name:
            raise ValueError(f"stream_name must be a non-empty string, got {stream_name!r}")
        super().__init__(name=name, **kwargs)
        self.backend = backend
        self.write_root = Path(write_root)
        self.stream_name = stream_name
        self._info: dict | None = None
        self._file_lock = threading.RLock()
        self._writer: FrameFileWriter | None = None
        self._compose_datum = None
        self._asset_docs: deque = deque()
        self._collected: deque = deque()
        self._sequence: tuple[list[float], float] | None = None
        self._sequence_thread: threading.Thread | None = None
        self._complete_status: Status | None = None
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
        relative = Path(today.strftime("%Y/%m/%d")) / f"{uuid.uuid4()}.h5"
        self._writer = FrameFileWriter(self.write_root / relative, self.image.frame_shape,
                                       self.image.frame_dtype)
        bundle = compose_resource(spec=ASSET_SPEC, root=str(self.write_root),
                                  resource_path=relative.as_posix(),
                                  resource_kwargs={"frame_per_point": 1})
        self._compose_datum = bundle.compose_datum
        self._asset_docs.append(("resource", bundle.resource_doc))

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._compose_datum = None

    def _store(self, frame: Frame) -> str:
        """Write ``frame`` to the file, queue its Datum; return the datum id."""
        with self._file_lock:
            if self._writer is None:
                self._ensure_info()
                self._open_file()
            index = self._writer.append(frame.data, frame.t_start)
            datum = self._compose_datum(datum_kwargs={"point_number": index})
            self._asset_docs.append(("datum", datum))
        self.last_frame = frame
        return datum["datum_id"]

    def collect_asset_docs(self):
        """Resource and Datum documents not yet handed to the RunEngine."""
        while self._asset_docs:
            yield self._asset_docs.popleft()

    # -- software trigger -------------------------------------------------------------------
    def trigger(self):
        """Expose one frame now; the Status finishes once it is written to HDF5."""
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is running")
        exposure = _checked_exposure(self.exposure_time.get())
        self._ensure_info()
        status = DeviceStatus(self)

        def expose():
            try:
                frame = self.backend.acquire(exposure)
                with timebase.busy():
                    datum_id = self._store(frame)
                    self.image.put(datum_id, timestamp=frame.t_start)
            except Exception as error:
                status.set_exception(error)
            else:
                status.set_finished()

        threading.Thread(target=expose, name=f"{self.name}-trigger", daemon=True).start()
        return status

    # -- detector-timed sequence (flyer) ----------------------------------------------------------
    def prepare_sequence(self, start_times, exposure_s: float | None = None) -> None:
        """Set the absolute frame start times (epoch s) of the next :meth:`kickoff`.

        ``exposure_s`` defaults to ``exposure_time``; the times must increase by at least it.
        """
        times = np.asarray(start_times, dtype=float)
        exposure = _checked_exposure(self.exposure_time.get() if exposure_s is None else exposure_s)
        if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
            raise ValueError(f"start_times must be a non-empty 1-D array of finite epoch seconds, "
                             f"got {np.asarray(start_times)!r:.80}")
        steps = np.diff(times)
        if steps.size and steps.min() < exposure:
            raise ValueError(f"start_times must increase by at least exposure_s={exposure} s, "
                             f"smallest step {steps.min()!r} s")
        self._sequence = (times.tolist(), exposure)

    def kickoff(self):
        """Hand the prepared start times to the detector; Status done when it has accepted them."""
        if self._sequence is None:
            raise DetectorError(f"{self.name}: call prepare_sequence(start_times) before kickoff()")
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is already running")
        self._ensure_info()
        start_times, exposure = self._sequence
        kickoff_status = DeviceStatus(self)
        complete_status = DeviceStatus(self)
        self._complete_status = complete_status

        def run():
            try:
                frames = self.backend.sequence(start_times, exposure)
            except Exception as error:
                kickoff_status.set_exception(error)
                complete_status.set_exception(error)
                return
            kickoff_status.set_finished()
            written = 0
            try:
                for frame in frames:
                    datum_id = self._store(frame)
                    self._collected.append({"time": frame.t_start,
                                            "data": {self.image.name: datum_id},
                                            "timestamps": {self.image.name: frame.t_start}})
                    written += 1
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
        return {self.stream_name: {self.image.name: self.describe()[self.image.name]}}

    def collect(self):
        """One event per frame written since the last collect, timed by the frame start."""
        while self._collected:
            yield self._collected.popleft()

    def stop(self, *, success: bool = False):
        self._end_sequence(wait=False)
        super().stop(success=success)

    def _sequence_running(self) -> bool:
        return self._sequence_thread is not None and self._sequence_thread.is_alive()

    def _end_sequence(self, wait: bool = True) -> None:
        if self._sequence_running():
            self.backend.abort()
            if wait:
                self._sequence_thread.join()


def _checked_exposure(value) -> float:
    _check_exposure(value)
    return float(value)


class SAXSHDF5Plugin(HDF5Plugin, FileStoreHDF5IterativeWrite):
    """areaDetector HDF5 plugin emitting ``AD_HDF5`` Resource/Datum documents."""


class AreaDetectorSAXS(SingleTrigger, DetectorBase):
    """The SAXS detector on an EPICS areaDetector IOC (e.g. ADRayonix): cam + HDF5 plugin.

    Same user-facing interface as :class:`SAXSDetector` for software-triggered frames:
    ``exposure_time`` (writes ``cam.acquire_time``), ``trigger``/``read``, HDF5 files with
    ``AD_HDF5`` assets; one frame per trigger (``cam.num_images = 1``). Detector-timed
    sequences need the beamline's hardware trigger and are not provided here.

    ``write_path_template`` / ``read_path_template``: directories as seen by the IOC and by
    this process (strftime templates); ``root``: the part of ``read_path_template`` that is
    the Resource root.
    """

    cam = Cpt(AreaDetectorCam, "cam1:")
    hdf5 = Cpt(SAXSHDF5Plugin, "HDF1:", write_path_template="/", read_path_template="/", root="/")
    exposure_time = Cpt(DerivedSignal, derived_from="cam.acquire_time", kind="config")

    def __init__(self, prefix: str, *, name: str, write_path_template: str,
                 read_path_template: str | None = None, root: str = "/", **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.hdf5.write_path_template = write_path_template
        self.hdf5.read_path_template = read_path_template or write_path_template
        self.hdf5.reg_root = root
        self.hdf5.kind = "normal"
        self.stage_sigs.update({"cam.num_images": 1, "cam.trigger_mode": 0})
