"""The simulated continuous-flow reactor of seed 002: one world, its models, every instrument.

``SimulatedFlowReactor`` builds the reactor the way :class:`~ncsynth.simulators.beamline.
SimulatedBeamline` builds the beamline: one :class:`~ncsynth.simulators.world.World` on one
:class:`~ncsynth.simulators.clock.WorldClock`, the physical models, and each instrument's wire
protocol on ``socket://127.0.0.1:PORT`` behind a :class:`~ncsynth.simulators.link.FaultyLink`.

World models, in stepping order (``world.<name>``):

* ``pump_cd``, ``pump_se`` — :class:`~ncsynth.simulators.ne1000.SyringePumpModel`, the Cd and
  Se precursor lines, 60 mL syringes (26.59 mm: up to 28 mL/min each at the NE-1000's
  plunger-speed limit, so the seed's shortest reaction time, 1.5 s = 22 mL/min, is in reach).
* ``chamber``, ``oven`` — :class:`TemperatureZone`: a Eurotherm loop
  (:class:`~ncsynth.simulators.thermal.ControllerModel`) and the heated block it controls
  (:class:`~ncsynth.simulators.thermal.FlaskThermalModel` with block parameters, see
  :func:`nucleation_chamber` and :func:`growth_oven`), stepped against each other.
* ``reactor`` — :class:`~ncsynth.simulators.flow_outlet.FlowReactorModel`: flow = sum of
  the two infusion rates (clipped at 0: a withdrawing pump does not suck the reactor back),
  nucleation / growth temperature = the chamber's / oven's fluid temperature.  Registered after
  the pumps and zones, so it steps on their state of the same sub-step.  Its outlet is
  evaluated at ``OUTLET_TEMPERATURE_STEP_C`` resolution (see there).
* ``reaction`` — :class:`FlowCellMixture`: the SAXS flow cell's content, through the interface
  the detector simulator reads from a world (``radius_nm``, ``number_density_per_m3``), over
  :meth:`FlowReactorModel.mixture_distribution`.  Nothing is called ``flask`` here, so the
  detector's solvent background is taken at 25 °C: the flow cells sit after the (quenched)
  transfer line, at room temperature.

Servers (``urls`` / ``links`` keys): ``chamber`` and ``oven`` (Modbus RTU, slave 1 each, one
RS-485 line per controller), ``pump_cd`` and ``pump_se`` (NE-1000, address 0 each, one RS-232
line per pump); ``detector``, the SAXS detector looking through the X-ray flow cell, is a
simulated areaDetector IOC (:func:`~ncsynth.simulators.area_detector.serve_ioc`, Channel Access
on 127.0.0.1). :meth:`SimulatedFlowReactor.hutch_settings` gives the ``[flow.*]`` configuration
keys that point at them.

In process: ``spectrometer``, a :class:`~ncsynth.simulators.spectrometer.SimulatedSpectrometer`
(USB at the hutch, no socket) whose flow cell holds the reactor outlet now
(:func:`~ncsynth.simulators.uvvis_spectra.absorbance_spectrum` over ``optical_path_cm``,
default ``OPTICAL_PATH_CM``).

Flow cells (our choices; the seed names a Kapton X-ray cell and an optic flow cell): the X-ray
cell is a Kapton tube of 1.5 mm bore (``SAXS_PATH_CM``) with transmission
``SAXS_TRANSMISSION``; the optic cell has a 1 mm path, so the 0.01 mol/L feed stays below
absorbance ~1 over 330–800 nm.

Not modelled: the flowing liquid's heat load on the zones (the PID's integral term takes it
up), the syringes' capacity (a pump never runs dry), precursor mesophases below 100 °C.

Back door for tests: ``world`` (every model), ``links[name]`` (byte-level faults),
``spectrometer`` (``block_lamp``, ``fail_next``, …), ``clock``.
"""

from __future__ import annotations

import numpy as np

from .clock import WorldClock
from .area_detector import serve_ioc
from .detector import MOLAR_PER_M3
from .eurotherm import EurothermInterface
from .flow_outlet import FlowReactorModel
from .ne1000 import NE1000Interface, SyringePumpModel
from .server import SIMULATED_REPLY_TIMEOUT_S, SimulatorHost
from .spectrometer import SimulatedSpectrometer
from .thermal import ControllerModel, FlaskThermalModel
from .uvvis_spectra import absorbance_spectrum
from .world import World

