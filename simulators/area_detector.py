"""Simulated EPICS areaDetector IOC of the SAXS detector (seed 000 §S.1.4), served with caproto.

Channel Access on the loopback interface, the PVs of an areaDetector driver (``<prefix>cam1:``)
and its HDF5 file plugin (``<prefix>HDF1:``) that :class:`~ncsynth.devices.detector.AreaDetectorSAXS`
uses (setpoints with their ``_RBV`` read-backs, as ADCore names them), plus two scalar beam
monitors (incident and transmitted flux, photons/s, as a beamline's ion chamber and diode give).
Frames come from the same simulated world as every other simulator:
:class:`~ncsynth.simulators.detector.FrameSynthesizer` scatters from the world's reaction
(or a back-door distribution) at mid-exposure.

Behaviour (areaDetector's, reduced to what the device needs):

* ``cam1:Acquire`` = 1 starts one exposure of ``AcquireTime`` s at the world clock's now
  (``ImageMode``/``NumImages``/``TriggerMode`` are kept but one image is taken per Acquire);
  the put completes once the exposure has started (``DetectorState_RBV`` Acquire); at its end
  the frame goes to the HDF5 plugin's queue, ``Acquire`` returns to 0, the state to Idle and
  then ``ArrayCounter_RBV`` counts up: the driver is ready for the next ``Acquire`` without
  waiting for the file write. ``Acquire`` = 0 during an exposure aborts it (no frame).
* ``HDF1:Capture`` = 1 (``FileWriteMode`` Stream) opens ``FullFileName_RBV`` = ``FileTemplate``
  filled C-style with ``FilePath``, ``FileName``, ``FileNumber`` and appends every frame to
  ``/entry/data/data`` (n, rows, cols) ``uint32``, compressed as ``Compression`` says (``None``,
  ``zlib`` at ``ZLevel``, ``Blosc`` as ``BloscCompressor``/``BloscLevel``/``BloscShuffle``
  say, ``BSLZ4``, ``LZ4``; another choice is refused), with
  ``/entry/instrument/NDAttributes/`` ``NDArrayTimeStamp`` (epoch s), ``NDArrayUniqueId``, the
  two monitors and ``AcquireTime`` per frame, and the detector's calibration as NeXus (NXdetector,
  NXmonochromator: :mod:`ncsynth.simulators.frame_file`); flushed every ``NumFramesFlush``
  frames, SWMR if ``SWMRMode`` On; ``NumCaptured_RBV`` counts them. As areaDetector's plugin
  with ``BlockingCallbacks`` No, it writes (compression included) in a thread of its own,
  frames queued in order, so the next exposure runs while the last frame is written;
  ``NumCaptured_RBV`` follows ``ArrayCounter_RBV``, it does not gate it.
  ``Capture`` = 0 closes the file once the queued frames are written. ``FilePath`` is created
  if ``CreateDirectory`` is not 0; ``FilePathExists_RBV`` says whether it exists.

Time: exposures reserve their middle and end on the world's clock (a jumping clock stops
there), frame synthesis and file writes run inside ``clock.busy()``, and monitor updates leave
at once (no batching wait that would look idle to the clock).

Back door for tests: :meth:`set_distribution`, :attr:`stall_writes` (frames are taken but the
plugin never writes them: a capture that never completes), :attr:`last_frame`,
:attr:`last_expected_counts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import h5py
import numpy as np
from caproto import ChannelChar, ChannelDouble, ChannelEnum, ChannelInteger, ChannelString
from caproto.asyncio.server import Context
from caproto.server import common as caproto_server

from ncsynth.analysis.geometry import DetectorGeometry
from .detector import FRAME_DTYPE, FrameSynthesizer, flask_state, reserve_exposure, while_busy
from .frame_file import BLOSC_COMPRESSORS, BLOSC_SHUFFLES, COMPRESSIONS, append_frame, compression_filter, open_frame_file

#: PV prefix of the simulated detector and the names of its two monitors.
DEFAULT_PREFIX = "SIM:SAXS:"
INCIDENT_SUFFIX, TRANSMITTED_SUFFIX = "I0:Flux", "IT:Flux"
_ENUMS = {
    "image_mode": ["Single", "Multiple", "Continuous"],
    "trigger_mode": ["Internal", "External"],
    "state": ["Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error", "Waiting",
              "Initializing", "Disconnected", "Aborted"],
    "data_type": ["Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
                  "Float32", "Float64"],
    "no_yes": ["No", "Yes"],
    "write_mode": ["Single", "Capture", "Stream"],
    "off_on": ["Off", "On"],
    "disable_enable": ["Disable", "Enable"],
    "compression": list(COMPRESSIONS),
    "blosc_compressor": list(BLOSC_COMPRESSORS),
    "blosc_shuffle": list(BLOSC_SHUFFLES),
}
#: (suffix, kind, initial value): a setpoint and its ``_RBV``; kind "double", "int",
#: "text" (char waveform) or an :data:`_ENUMS` key.
_CAM_PAIRS = [("Acquire", "int", 0), ("AcquireTime", "double", 0.075),
              ("AcquirePeriod", "double", 0.0), ("ImageMode", "image_mode", "Multiple"),
              ("NumImages", "int", 1), ("TriggerMode", "trigger_mode", "Internal"),
              ("ArrayCounter", "int", 0), ("ArrayCallbacks", "disable_enable", "Enable"),
              ("DataType", "data_type", "UInt32")]
_HDF_PAIRS = [("EnableCallbacks", "disable_enable", "Enable"), ("BlockingCallbacks", "no_yes", "No"),
              ("FileWriteMode", "write_mode", "Stream"), ("FileTemplate", "text", "%s%s_%3.3d.h5"),
              ("AutoSave", "no_yes", "No"), ("AutoIncrement", "no_yes", "No"),
              ("NumCapture", "int", 0), ("CreateDirectory", "int", 0), ("SWMRMode", "off_on", "Off"),
              ("NumFramesFlush", "int", 1), ("Capture", "int", 0), ("FilePath", "text", "/"),
              ("FileName", "text", "frames"), ("FileNumber", "int", 0), ("ArrayCounter", "int", 0),
              ("NDArrayPort", "port", "SAXS1"), ("Compression", "compression", "None"),
              ("ZLevel", "int", 6), ("BloscCompressor", "blosc_compressor", "blosclz"),
              ("BloscLevel", "int", 5), ("BloscShuffle", "blosc_shuffle", "None")]


class SimulatedAreaDetector:
    """The IOC (see module docstring). ``world``: the simulated world (``world.clock``).

    ``geometry``, ``flux`` (photons/s), ``seed`` and further options go to
    :class:`~ncsynth.simulators.detector.FrameSynthesizer`; ``prefix`` is the areaDetector
    prefix (``<prefix>cam1:``, ``<prefix>HDF1:``, monitors ``<prefix>I0:Flux``, ``<prefix>IT:Flux``).
    """

    def __init__(self, world, geometry: DetectorGeometry | None = None, *,
                 prefix: str = DEFAULT_PREFIX, flux: float = 1e13, seed: int | None = None,
                 **synthesizer_options):
        self.world = world
        self.prefix = prefix
        self.seed = seed
        self.synthesizer = FrameSynthesizer(geometry or DetectorGeometry(), flux_ph_per_s=flux,
                                            seed=seed, **synthesizer_options)
        self.stall_writes = False
        self.last_expected_counts: np.ndarray | None = None
        self.last_frame: np.ndarray | None = None
        self._override = None
        self._cancel = threading.Event()
        self._job: asyncio.Future | None = None
        self._acquiring = False  # an exposure (and its frame's synthesis) is under way
        self._file: h5py.File | None = None
        # the HDF5 plugin's own thread (its queue: the executor's, first in, first out) and
        # the frames queued to it, not yet written
        self._plugin_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="HDF1")
        self._writes: set[asyncio.Future] = set()
        self._task: asyncio.Task | None = None
        self._context: Context | None = None
        self.address: tuple[str, int] | None = None
        self.pvs: dict[str, object] = {}
        rows, cols = self.synthesizer.geometry.shape
        cam, hdf = f"{prefix}cam1:", f"{prefix}HDF1:"
        self._pairs(cam, _CAM_PAIRS)
        self._pairs(hdf, _HDF_PAIRS)
        for name, value in [(f"{cam}ArraySizeX_RBV", cols), (f"{cam}ArraySizeY_RBV", rows),
                            (f"{cam}ArraySizeZ_RBV", 0), (f"{hdf}ArraySize0_RBV", cols),
                            (f"{hdf}ArraySize1_RBV", rows), (f"{hdf}ArraySize2_RBV", 0),
                            (f"{hdf}NumCaptured_RBV", 0), (f"{hdf}FilePathExists_RBV", 0),
                            (f"{hdf}WriteStatus", 0)]:
            self.pvs[name] = ChannelInteger(value=value)
        self.pvs[f"{cam}DetectorState_RBV"] = ChannelEnum(value="Idle", enum_strings=_ENUMS["state"])
        for name, value in [(f"{hdf}PluginType_RBV", "NDFileHDF5"), (f"{cam}PortName_RBV", "SAXS1"),
                            (f"{hdf}PortName_RBV", "FileHDF1")]:  # the asyn port graph ophyd checks
            self.pvs[name] = ChannelString(value=value)
        for name in (f"{hdf}FullFileName_RBV", f"{hdf}WriteMessage"):
            self.pvs[name] = ChannelChar(value="", max_length=512)
        self.pvs[prefix + INCIDENT_SUFFIX] = ChannelDouble(value=self.incident_flux, units="ph/s")
        self.pvs[prefix + TRANSMITTED_SUFFIX] = ChannelDouble(value=self.transmitted_flux, units="ph/s")
        self._hooks = {f"{cam}Acquire": self._on_acquire, f"{hdf}Capture": self._on_capture,
                       f"{hdf}FilePath": self._on_file_path, f"{hdf}Compression": _on_compression}

    # -- monitors and back door --------------------------------------------------------------
    @property
    def incident_flux(self) -> float:
        """Photons/s on the sample (the incident monitor's value)."""
        return self.synthesizer.flux_ph_per_s

    @property
    def transmitted_flux(self) -> float:
        """Photons/s through flask and sample: incident × transmission."""
        return self.synthesizer.flux_ph_per_s * self.synthesizer.transmission

    def set_distribution(self, radius_nm, number_concentration_molar) -> None:
        """Scatter from this distribution (radii nm, mol/L per cell) instead of the world's."""
        self._override = (np.array(radius_nm, dtype=float, ndmin=1),
                          np.array(number_concentration_molar, dtype=float, ndmin=1))

    def value(self, name: str):
        """Current value of the PV ``<prefix>name`` (e.g. ``"HDF1:NumCaptured_RBV"``)."""
        return self.pvs[self.prefix + name].value

    def hutch_settings(self, calibration_dir, *, water_standard: bool = False) -> dict[str, str]:
        """The keys of a ``[detector]`` configuration section that point at this IOC: ``prefix``,
        the monitor PVs, the simulated set-up's sample path ``thickness_cm`` and its ``poni``
        and ``mask`` files, written to ``calibration_dir`` now; with ``water_standard``, also a
        water standard and its empty cell measured now (:mod:`.standards`: ``water_standard``,
        ``empty_cell``)."""
        from ncsynth.analysis.calibration_files import write_calibration

        poni, mask = write_calibration(self.synthesizer.geometry, calibration_dir)
        settings = {"prefix": self.prefix, "poni": str(poni), "mask": str(mask),
                    "thickness_cm": self.synthesizer.thickness_cm,
                    "incident_monitor_pv": self.prefix + INCIDENT_SUFFIX,
                    "transmitted_monitor_pv": self.prefix + TRANSMITTED_SUFFIX}
        if water_standard:
            settings.update(self.measure_standards(calibration_dir))
        return settings

    def measure_standards(self, directory) -> dict[str, str]:
        """Water and the empty cell in this detector's geometry and beam, written to
        ``directory`` (:func:`.standards.write_standards`; noise seeded from :attr:`seed`, apart
        from the frames'): the ``water_standard`` and ``empty_cell`` configuration keys."""
        from .standards import write_standards

        return write_standards(self.synthesizer, directory,
                               seed=None if self.seed is None else [self.seed, 0x3A7E5])

    # -- serving -----------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on ``host``; searches on UDP ``port`` (0: a free one). Returns that port."""
        port = port or _free_udp_port(host)
        self._plugin_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="HDF1")
        # beacons to this IOC's own search port on the loopback (caproto reads the list as the
        # server starts): nothing leaves the host, and no "connection refused" without a repeater
        os.environ["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "NO"
        os.environ["EPICS_CAS_BEACON_ADDR_LIST"] = f"{host}:{port}"
        # caproto's server holds a monitor update back up to HIGH_LOAD_TIMEOUT (10 ms) for more
        # to send with it: an idle-looking wait, after which a jumping world clock would move on
        # while a frame's NumCaptured is still on its way. This IOC sends each update at once.
        caproto_server.HIGH_LOAD_TIMEOUT = 0.0
        context = self._context = Context(self.pvs, interfaces=[host])
        context.ca_server_port = port
        self._task = asyncio.ensure_future(context.run())
        while not (context.port and context.udp_socks):  # bound, listening for searches
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        self.address = (host, context.ca_server_port)
        return context.ca_server_port

    async def stop(self) -> None:
        """Stop serving and hang up on every client. caproto's server, cancelled, stops reading
        its clients' connections but leaves them open: a client keeps such a circuit ~36 s
        (``EPICS_CA_CONN_TMO`` + 6 s) before it calls the server unresponsive, its reads
        waiting out their time-outs meanwhile. Closed, the clients see the IOC gone at once."""
        self._cancel.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            writers = [circuit.client.writer for circuit in self._context.circuits]
            for writer in writers:
                writer.close()
            closed = asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)
            try:
                await asyncio.wait_for(closed, timeout=1.0)
            except asyncio.TimeoutError:
                # a client that does not read keeps close() flushing its buffer, and the
                # socket open once the host's loop stops: drop the unsent data, close now
                for writer in writers:
                    writer.transport.abort()
        await self._drain_writes()  # the frames already taken stay in the file
        self._close_file()
        self._plugin_thread.shutdown(wait=False)

    def _pairs(self, prefix: str, table) -> None:
        for suffix, kind, initial in table:
            readback = _channel(kind, initial)
            setpoint = _channel(kind, initial, setpoint_of=(self, prefix + suffix, readback))
            self.pvs[prefix + suffix], self.pvs[f"{prefix}{suffix}_RBV"] = setpoint, readback

    async def _put(self, name: str, value):
        """A client wrote ``value`` to setpoint ``name``: run its hook (may refuse)."""
        hook = self._hooks.get(name)
        return value if hook is None else await hook(value)

    async def _set(self, name: str, value) -> None:
        """Update a PV (and its read-back) from the IOC side."""
        await self.pvs[name].write(value, verify_value=False)
        readback = self.pvs.get(name + "_RBV")
        if readback is not None:
            await readback.write(value)

    # -- driver ------------------------------------------------------------------------------
    async def _on_acquire(self, value):
        cam = f"{self.prefix}cam1:"
        if not value:
            self._cancel.set()
            return 0
        if self._acquiring:
            return 1  # already acquiring (areaDetector ignores the repeat)
        clock = self.world.clock
        self._cancel = cancel = threading.Event()
        self._acquiring = True
        exposure = reserve_exposure(clock, clock.now(), float(self.pvs[f"{cam}AcquireTime"].value), cancel)
        await self._set(f"{cam}DetectorState_RBV", "Acquire")
        await self.pvs[f"{cam}Acquire_RBV"].write(1)
        self._job = asyncio.ensure_future(self._acquire(exposure, cancel))
        return 1

    async def _acquire(self, exposure, cancel: threading.Event) -> None:
        """One exposure; at its end the frame goes to the HDF5 plugin's queue and the driver is
        ready for the next ``Acquire`` at once (it does not wait for the file write), then
        ``ArrayCounter_RBV`` counts the frame."""
        cam, clock = f"{self.prefix}cam1:", self.world.clock
        flask = []  # sampled while a jumping clock stands at mid-exposure
        sample = lambda: flask.append(flask_state(self.world, self._override))  # noqa: E731
        taken = False
        try:
            taken = await asyncio.to_thread(exposure.middle, sample)
            if taken:
                frame, expected = await while_busy(clock, asyncio.to_thread(
                    self.synthesizer.synthesize, *flask[0], exposure.exposure_s))
                taken = await asyncio.to_thread(exposure.end)
            if taken:
                self.last_expected_counts, self.last_frame = expected, frame
                counter = self.pvs[f"{cam}ArrayCounter_RBV"].value + 1
                self._to_plugin(frame, exposure.t_start, counter, exposure.exposure_s)
        finally:
            self._acquiring = False
        await self._set(f"{cam}DetectorState_RBV", "Idle" if taken else "Aborted")
        await self._set(f"{cam}Acquire", 0)
        if taken:
            await self._set(f"{cam}ArrayCounter", counter)

    def _to_plugin(self, frame: np.ndarray, t_start: float, counter: int, exposure_s: float) -> None:
        """Queue a frame to the HDF5 plugin (NDArray callback, non-blocking as areaDetector's
        ``BlockingCallbacks`` No): its writes run in order in the plugin's own thread, and a
        jumping clock holds still until it is written (or has failed)."""
        held = contextlib.ExitStack()  # the clock's hold taken now, not when the task first runs
        busy = getattr(self.world.clock, "busy", None)
        if busy is not None:
            held.enter_context(busy())
        self._writes.add(task := asyncio.ensure_future(self._write_frame(frame, t_start, counter, exposure_s)))
        task.add_done_callback(lambda done: (self._writes.discard(done), held.close()))

    async def _write_frame(self, frame: np.ndarray, t_start: float, counter: int, exposure_s: float) -> None:
        """The HDF5 plugin's handling of one frame: ``ArrayCounter`` and sizes, the monitors, the
        write (compression included) in the plugin's thread, then ``NumCaptured_RBV``."""
        hdf = f"{self.prefix}HDF1:"
        for axis, size in enumerate((frame.shape[1], frame.shape[0], 0)):
            await self.pvs[f"{hdf}ArraySize{axis}_RBV"].write(size)
        incident, transmitted = self.incident_flux, self.transmitted_flux
        await self.pvs[self.prefix + INCIDENT_SUFFIX].write(incident)
        await self.pvs[self.prefix + TRANSMITTED_SUFFIX].write(transmitted)
        await self._set(f"{hdf}ArrayCounter", self.pvs[f"{hdf}ArrayCounter_RBV"].value + 1)
        handle = self._file
        if handle is None or self.stall_writes:
            return
        try:
            written = await asyncio.get_running_loop().run_in_executor(
                self._plugin_thread, functools.partial(
                    append_frame, handle, frame, t_start, counter, incident, transmitted,
                    int(self.pvs[f"{hdf}NumFramesFlush"].value), exposure_s=exposure_s))
        except (OSError, RuntimeError, ValueError) as error:  # ValueError: a file closed meanwhile
            await self._set(f"{hdf}WriteStatus", 1)
            await self.pvs[f"{hdf}WriteMessage"].write(write_message(error))
            return
        if handle is self._file:
            await self.pvs[f"{hdf}NumCaptured_RBV"].write(written)

    # -- HDF5 plugin -------------------------------------------------------------------------
    async def _on_file_path(self, value):
        hdf = f"{self.prefix}HDF1:"
        path = value if str(value).endswith("/") else f"{value}/"
        if self.pvs[f"{hdf}CreateDirectory"].value:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError:
                pass  # FilePathExists_RBV says no
        await self.pvs[f"{hdf}FilePathExists_RBV"].write(int(os.path.isdir(path)))
        return path

    async def _on_capture(self, value):
        hdf = f"{self.prefix}HDF1:"
        if not value:
            await self._drain_writes()
            self._close_file()
            return 0
        if self._file is not None:
            return 1
        get = lambda suffix: self.pvs[hdf + suffix].value  # noqa: E731
        path = c_format(get("FileTemplate"), get("FilePath"), get("FileName"), get("FileNumber"))
        try:
            opened = datetime.fromtimestamp(self.world.clock.now()).isoformat()
            self._file = open_frame_file(path, self.synthesizer.geometry, FRAME_DTYPE, opened,
                                         swmr=get("SWMRMode") == "On",
                                         compression=get("Compression"), zlevel=get("ZLevel"),
                                         blosc=(get("BloscCompressor"), get("BloscLevel"), get("BloscShuffle")))
        except (OSError, RuntimeError) as error:
            await self._set(f"{hdf}WriteStatus", 1)
            await self.pvs[f"{hdf}WriteMessage"].write(write_message(error, f"cannot open {path}: "))
            raise
        await self._set(f"{hdf}WriteStatus", 0)
        await self.pvs[f"{hdf}FullFileName_RBV"].write(path)
        await self.pvs[f"{hdf}NumCaptured_RBV"].write(0)
        return 1

    async def _drain_writes(self) -> None:
        """Wait for the frames queued to the HDF5 plugin (``Capture`` = 0 closes the file after
        them, as the plugin does)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _close_file(self) -> None:
        if self._file is not None:
            self._plugin_thread.submit(lambda: None).result()  # no write of it still running
            self._file.close()
            self._file = None


def write_message(error: Exception, prefix: str = "") -> str:
    """The HDF5 plugin's ``WriteMessage`` for a failed write: one line of at most 500
    characters, the operating system's cause first (HDF5 buries it, e.g. ``errno = 28,
    error message = 'No space left on device'``, in a message that spans lines)."""
    text = " ".join(str(error).split())
    code, name = re.search(r"errno = (\d+)", text), re.search(r"filename = '([^']*)'", text)
    if code:
        text = f"[Errno {code[1]}] {os.strerror(int(code[1]))}: {name[1] if name else '?'} ({text.split(' (')[0]})"
    return (prefix + text)[:500]


async def _on_compression(value):
    """A ``Compression`` this plugin does not write is refused (the put fails)."""
    compression_filter(value)
    return value


def c_format(template: str, *args) -> str:
    """``template`` with its C conversions (``%s``, ``%d``, ``%3.3d``) filled from ``args`` in
    order, as the areaDetector file plugins build ``FullFileName`` from ``FileTemplate``."""
    values = iter(args)
    return re.sub(r"%([-0-9.]*)([sd])", lambda m: ("%" + m.group(1) + m.group(2)) % next(values),
                  template)


def _channel(kind: str, value, setpoint_of=None):
    """A channel of ``kind``; ``setpoint_of`` = (ioc, name, readback): client writes go
    through the IOC's hook and are mirrored to the read-back."""
    cls, options = {"double": (ChannelDouble, {"precision": 4}), "int": (ChannelInteger, {}),
                    "text": (ChannelChar, {"max_length": 512}), "port": (ChannelString, {})}.get(kind, (ChannelEnum, {}))
    if cls is ChannelEnum:
        options = {"enum_strings": _ENUMS[kind]}
    if setpoint_of is None:
        return cls(value=value, **options)
    ioc, name, readback = setpoint_of

    class Setpoint(cls):
        async def verify_value(self, data):
            value = await ioc._put(name, await super().verify_value(data))
            await readback.write(value)
            return value

    return Setpoint(value=value, **options)


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def epics_client_environment(address: tuple[str, int]) -> dict[str, str]:
    """Channel Access client settings that find an IOC at ``address`` (host, UDP port) only:
    ``EPICS_CA_ADDR_LIST`` = ``host:port``, ``EPICS_CA_AUTO_ADDR_LIST`` = ``NO``."""
    return {"EPICS_CA_ADDR_LIST": f"{address[0]}:{address[1]}", "EPICS_CA_AUTO_ADDR_LIST": "NO"}


