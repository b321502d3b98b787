"""The simulated beamline: one world, its models, and every instrument's protocol server.

``SimulatedBeamline`` builds the world of seed 000 §S.1.2/§S.1.4 — Eurotherm
controller + heated flask, two-piston injector, reacting flask (population
balance, §S.6), SAXS detector — and serves each instrument's wire protocol: the serial
instruments on ``socket://127.0.0.1:PORT`` behind a fault link, the SAXS detector as an EPICS
areaDetector IOC (Channel Access on 127.0.0.1, :mod:`.area_detector`) to which it points this
process's Channel Access clients. The devices connect to them exactly as they would to a
serial port, a terminal server or the beamline's IOC at the hutch: :meth:`hutch_settings`
gives the configuration values (URLs, PV prefix and monitor PVs, the PONI and mask files).

Back door for tests: ``beamline.world`` (state of every model),
``beamline.links[name]`` (byte-level faults), ``beamline.detector`` (the IOC's back door),
``beamline.clock``; ``new_batch()`` reloads the syringes and refills the flask for a second
synthesis in one session.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .area_detector import serve_ioc
from .beamline_models import FlaskReaction
from .clock import WorldClock
from .eurotherm import EurothermInterface
from .injector import InjectorInterface, InjectorModel
from .kinetics import ReactionState
from .kinetics_parameters import FLASK_GRID, SIMULATED_FLASK
from .server import SIMULATED_REPLY_TIMEOUT_S, SimulatorHost
from .thermal import ControllerModel, FlaskThermalModel
from .world import SyringeCharge, World

# Hot volume of the §S.1.2 flask charge: 6.92 g at ~0.6 g/mL (the seed's 25 % thermal
# expansion, §S.2.2), so that 4.5 mL of 0.1 mol/L Cd precursor gives ~0.027 mol/L,
# the [P]_i of Table S6.1.
HOT_FLASK_VOLUME_ML = 11.5
#: Longest slow window (s of world time) the kinetics may be stepped over at one mean
#: temperature: a 20th of the controller's ~190 s limit cycle (<= ~1 °C of its swing).
SLOW_MAX_DT_S = 5.0


@dataclass(frozen=True)
class BeamlineOptions:
    """What can be chosen about the simulated beamline."""

    speed: float | None = None          # None: jump between deadlines; K: K × real time
    seed: int | None = None             # detector noise
    growth_exponent: float | None = None  # exponent n (S6.16); None: SIMULATED_FLASK's
    charge_a: SyringeCharge = SyringeCharge()
    charge_b: SyringeCharge | None = None
    flux_ph_per_s: float = 1e13


class SimulatedBeamline:
    """Build the world, start the protocol servers; ``urls`` says where they are."""

    def __init__(self, speed: float | None = None, seed: int | None = None, *,
                 options: BeamlineOptions | None = None):
        if options is None:
            options = BeamlineOptions(speed=None if not speed else speed, seed=seed)
        self.options = options
        self.clock = WorldClock(options.speed)
        # kinetics stepped at the flask's mean temperature over each slow window: 0.5 s of
        # world time while the reaction moves fast (its own next sub-step is shorter: the
        # injections' bursts), up to SLOW_MAX_DT_S once it only ripens (World's adaptive
        # window), and whenever a frame asks for the state. A fixed 2 s window loses the
        # second injection's new set in the superfocusing experiment
        # (tests/test_superfocusing.py, n = 4); the adaptive one keeps 0.5 s there.
        self.world = World(self.clock, slow_dt_s=0.5, slow_max_dt_s=SLOW_MAX_DT_S)
        world = self.world
        world.add("controller", ControllerModel())
        world.add("flask", FlaskThermalModel(liquid_volume_ml=HOT_FLASK_VOLUME_ML))
        world.add("injector", InjectorModel(charge_a=options.charge_a, charge_b=options.charge_b))
        self._kinetics = SIMULATED_FLASK if options.growth_exponent is None else \
            replace(SIMULATED_FLASK, growth_exponent=options.growth_exponent)
        world.add("reaction", FlaskReaction(ReactionState(self._kinetics, FLASK_GRID)))
        self.host = SimulatorHost()
        self._release_clients = None
        try:
            self.links = {
                "heater": self.host.serve(EurothermInterface(world)),
                "injector": self.host.serve(InjectorInterface(world)),
            }
            self.detector, self._release_clients = serve_ioc(
                self.host, world, flux=options.flux_ph_per_s, seed=options.seed)
        except BaseException:
            self.close()
            raise

    @property
    def urls(self) -> dict[str, str]:
        """The serial instruments' ``{"heater": "socket://127.0.0.1:PORT", "injector": ...}``."""
        return {name: link.url for name, link in self.links.items()}

    def hutch_settings(self, calibration_dir: str | Path, *, water_standard: bool = False) -> dict[str, dict]:
        """What a ``hardware = "hutch"`` configuration needs to use this beamline, by section:
        ``heater``/``injector`` ``url`` and ``reply_timeout_s``, ``detector`` ``prefix``,
        monitor PVs, and the PONI and
        mask files of the simulated set-up (with ``water_standard``, a water standard and its
        empty cell too), written to ``calibration_dir`` now (a Channel Access client elsewhere
        also needs :func:`.ca_loopback.epics_client_environment`)."""
        return {"heater": {"url": self.links["heater"].url, "reply_timeout_s": SIMULATED_REPLY_TIMEOUT_S},
                "injector": {"url": self.links["injector"].url,
                             "reply_timeout_s": SIMULATED_REPLY_TIMEOUT_S},
                "detector": self.detector.hutch_settings(calibration_dir, water_standard=water_standard)}

    def cd_initial_molar(self, piston: str = "A") -> float:
        """c_Cd,0 (mol/L) that firing ``piston`` into the flask as it is now will give."""
        charge = self.options.charge_a if piston == "A" else self.options.charge_b
        if charge is None:
            raise ValueError(f"piston {piston} holds no syringe in this beamline")
        volume = self.world.flask.volume_ml + charge.volume_ml
        return charge.cd_molar * charge.volume_ml / volume

    def new_batch(self) -> None:
        """Ready the simulated hutch for the next synthesis, as the user does by hand between
        two: a fresh flask charge at room temperature (the first batch's crystals gone), both
        syringes reloaded with ``options.charge_a``/``charge_b``, pistons retracted, the
        injector disarmed. The controller keeps its setpoint (the next plan sets its own)."""
        world = self.world
        with world.lock:
            world.advance()
            world.replace("flask", FlaskThermalModel(liquid_volume_ml=HOT_FLASK_VOLUME_ML))
            world.reaction.state = ReactionState(self._kinetics, FLASK_GRID)
            world.injector.reset()

    def close(self) -> None:
        self.host.close()
        if self._release_clients is not None:
            self._release_clients()
            self._release_clients = None
        self.clock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