#: Inside diameter of the simulated syringes, mm (60 mL plastic syringe).
SYRINGE_DIAMETER_MM = 26.59
#: Optical path of the UV-Vis flow cell, cm.
OPTICAL_PATH_CM = 0.1
#: X-ray path through the Kapton flow cell, cm, and its transmission (cell + liquid).
SAXS_PATH_CM = 0.15
SAXS_TRANSMISSION = 0.8
#: Resolution (°C) at which the reactor outlet's steady state is evaluated and cached: each new
#: value costs one plug integration (~10 ms); k(T) changes by < 5 % per °C.
OUTLET_TEMPERATURE_STEP_C = 1.0
#: World sub-step, s: the zones' fastest time constant (heater element) is 5 s.
WORLD_DT_S = 0.2


class TemperatureZone:
    """A heated zone: a controller loop and the block it heats, stepped against each other.

    :class:`ControllerModel` reads ``world.flask`` and :class:`FlaskThermalModel` reads
    ``world.controller``; the zone hands itself to both as that "world", so two zones live in
    one world without sharing a controller.  ``flask`` is the thermal model, ``temperature_c``
    the fluid temperature in the zone (what the chemistry sees).
    """

    def __init__(self, controller: ControllerModel, thermal: FlaskThermalModel):
        self.controller, self.flask = controller, thermal

    @property
    def temperature_c(self) -> float:
        return self.flask.temperature_c

    def step(self, dt_s: float, world=None) -> None:
        self.controller.step(dt_s, self)
        self.flask.step(dt_s, self)


def nucleation_chamber() -> TemperatureZone:
    """The nucleation chamber: 0.05 mL channel in a ~100 g brass block (40 J/K), 100 W cartridge.

    Heater element 5 J/K with 1 W/K to the block, losses 0.15 W/K (insulated), thermocouple
    lag 1 s; PID PB 15 °C, Ti 40 s, Td 5 s.  Measured with this loop: 25 → 240 °C in ~140 s,
    10 °C steps within ±2 °C in ~15 s with < 2 °C overshoot, cooling by 50 °C in ~60 s.
    """
    return TemperatureZone(
        ControllerModel(proportional_band_c=15.0, integral_time_s=40.0, derivative_time_s=5.0,
                        high_alarm_c=380.0),
        FlaskThermalModel(liquid_mass_g=0.04, liquid_volume_ml=0.05, wall_heat_capacity_j_per_k=40.0,
                          ribbon_heat_capacity_j_per_k=5.0, ribbon_max_power_w=100.0,
                          ribbon_delay_s=0.0,
                          ribbon_to_liquid_w_per_k=1.0, ribbon_loss_w_per_k=0.02,
                          liquid_loss_w_per_k=0.15, thermocouple_lag_s=1.0))


def growth_oven() -> TemperatureZone:
    """The growth oven: 0.5 mL coil in an aluminium block (180 J/K), 300 W.

    Heater 20 J/K with 3 W/K to the block, losses 0.4 W/K, thermocouple lag 1 s; PID PB 15 °C,
    Ti 60 s, Td 5 s.  Measured: 25 → 240 °C in ~200 s, 10 °C steps within ±2 °C in ~20 s
    with < 2 °C overshoot, cooling by 50 °C in ~100 s.
    """
    return TemperatureZone(
        ControllerModel(proportional_band_c=15.0, integral_time_s=60.0, derivative_time_s=5.0,
                        high_alarm_c=380.0),
        FlaskThermalModel(liquid_mass_g=0.4, liquid_volume_ml=0.5, wall_heat_capacity_j_per_k=180.0,
                          ribbon_heat_capacity_j_per_k=20.0, ribbon_max_power_w=300.0,
                          ribbon_delay_s=0.0,
                          ribbon_to_liquid_w_per_k=3.0, ribbon_loss_w_per_k=0.05,
                          liquid_loss_w_per_k=0.4, thermocouple_lag_s=1.0))


class FlowCellMixture:
    """The X-ray flow cell's particles as the detector simulator reads a world's ``reaction``.

    Same attributes as the beamline's reaction model: ``radius_nm`` (cell radii, nm) and
    ``number_density_per_m3`` (particles per m³ per cell), here from the reactor outlet's
    :meth:`~ncsynth.simulators.flow_outlet.FlowReactorModel.mixture_distribution`.
    """

    def __init__(self, reactor: FlowReactorModel):
        self.reactor = reactor

    def step(self, dt_s: float, world=None) -> None:
        """Nothing to advance: the reactor model holds the state."""

    @property
    def radius_nm(self) -> np.ndarray:
        return self.reactor.mixture_distribution()[0]

    @property
    def number_density_per_m3(self) -> np.ndarray:
        return self.reactor.mixture_distribution()[1] / MOLAR_PER_M3