#: Numbers the prefixes (``SIM<pid>-<n>:SAXS:``) of :func:`serve_ioc`'s IOCs: Channel Access
#: clients keep channels and search answers by PV name for their whole process, so an IOC
#: started after another (a second dry run, the next test, another ``sim serve``) serves names
#: of its own.
_IOC_SERIAL = itertools.count(1)


def serve_ioc(host, world, **options) -> tuple[SimulatedAreaDetector, Callable[[], None]]:
    """Start a :class:`SimulatedAreaDetector` of ``world`` (``options`` as its own, but the
    prefix) on ``host`` (a :class:`~ncsynth.simulators.server.SimulatorHost`, which stops it),
    with a prefix of its own and this process's clients pointed at it
    (:func:`point_clients_at`); return it and the function that takes the clients off it."""
    ioc = SimulatedAreaDetector(world, prefix=f"SIM{os.getpid()}-{next(_IOC_SERIAL)}:SAXS:", **options)
    host.start(ioc)
    return ioc, point_clients_at(ioc.address)


_served: list[str] = []  # "host:port" of the IOCs this process's clients are pointed at
_saved: dict[str, str | None] = {}
_served_lock = threading.Lock()


def point_clients_at(address: tuple[str, int]) -> Callable[[], None]:
    """Point this process's Channel Access clients at the IOC at ``address`` (host, UDP port),
    beside any other simulated IOC it serves, and nowhere else (``EPICS_CA_ADDR_LIST``, no auto
    list; caproto reads them at every search). The returned function takes it off the list; the
    last one restores the environment as it was."""
    entry = f"{address[0]}:{address[1]}"
    with _served_lock:
        if not _served:
            _saved.update({key: os.environ.get(key) for key in ("EPICS_CA_ADDR_LIST", "EPICS_CA_AUTO_ADDR_LIST")})
        _served.append(entry)
        os.environ.update(EPICS_CA_ADDR_LIST=" ".join(_served), EPICS_CA_AUTO_ADDR_LIST="NO")

    def release() -> None:
        with _served_lock:
            if entry not in _served:
                return
            _served.remove(entry)
            if _served:
                os.environ["EPICS_CA_ADDR_LIST"] = " ".join(_served)
                return
            for key, value in _saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return release

