"""Simulated EPICS areaDetector IOC of the SAXS detector (seed 000 §S.1.4), served with caproto.

Channel Access on the loopback interface (:mod:`.ca_loopback`), the PVs of an areaDetector
driver (``<prefix>cam1:``) and its HDF5 file plugin (``<prefix>HDF1:``, :mod:`.hdf5_plugin`)
that :class:`~ncsynth.devices.area_detector.AreaDetectorSAXS` uses (setpoints with their
``_RBV`` read-backs, as ADCore names them), plus two scalar beam monitors (incident and
transmitted flux, photons/s, as a beamline's ion chamber and diode give). Frames come from the
same simulated world as every other simulator:
:class:`~ncsynth.simulators.detector.FrameSynthesizer` scatters from the world's reaction
(or a back-door distribution) at mid-exposure.

The driver (areaDetector's, reduced to what the device needs): with ``TriggerMode`` Internal,
``cam1:Acquire`` = 1 starts one exposure of ``AcquireTime`` s at the world clock's now
(``ImageMode``/``NumImages`` are kept but one image is taken per Acquire); the put completes
once the exposure has started (``DetectorState_RBV`` Acquire). With ``TriggerMode`` External,
``Acquire`` = 1 arms the cam for ``NumImages`` exposures (state Waiting), each started by a
pulse of the timing system's sequencer (:mod:`.trigger_sequencer`, PVs ``<prefix>Seq:``) at
the pulse's time; a pulse while the cam is exposing or not armed is missed (counted in
:attr:`SimulatedAreaDetector.missed_triggers`, logged); after the last image ``Acquire``
returns to 0. At an exposure's end the two monitors are posted
with the values of that exposure (the NDAttributes the driver attaches to the frame), the
frame goes to the HDF5 plugin's queue with them, ``Acquire`` returns to 0, the state to Idle
and then ``ArrayCounter_RBV`` counts up: the driver is ready for the next ``Acquire`` without
waiting for the file write (``NumCaptured_RBV`` follows ``ArrayCounter_RBV``, it does not gate
it). ``Acquire`` = 0 during an exposure aborts it (no frame).

Time: exposures reserve their middle and end on the world's clock (a jumping clock stops
there), frame synthesis and file writes run inside ``clock.busy()``, and monitor updates leave
at once (no batching wait that would look idle to the clock).

Back door for tests: :meth:`set_distribution`, :attr:`stall_writes` (frames are taken but the
plugin never writes them: a capture that never completes), :attr:`last_frame`,
:attr:`last_expected_counts`, :attr:`acquisitions_started`, :attr:`missed_triggers`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable

import numpy as np
from caproto import ChannelDouble, ChannelEnum, ChannelInteger, ChannelString
from caproto.server import common as caproto_server

from ncsynth.analysis.geometry import DetectorGeometry
from .ca_loopback import LoopbackContext, point_clients_at, setpoint_pairs
from .detector import FRAME_DTYPE, FrameSynthesizer, reserve_exposure, while_busy
from .hdf5_plugin import SimulatedHDF5Plugin
from .trigger_sequencer import SimulatedTriggerSequencer, post_to

logger = logging.getLogger(__name__)

#: PV prefix of the simulated detector and the names of its two monitors.
DEFAULT_PREFIX = "SIM:SAXS:"
INCIDENT_SUFFIX, TRANSMITTED_SUFFIX = "I0:Flux", "IT:Flux"
#: Where the simulated timing system's pulse sequencer serves its PVs, after the prefix.
SEQUENCER_SUFFIX = "Seq:"
_ENUMS = {
    "image_mode": ["Single", "Multiple", "Continuous"],
    "trigger_mode": ["Internal", "External"],
    "state": ["Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error", "Waiting",
              "Initializing", "Disconnected", "Aborted"],
    "data_type": ["Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
                  "Float32", "Float64"],
    "disable_enable": ["Disable", "Enable"],
}
#: (suffix, kind, initial value) of the driver's setpoints (each with its ``_RBV``).
_CAM_PAIRS = [("Acquire", "int", 0), ("AcquireTime", "double", 0.075),
              ("AcquirePeriod", "double", 0.0), ("ImageMode", "image_mode", "Multiple"),
              ("NumImages", "int", 1), ("TriggerMode", "trigger_mode", "Internal"),
              ("ArrayCounter", "int", 0), ("ArrayCallbacks", "disable_enable", "Enable"),
              ("DataType", "data_type", "UInt32")]


class SimulatedAreaDetector:
    """The IOC (see module docstring). ``world``: the simulated world (``world.clock``).

    ``geometry``, ``flux`` (photons/s), ``seed`` and further options go to
    :class:`~ncsynth.simulators.detector.FrameSynthesizer`; ``prefix`` is the areaDetector
    prefix (``<prefix>cam1:``, ``<prefix>HDF1:``, monitors ``<prefix>I0:Flux``, ``<prefix>IT:Flux``,
    the trigger sequencer ``<prefix>Seq:``).
    """

    def __init__(self, world, geometry: DetectorGeometry | None = None, *,
                 prefix: str = DEFAULT_PREFIX, flux: float = 1e13, seed: int | None = None,
                 **synthesizer_options):
        self.world = world
        self.prefix = prefix
        self.seed = seed
        self.synthesizer = FrameSynthesizer(geometry or DetectorGeometry(), flux_ph_per_s=flux,
                                            seed=seed, **synthesizer_options)
        self.last_expected_counts: np.ndarray | None = None
        self.last_frame: np.ndarray | None = None
        self._override = None
        self._cancel = threading.Event()
        self._job: asyncio.Future | None = None
        self._acquiring = False  # an exposure (and its frame's synthesis) is under way
        self._armed = 0  # external trigger: exposures still to take (pulse thread and loop)
        self._trigger_lock = threading.Lock()
        self.missed_triggers = 0
        self.acquisitions_started = 0  # Acquire = 1 puts honoured (back door for tests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._context: LoopbackContext | None = None
        #: (host, UDP port) where clients search for this IOC (``EPICS_CA_ADDR_LIST``)
        self.address: tuple[str, int] | None = None
        #: (host, TCP port) of its circuits: caproto tries the search port's number first and
        #: takes a random one when another socket holds that TCP port
        self.circuit_address: tuple[str, int] | None = None
        self.pvs: dict[str, object] = {}
        rows, cols = self.synthesizer.geometry.shape
        self.cam = cam = f"{prefix}cam1:"
        setpoint_pairs(self.pvs, cam, _CAM_PAIRS, _ENUMS, self._put)
        self.plugin = SimulatedHDF5Plugin(self.pvs, prefix, world.clock, self.synthesizer.geometry, FRAME_DTYPE)
        for name, value in [("ArraySizeX_RBV", cols), ("ArraySizeY_RBV", rows), ("ArraySizeZ_RBV", 0)]:
            self.pvs[cam + name] = ChannelInteger(value=value)
        self.pvs[f"{cam}DetectorState_RBV"] = ChannelEnum(value="Idle", enum_strings=_ENUMS["state"])
        self.pvs[f"{cam}PortName_RBV"] = ChannelString(value="SAXS1")  # the asyn port graph ophyd checks
        self.pvs[prefix + INCIDENT_SUFFIX] = ChannelDouble(value=self.incident_flux, units="ph/s")
        self.pvs[prefix + TRANSMITTED_SUFFIX] = ChannelDouble(value=self.transmitted_flux, units="ph/s")
        self.sequencer = SimulatedTriggerSequencer(self.pvs, prefix + SEQUENCER_SUFFIX, world.clock,
                                                   self._external_trigger)

    # -- monitors and back door --------------------------------------------------------------
    @property
    def stall_writes(self) -> bool:
        """Back door: frames are taken but the HDF5 plugin never writes them."""
        return self.plugin.stall_writes

    @stall_writes.setter
    def stall_writes(self, value: bool) -> None:
        self.plugin.stall_writes = value

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
                    "transmitted_monitor_pv": self.prefix + TRANSMITTED_SUFFIX,
                    "trigger_sequencer": self.prefix + SEQUENCER_SUFFIX}
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
        context = self._context = LoopbackContext(self.pvs, host, port)
        port = context.ca_server_port
        self._loop = asyncio.get_running_loop()
        self.plugin.start()
        # beacons to this IOC's own search port on the loopback (caproto reads the list as the
        # server starts): nothing leaves the host, and no "connection refused" without a repeater
        os.environ["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "NO"
        os.environ["EPICS_CAS_BEACON_ADDR_LIST"] = f"{host}:{port}"
        # caproto's server holds a monitor update back up to HIGH_LOAD_TIMEOUT (10 ms) for more
        # to send with it: an idle-looking wait, after which a jumping world clock would move on
        # while a frame's NumCaptured is still on its way. This IOC sends each update at once.
        caproto_server.HIGH_LOAD_TIMEOUT = 0.0
        self._task = asyncio.ensure_future(context.run())
        while not (context.port and context.udp_socks):  # bound, listening for searches
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        self.address = (host, context.ca_server_port)
        self.circuit_address = (host, context.port)
        return context.ca_server_port

    async def stop(self) -> None:
        """Stop serving and hang up on every client. caproto's server, cancelled, stops reading
        its clients' connections but leaves them open: a client keeps such a circuit ~36 s
        (``EPICS_CA_CONN_TMO`` + 6 s) before it calls the server unresponsive, its reads
        waiting out their time-outs meanwhile. Closed, the clients see the IOC gone at once."""
        self._cancel.set()
        self.sequencer.stop()
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
        await self.plugin.stop()  # the frames already taken stay in the file

    async def _put(self, name: str, value):
        """A client wrote ``value`` to the driver's setpoint ``name``."""
        return await self._on_acquire(value) if name == f"{self.cam}Acquire" else value

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
            with self._trigger_lock:
                self._armed, waiting = 0, not self._acquiring
            if waiting:  # armed, between exposures
                await self._set(f"{cam}DetectorState_RBV", "Idle")
            return 0
        if self._acquiring or self._armed:
            return 1  # already acquiring (areaDetector ignores the repeat)
        clock = self.world.clock
        self._cancel = cancel = threading.Event()
        self.acquisitions_started += 1
        if self.pvs[f"{cam}TriggerMode"].value == "External":
            self._armed = max(1, int(self.pvs[f"{cam}NumImages"].value))
            await self._set(f"{cam}DetectorState_RBV", "Waiting")
            await self.pvs[f"{cam}Acquire_RBV"].write(1)
            return 1
        self._acquiring = True
        exposure = reserve_exposure(self.world, clock.now(), float(self.pvs[f"{cam}AcquireTime"].value),
                                    cancel, lambda: self._override)
        await self._set(f"{cam}DetectorState_RBV", "Acquire")
        await self.pvs[f"{cam}Acquire_RBV"].write(1)
        self._job = asyncio.ensure_future(self._acquire(exposure, cancel))
        return 1

    def _external_trigger(self, t_pulse: float) -> None:
        """A pulse of the trigger sequencer at world time ``t_pulse`` (its thread, the clock
        standing there): an armed, idle cam starts an exposure then."""
        with self._trigger_lock:
            if not self._armed or self._acquiring:
                self.missed_triggers += 1
                logger.warning("%scam1: trigger at %.6f missed (%s)", self.prefix, t_pulse,
                               "still exposing" if self._armed else "not armed")
                return
            self._acquiring, self._armed = True, self._armed - 1
            cancel = self._cancel  # this arming's (an Acquire = 0 sets it)
        exposure = reserve_exposure(self.world, t_pulse,
                                    float(self.pvs[f"{self.prefix}cam1:AcquireTime"].value), cancel,
                                    lambda: self._override)
        post_to(self._loop, self._triggered(exposure, cancel))

    async def _triggered(self, exposure, cancel: threading.Event) -> None:
        await self._set(f"{self.prefix}cam1:DetectorState_RBV", "Acquire")
        await self._acquire(exposure, cancel)

    async def _acquire(self, exposure, cancel: threading.Event) -> None:
        """One exposure; at its end the frame goes to the HDF5 plugin's queue, the monitors
        post their values of this exposure, and the driver is ready for the next ``Acquire``
        (or trigger) at once (it does not wait for the file write), then ``ArrayCounter_RBV``
        counts the frame."""
        cam, clock = f"{self.prefix}cam1:", self.world.clock
        taken = False
        try:
            taken = await asyncio.to_thread(exposure.middle)
            if taken:  # the flask as it was at mid-exposure, however late this thread came
                frame, expected = await while_busy(clock, asyncio.to_thread(
                    lambda: self.synthesizer.synthesize(*exposure.flask.read(), exposure.exposure_s)))
                taken = await asyncio.to_thread(exposure.end)
            if taken:
                self.last_expected_counts, self.last_frame = expected, frame
                counter = self.pvs[f"{cam}ArrayCounter_RBV"].value + 1
                monitors = self.incident_flux, self.transmitted_flux  # during this exposure
                # queued first: the plugin holds a jumping clock from now until it is written
                self.plugin.receive(frame, exposure.t_start, counter, exposure.exposure_s, monitors)
                await self.pvs[self.prefix + INCIDENT_SUFFIX].write(monitors[0])
                await self.pvs[self.prefix + TRANSMITTED_SUFFIX].write(monitors[1])
        finally:
            if not taken:
                exposure.flask.cancel()
            with self._trigger_lock:
                self._acquiring = False
                armed = self._armed > 0 and taken
        await self._set(f"{cam}DetectorState_RBV", "Waiting" if armed else "Idle" if taken else "Aborted")
        if not armed:
            await self._set(f"{cam}Acquire", 0)
        if taken:
            await self._set(f"{cam}ArrayCounter", counter)


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
