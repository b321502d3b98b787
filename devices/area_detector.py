"""The SAXS detector on an EPICS areaDetector IOC (cam + HDF5 file plugin), over Channel Access.

:class:`AreaDetectorSAXS` is the user-facing detector of :mod:`ncsynth.devices.detector`
(``exposure_time``, ``trigger``/``read``, ``prepare_sequence``/``kickoff``/``complete``/
``collect``, the same StreamResource/StreamDatum documents) on the beamline's own IOC, e.g.
ADRayonix at ID02, or the simulated IOC of :mod:`ncsynth.simulators.area_detector`.

Calibration (seed 000 §S.2.1) is configuration, read by the live analysis from the
descriptor: ``geometry_json`` (a :class:`~ncsynth.analysis.geometry.DetectorGeometry`, e.g.
from the beamline's pyFAI PONI and mask files, :mod:`ncsynth.analysis.calibration_files`),
``thickness_cm`` (sample path, cm), ``calibration`` (K = Φ·T·ΔΩ_ref, counts/s per unit I·d,
if the beamline gives it; NaN otherwise) and ``flux_ph_per_s`` / ``transmission``, read at
every stage from the two beam-monitor PVs (incident and transmitted flux, photons/s;
transmission = transmitted / incident), from which the analysis computes K when
``calibration`` is NaN, with ``reference_solid_angle_sr`` (and its ``_err_sr``) as a water
standard measured it if given (:mod:`ncsynth.analysis.water_standard`; NaN: the geometry's).
Without monitor PVs both stay NaN.

Beam monitors per frame: with monitor PVs, every frame's event also carries
``<name>_incident_flux`` and ``<name>_transmitted_flux`` (photons/s), the monitors' values
when the cam reported the exposure ended (its ``ArrayCounter``; Channel Access monitors are
delivered in the order the IOC posted them: an IOC that posts its monitors before counting
the frame, as the simulated one does, gives the values of that exposure, also when the HDF5
plugin writes a frame only after the next one has ended).

Modules beside this one: :mod:`.frames_in_flight` (the frames between start and file),
:mod:`.area_detector_sequences` (detector-timed sequences, kept by the timing system's
:mod:`.trigger_sequencer` or by this computer), :mod:`.channel_access` (time-outs and channel
clean-up of the process's EPICS signals).

Which address is asked: Channel Access finds the IOC through the client environment
(``EPICS_CA_ADDR_LIST``, ``EPICS_CA_AUTO_ADDR_LIST``), set by the beamline at the hutch and
by the dry run for the simulated IOC on the loopback (README, "Pointing at a real IOC").
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from ophyd import Component as Cpt
from ophyd import EpicsSignalRO, Signal
from ophyd.areadetector import DetectorBase
from ophyd.areadetector.cam import AreaDetectorCam
from ophyd.areadetector.plugins import HDF5Plugin_V34
from ophyd.device import Staged
from ophyd.signal import DerivedSignal

from ncsynth import caproto_environment, timebase
from ncsynth.config_schema import FRAME_COMPRESSIONS as COMPRESSIONS
from ncsynth.errors import first_line
from . import background
from .channel_access import CONNECTION_TIMEOUT_S, drain_utility_threads, forget_staging, patient_channel_access
from .detector import DetectorError, FrameDetector, checked_exposure
from .frames_in_flight import FramesInFlight, PendingFrame
from .area_detector_sequences import AreaDetectorSequences
from .trigger_sequencer import TriggerSequencer

caproto_environment.install()  # caproto's search thread dies if os.environ changes under it

logger = logging.getLogger(__name__)

#: The HDF5 plugin's Blosc settings with ``compression = "Blosc"``: zstd at level 3 on
#: byte-shuffled words, ~3.6 ms and 242 kB a default frame (3.8x smaller than raw; the default,
#: BSLZ4, 1.9 ms and 270 kB: benchmarks/frame_compression.py).
BLOSC_SETTINGS = (("blosc_compressor", "zstd"), ("blosc_level", 3), ("blosc_shuffle", "ByteShuffle"))


class AreaDetectorSAXS(AreaDetectorSequences, FrameDetector, DetectorBase):
    """The SAXS detector on an EPICS areaDetector IOC (see module docstring).

    Each stage makes the HDF5 plugin write one file, ``<write_path_template>/<uuid>.h5``
    (``Stream`` mode, SWMR on, flushed every frame, frames compressed as ``compression`` says:
    one of the plugin's lossless ``Compression`` choices, :data:`COMPRESSIONS`, by default
    ``"BSLZ4"``, ``"Blosc"`` with :data:`BLOSC_SETTINGS`; all but ``zlib`` need ``import hdf5plugin`` in the readers);
    ``read_path_template`` is where this
    process sees it (default: the same). Both are strftime templates. The plugin must have
    seen one frame of the current size before staging (ophyd refuses an "unprimed" HDF5
    plugin). A frame counts as written — its stream_datum may be emitted, its Status
    finishes — when the plugin's ``NumCaptured`` reaches it, at most ``exposure_time +
    timeout_s`` (wall s) after the exposure started; else the Status fails naming the device
    and, when the plugin's ``WriteStatus`` says Error, its ``WriteMessage`` (a full disk).

    Frame timing. A software-triggered frame is one image per exposure (``ImageMode`` Multiple,
    ``NumImages`` 1, internal trigger), started by writing ``cam.acquire``; its time is the
    clock's when ``acquire`` was written. An EPICS area detector cannot take a list of
    arbitrary start times, and the §S.1.4 schedule is geometric, not evenly spaced (which
    ``ImageMode`` Multiple with ``AcquirePeriod`` would give). With ``sequencer`` (the PV
    prefix of the timing system's pulse sequencer, :mod:`.trigger_sequencer`), the
    detector-timed sequence is kept by the hardware: the cam is armed for ``NumImages`` = n
    externally triggered images (``TriggerMode`` External), the sequencer loaded with the n
    start times and armed, and each frame's time is its start as the IOC stamped it (the HDF5
    plugin's ``TimeStamp_RBV``, s after the EPICS epoch, posted before its ``NumCaptured``);
    a frame not written within ``timeout_s`` after its scheduled end fails the sequence.
    Start times passed (or within :data:`~.area_detector_sequences.ARMING_S`) at kickoff move
    on and catch up in the dead times; a trigger that comes while the cam still exposes (a
    stall) takes no frame, and the sequence ends with fewer (missed slots in the run's
    account). Starts are late by the timing system's jitter only (benchmarks/timing.py
    measures the simulated one's). Without ``sequencer`` the sequence is software-scheduled: a
    background thread waits for each start time in turn (:func:`ncsynth.timebase.deadlines`,
    the whole schedule given to the clock), starts one exposure and waits until the cam has
    ended it (its ``ArrayCounter`` counts it), not until the plugin has written it: the plugin
    writes in its own thread while the next frame exposes, and a frame is collected (its
    stream_datum emitted) only once written. The frame time is the clock's time when
    ``acquire`` was written. Limits: starts are late by the thread's wake-up (~0.5 ms with the
    system clock's spin wait) plus the Channel Access put and the driver's arming (detector
    dependent); consecutive starts need at least exposure + read-out; a start time that has
    passed when the previous exposure ends starts at once (its real, late start is recorded).
    Sub-millisecond timing needs the beamline's hardware trigger, ``sequencer``.
    """

    _default_read_attrs = ("image", "frame_time", "incident_flux", "transmitted_flux")  # not DetectorBase's
    _default_configuration_attrs = ("exposure_time", "geometry_json", "thickness_cm",
                                    "calibration", "flux_ph_per_s", "transmission",
                                    "reference_solid_angle_sr", "reference_solid_angle_err_sr")

    cam = Cpt(AreaDetectorCam, "cam1:", kind="omitted")
    hdf5 = Cpt(HDF5Plugin_V34, "HDF1:", kind="omitted")
    exposure_time = Cpt(DerivedSignal, derived_from="cam.acquire_time", kind="config")
    geometry_json = Cpt(Signal, value="", kind="config")
    thickness_cm = Cpt(Signal, value=float("nan"), kind="config")
    calibration = Cpt(Signal, value=float("nan"), kind="config")
    flux_ph_per_s = Cpt(Signal, value=float("nan"), kind="config")
    transmission = Cpt(Signal, value=float("nan"), kind="config")
    reference_solid_angle_sr = Cpt(Signal, value=float("nan"), kind="config")  # from water
    reference_solid_angle_err_sr = Cpt(Signal, value=float("nan"), kind="config")
    incident_flux = Cpt(Signal, value=float("nan"), kind="normal")  # ph/s during the frame
    transmitted_flux = Cpt(Signal, value=float("nan"), kind="normal")

    def __init__(self, prefix: str, *, name: str, write_path_template: str,
                 read_path_template: str | None = None, timeout_s: float = 10.0,
                 monitors: tuple[str, str] | None = None, compression: str = "BSLZ4",
                 sequencer: str | None = None, **kwargs):
        if not (isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if not isinstance(write_path_template, str) or not write_path_template:
            raise ValueError(f"write_path_template must be a non-empty path, got {write_path_template!r}")
        if monitors is not None and (len(monitors) != 2 or not all(isinstance(pv, str) and pv for pv in monitors)):
            raise ValueError(f"monitors must be two PV names (incident, transmitted flux), got {monitors!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        if sequencer is not None and not (isinstance(sequencer, str) and sequencer):
            raise ValueError(f"sequencer must be a PV prefix, got {sequencer!r}")
        patient_channel_access()
        super().__init__(prefix, name=name, **kwargs)
        self.write_path_template = write_path_template
        self.read_path_template = read_path_template or write_path_template
        self.timeout_s = float(timeout_s)
        self.monitors = None if monitors is None else tuple(
            EpicsSignalRO(pv, name=f"{name}_{which}", auto_monitor=True)
            for pv, which in zip(monitors, ("incident", "transmitted")))
        if monitors is None:
            self.read_attrs = ["image", "frame_time"]
        self.sequencer = None if sequencer is None else TriggerSequencer(sequencer, name=f"{name}_sequencer")
        self._counter_base = 0  # the cam's ArrayCounter_RBV at stage
        self._exposure_s: float | None = None  # cam.acquire_time while staged (monitor)
        self._ioc_gone: str | None = None  # why a frame could not start (its IOC gone), this staging
        self._exposing: PendingFrame | None = None  # the last exposure started
        self._in_flight = FramesInFlight()  # started, not yet written, in order
        self._cancel = threading.Event()
        self.stage_sigs.update([("cam.image_mode", 1), ("cam.num_images", 1), ("cam.trigger_mode", 0)])
        self.hdf5.stage_sigs.update([
            ("file_write_mode", "Stream"), ("file_template", "%s%s.h5"), ("auto_save", "Yes"),
            ("auto_increment", "No"), ("num_capture", 0), ("create_directory", -3),
            ("compression", compression), *(BLOSC_SETTINGS if compression == "Blosc" else ()),
            ("swmr_mode", "On"), ("num_frames_flush", 1), ("capture", 1)])

    def destroy(self):
        """Release this detector's Channel Access channels (ophyd's ``destroy``, with the beam
        monitors). Call it while the IOC still serves: the channels still connecting and the
        metadata reads ophyd queued for them finish first (at most :data:`CONNECTION_TIMEOUT_S`
        each). A read left queued when its IOC is gone holds one of ophyd's four utility
        threads for its 10 s time-out (and the plugin-type check another), and every detector
        made after it in this process waits behind them (seen: a simulated reactor's tests,
        each tearing its IOC down, made the next test's first frame miss its 11 s; a test
        refused right after connecting, under two test workers, failed every later frame of
        its worker)."""
        others = [*(self.monitors or ()), *([self.sequencer] if self.sequencer else [])]
        try:
            if self._ioc_gone is None:  # else no channel of it will connect: nothing to wait for
                self.wait_for_connection(timeout=CONNECTION_TIMEOUT_S)
                for other in others:
                    other.wait_for_connection(timeout=CONNECTION_TIMEOUT_S)
        except TimeoutError:
            pass  # the IOC is gone: nothing left to wait for
        drain_utility_threads(CONNECTION_TIMEOUT_S)
        for other in others:
            other.destroy()
        super().destroy()

    def _frame_format(self) -> tuple[tuple[int, int], str]:
        """(rows, cols) and numpy dtype of the cam's images."""
        size = self.cam.array_size.get()
        data_type = self.cam.data_type.get(as_string=True)
        try:
            dtype = np.dtype(str(data_type).lower()).str
        except TypeError:
            raise DetectorError(f"{self.name}: unknown cam data type {data_type!r}") from None
        shape = (int(size.array_size_y), int(size.array_size_x))
        self.image.frame_shape, self.image.frame_dtype = shape, dtype
        return shape, dtype

    def describe(self):
        self._frame_format()
        return super().describe()

    def read_monitors(self) -> None:
        """``flux_ph_per_s`` and ``transmission`` from the two beam monitors (if given)."""
        if self.monitors is None:
            return
        incident, transmitted = (float(monitor.get()) for monitor in self.monitors)
        if not (incident > 0 and 0 < transmitted <= incident):
            raise DetectorError(f"{self.name}: beam monitors read incident {incident:g}, transmitted "
                                f"{transmitted:g} ph/s (beam off or shutter closed?)")
        self.flux_ph_per_s.put(incident)
        self.transmission.put(transmitted / incident)

    def stage(self):
        shape, _ = self._frame_format()
        # connected now, while the IOC serves: a late frame reads them within
        # WRITE_STATUS_TIMEOUT_S (made then, ophyd's lazy components wait out the 10 s
        # connection time-out of a gone IOC first)
        self.hdf5.write_status.wait_for_connection(timeout=CONNECTION_TIMEOUT_S)
        self.hdf5.write_message.wait_for_connection(timeout=CONNECTION_TIMEOUT_S)
        self.read_monitors()
        when = datetime.fromtimestamp(timebase.now())
        filename = str(uuid.uuid4())
        self.hdf5.stage_sigs.update([("file_path", os.path.join(when.strftime(self.write_path_template), "")),
                                     ("file_name", filename)])
        self.hdf5.stage_sigs.move_to_end("capture")  # capture only once the file is named
        staged = super().stage()
        if not self.hdf5.file_path_exists.get():
            self.unstage()
            raise DetectorError(f"{self.name}: the IOC cannot write to {self.hdf5.file_path.get()!r}")
        self._in_flight.reset()
        self._ioc_gone = None
        self._assets.reset()
        self._assets.new_file(Path(when.strftime(self.read_path_template)) / f"{filename}.h5", shape)
        self._counter_base = int(self.cam.array_counter.get())
        self.cam.array_counter.subscribe(self._counted, run=False)
        self.hdf5.num_captured.subscribe(self._captured, run=False)
        # the exposure time as the IOC has it, kept by a monitor: a trigger asks nothing first
        self._exposure_s = self.exposure_time.get()
        self.cam.acquire_time.subscribe(self._exposure_seen, run=False)
        return staged

    def unstage(self):
        """Restore the IOC's settings of before :meth:`stage`. If a frame found the IOC gone,
        nothing is asked of it (each request would wait out its time-out and fail, and that
        failure, not the frame's, would end the run): the device only forgets its staging,
        with a warning. A failed restore otherwise raises :class:`DetectorError` naming it."""
        self._end_sequence()
        self.cam.array_counter.clear_sub(self._counted)
        self.hdf5.num_captured.clear_sub(self._captured)
        self.cam.acquire_time.clear_sub(self._exposure_seen)
        self._exposure_s = None
        if self._ioc_gone is not None:
            logger.warning("%s: settings of before staging not restored, the IOC is gone (%s)",
                           self.name, self._ioc_gone)
            forget_staging(self)
            return [self]
        try:
            return super().unstage()
        except Exception as error:  # the IOC went away since the last frame
            raise DetectorError(f"{self.name}: cannot restore the IOC's settings at unstage: "
                                f"{first_line(error)}") from error

    def trigger(self):
        """Expose one frame now; the Status finishes once the HDF5 plugin has written it. The
        next trigger may come as soon as the cam has ended this exposure, while the plugin
        still writes it (as areaDetector's file plugin writes in its own thread).

        Finishing at the write, not at the exposure's end (ophyd's usual areaDetector
        trigger), keeps the promise that a frame is in its file before its stream_datum (the
        live analysis reads it on its event). It costs a frame's start nothing while the write
        ends within the dead time: the simulated IOC writes a BSLZ4 frame ~2 ms after the
        exposure, at least 14.7 ms before the next §S.1.4 start (200 frames, issue 17)."""
        if self._sequence_running():
            raise DetectorError(f"{self.name}: a detector-timed sequence is running")
        return self._expose(collected=False).written

    def _expose(self, *, collected: bool, exposure_s: float | None = None) -> PendingFrame:
        """Start one exposure now: ``cam.acquire`` is the first Channel Access message (the
        exposure time is the one this staging's monitor last saw, or ``exposure_s``), its time
        the frame's start; the time-out's timer (``background.Timer``, on a pooled worker)
        starts after it."""
        if self._staged != Staged.yes:
            raise DetectorError(f"{self.name}: stage the detector (it opens the HDF5 file) first")
        previous = self._exposing
        if previous is not None and not previous.exposed.done:
            # the cam ignores an Acquire while acquiring: wait until it has ended the last
            # exposure (bounded by that frame's time-out, which fails this Status)
            try:
                previous.exposed.wait()
            except Exception as error:
                raise DetectorError(f"{self.name}: the previous exposure did not end: "
                                    f"{first_line(error)}") from error
        exposure = checked_exposure(self._exposure_s if exposure_s is None else exposure_s)
        timeout = exposure + self.timeout_s
        pending = self._exposing = self._in_flight.start(math.nan, collected, self)
        pending.timer = background.Timer(timeout, self._late, args=(pending, timeout),
                                         name=f"{self.name}-timeout")
        pending.t_start = timebase.now()
        try:
            if not self.cam.acquire.connected:  # its circuit closed: a put would first wait
                raise ConnectionError(f"{self.cam.acquire.pvname} disconnected")  # 10 s for it
            self.cam.acquire.put(1, use_complete=True)
        except Exception as error:  # the IOC is gone
            self._in_flight.unstart(pending)
            self._ioc_gone = first_line(error)
            raise DetectorError(f"{self.name}: cannot start an exposure: {self._ioc_gone}") from error
        pending.timer.start()  # a frame written meanwhile has cancelled it: it ends at once
        return pending

    def _exposure_seen(self, value, **kwargs) -> None:
        """``cam.acquire_time`` changed (Channel Access monitor, while staged)."""
        self._exposure_s = value

    def _counted(self, value, **kwargs) -> None:
        """The cam's ``ArrayCounter`` changed (Channel Access monitor): the exposures it has
        counted since stage have ended (their frames may still be on their way to the file);
        their readings are the beam monitors' values now."""
        for pending in self._ended(self._in_flight.before(value - self._counter_base)):
            pending.exposed.set_finished()

    def _ended(self, frames: list[PendingFrame]) -> list[PendingFrame]:
        """Of ``frames``, those not yet seen ended, given the beam monitors' values now (the
        IOC posts a frame's before counting it, as areaDetector's NDAttributes)."""
        ended = [pending for pending in frames if pending.readings is None]
        if ended:
            readings = {}
            if self.monitors is not None:
                readings = {self.incident_flux: float(self.monitors[0].get()),
                            self.transmitted_flux: float(self.monitors[1].get())}
            for pending in ended:
                pending.readings = readings
        return [pending for pending in ended if not pending.exposed.done]

    def _captured(self, value, **kwargs) -> None:
        """``NumCaptured`` changed (Channel Access monitor): the pending frames it counts are
        written, in order (one whose ``ArrayCounter`` has not arrived yet ends now too)."""
        written = self._in_flight.before(value)
        for pending in self._ended(written):
            pending.exposed.set_finished()
        for pending in written:
            if math.isnan(pending.t_start):  # a triggered frame: its start as the IOC stamped it
                pending.t_start = self._stamped_start(pending.index)
                if math.isnan(pending.t_start):
                    self._finish(pending, DetectorError(f"{self.name}: frame {pending.index} was written "
                                                        "without its time stamp (HDF1:TimeStamp_RBV)"))
                    continue
            self._finish(pending, pending.readings)

    def _finish(self, pending: PendingFrame, outcome) -> None:
        """End ``pending`` once: ``outcome`` a dict of readings (written) or an exception
        (failed)."""
        if not self._in_flight.remove(pending):
            return
        if pending.timer is not None:
            pending.timer.cancel()
        for status in (pending.exposed, pending.written):
            if status.done:  # aborted meanwhile
                continue
            if isinstance(outcome, dict):
                if status is pending.written:
                    self._record(pending.index, pending.t_start, collected=pending.collected,
                                 readings=outcome)
                status.set_finished()
            else:
                status.set_exception(outcome)

    def _late(self, pending: PendingFrame, timeout: float) -> None:
        """The pending frame's time is up (on the timer's pooled worker): fail it, with the cause
        when there is one to read: the HDF5 plugin's write error (``WriteStatus`` Error and its
        ``WriteMessage``, as areaDetector's NDFileHDF5 sets them, e.g. a full disk), or the
        IOC not answering (gone since the exposure was started: a put to a circuit whose end
        closed is not refused until the client has seen the close)."""
        message = f"{self.name}: frame {pending.index} was not written to HDF5 within {timeout} s"
        cause = self._why_not_written()
        self._finish(pending, DetectorError(message if cause is None else f"{message}: {cause}"))

    def _why_not_written(self) -> str | None:
        """What the IOC says of the late frame: the HDF5 plugin's last write error (its
        ``WriteMessage``, first line) when ``WriteStatus`` says Error; that the IOC does not
        answer; None if the plugin reports no error."""
        try:
            wait = {"timeout": WRITE_STATUS_TIMEOUT_S, "connection_timeout": WRITE_STATUS_TIMEOUT_S}
            if not int(self.hdf5.write_status.get(**wait)):
                return None
            text = self.hdf5.write_message.get(as_string=True, **wait)
        except Exception as error:
            self._ioc_gone = first_line(error)
            return f"the IOC does not answer ({self._ioc_gone})"
        return "the HDF5 plugin reports " + \
            (str(text).strip().splitlines() or ["a write error (no message)"])[0]


#: Longest wait (s) for the HDF5 plugin's WriteStatus/WriteMessage when a frame is late.
WRITE_STATUS_TIMEOUT_S = 2.0