class SimulatedFlowReactor:
    """Build the flow reactor's world and start its servers; ``urls`` says where they are.

    ``speed``: None (or 0) jumps between deadlines, K runs K × real time. ``seed``: detector and
    spectrometer noise. ``volumes_ml``: ``chamber``/``oven``/``transfer`` volumes (mL) of the
    :class:`FlowReactorModel` (defaults 0.05 / 0.5 / 0.1); ``precursor_molar``: Cd fed (mol/L);
    ``optical_path_cm``: path of the optic flow cell.
    """

    def __init__(self, speed: float | None = None, seed: int | None = None, *,
                 volumes_ml: dict | None = None, precursor_molar: float = 0.01,
                 optical_path_cm: float = OPTICAL_PATH_CM):
        if not (isinstance(optical_path_cm, (int, float)) and 0 < optical_path_cm < float("inf")):
            raise ValueError(f"optical_path_cm must be a positive number, got {optical_path_cm!r}")
        self.optical_path_cm = float(optical_path_cm)
        volumes = {f"{name}_volume_ml": float(value) for name, value in (volumes_ml or {}).items()}
        self.clock = WorldClock(speed or None)
        self.world = world = World(self.clock, dt_s=WORLD_DT_S)
        pumps = [world.add(name, SyringePumpModel(diameter_mm=SYRINGE_DIAMETER_MM))
                 for name in ("pump_cd", "pump_se")]
        chamber = world.add("chamber", nucleation_chamber())
        oven = world.add("oven", growth_oven())
        reactor = world.add("reactor", FlowReactorModel(
            lambda: max(sum(pump.flow_rate_ml_min() for pump in pumps), 0.0),
            lambda: chamber.temperature_c, lambda: oven.temperature_c,
            precursor_molar=precursor_molar, temperature_step_c=OUTLET_TEMPERATURE_STEP_C,
            **volumes))
        world.add("reaction", FlowCellMixture(reactor))
        self.spectrometer = SimulatedSpectrometer(self._outlet_absorbance, clock=self.clock,
                                                  seed=0 if seed is None else seed)
        self.host = SimulatorHost()
        self._release_clients = None
        try:
            self.links = {
                "chamber": self.host.serve(EurothermInterface(
                    world, controller=chamber.controller, thermal=chamber.flask)),
                "oven": self.host.serve(EurothermInterface(
                    world, controller=oven.controller, thermal=oven.flask)),
                "pump_cd": self.host.serve(NE1000Interface(world, pumps[0])),
                "pump_se": self.host.serve(NE1000Interface(world, pumps[1])),
            }
            self.detector, self._release_clients = serve_ioc(
                self.host, world, seed=seed, thickness_cm=SAXS_PATH_CM, transmission=SAXS_TRANSMISSION)
        except BaseException:
            self.close()
            raise

    @property
    def urls(self) -> dict[str, str]:
        """``{"chamber": "socket://127.0.0.1:PORT", "oven": ..., "pump_cd": ..., "pump_se": ...}``."""
        return {name: link.url for name, link in self.links.items()}

    def hutch_settings(self, calibration_dir) -> dict[str, dict]:
        """The ``[flow.<section>]`` keys of a ``hardware = "hutch"`` configuration that point at
        this reactor: each serial instrument's ``url`` and ``reply_timeout_s`` (the simulated
        reactor's :data:`~.server.SIMULATED_REPLY_TIMEOUT_S`: they answer from the flow dry
        run's own process and event loop); the detector's prefix, monitor PVs and the PONI and
        mask files (written to ``calibration_dir`` now)."""
        return {**{name: {"url": url, "reply_timeout_s": SIMULATED_REPLY_TIMEOUT_S}
                      for name, url in self.urls.items()},
                "detector": self.detector.hutch_settings(calibration_dir)}

    def _outlet_absorbance(self, wavelength_nm) -> np.ndarray:
        """Absorbance of what is in the optic flow cell now (the spectrometer's sample)."""
        with self.world.lock:
            self.world.advance()
            outlet = self.world.reactor.outlet()
        return absorbance_spectrum(wavelength_nm, outlet, self.optical_path_cm)

    def close(self) -> None:
        self.host.close()
        if self._release_clients is not None:
            self._release_clients()
            self._release_clients = None
        self.spectrometer.close()
        self.clock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
