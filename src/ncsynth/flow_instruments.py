"""Build the flow reactor's devices from the configuration (``[flow]``, seed 002).

``connect_flow(config, urls=..., spectrometer_backend=...)`` returns the two syringe pumps,
the nucleation-chamber and growth-oven controllers, the UV-Vis spectrometer, the SAXS
detector, a deadline timer and the :class:`~ncsynth.plans.flow.ReactorSpec` the plans
validate against. For ``hardware = "sim"`` the serial URLs and the detector come from a
running :class:`~ncsynth.simulators.flow_reactor.SimulatedFlowReactor` (its ``urls``) and the
spectrometer backend is its in-process ``spectrometer``; for ``"hutch"`` from the
configuration (seabreeze for the spectrometer, EPICS areaDetector for the SAXS detector).
The device classes are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncsynth.config import data_dir
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.devices.heater import HeatingController
from ncsynth.devices.pump import SyringePump
from ncsynth.devices.spectrometer import UVVisSpectrometer
from ncsynth.instruments import saxs_detector
from ncsynth.plans.flow import ReactorSpec

#: Simulator URL keys (``SimulatedFlowReactor.urls``) that ``connect_flow`` needs.
SIM_URLS = ("pump_cd", "pump_se", "chamber", "oven", "detector")


@dataclass
class FlowInstruments:
    """The devices of the continuous-flow reactor and what the plans need to know of it."""

    pump_cd: SyringePump
    pump_se: SyringePump
    chamber: HeatingController
    oven: HeatingController
    spectrometer: UVVisSpectrometer
    detector: object
    timer: DeadlineTimer
    reactor: ReactorSpec
    optical_path_cm: float

    @property
    def pumps(self) -> tuple[SyringePump, SyringePump]:
        return self.pump_cd, self.pump_se

    def as_dict(self) -> dict:
        return {"pump_cd": self.pump_cd, "pump_se": self.pump_se, "chamber": self.chamber,
                "oven": self.oven, "spectrometer": self.spectrometer, "detector": self.detector,
                "timer": self.timer}

    def close(self) -> None:
        """Release the pumps' ports (reopened if used again), the controllers (``destroy``:
        their ports closed, unusable after) and the spectrometer."""
        for pump in self.pumps:
            pump.close()
        for zone in (self.chamber, self.oven):
            zone.destroy()
        self.spectrometer.close()


def _seabreeze_spectrometer(serial_number: str):
    try:
        from seabreeze.spectrometers import Spectrometer
    except ImportError as error:
        raise RuntimeError("hardware = 'hutch' needs python-seabreeze for the UV-Vis "
                           "spectrometer (pip install seabreeze)") from error
    if serial_number:
        return Spectrometer.from_serial_number(serial_number)
    return Spectrometer.from_first_available()


def connect_flow(config: dict, urls: dict[str, str] | None = None, *,
                 spectrometer_backend=None) -> FlowInstruments:
    """Devices for ``config["hardware"]``; ``urls`` and ``spectrometer_backend`` are the
    simulated reactor's when it is "sim" (ValueError if missing)."""
    hardware, flow = config["hardware"], config["flow"]
    if hardware == "sim":
        missing = [key for key in SIM_URLS if key not in (urls or {})]
        if missing or spectrometer_backend is None:
            raise ValueError(f"hardware = 'sim' needs a running SimulatedFlowReactor's urls "
                             f"(missing {missing}) and its spectrometer as spectrometer_backend")
    frames = Path(data_dir(config)) / "frames"

    def url(key: str) -> str:
        return urls[key] if hardware == "sim" else flow[key]["url"]

    pumps = [SyringePump(url(key), name=key, address=flow[key]["address"],
                         diameter_mm=flow[key]["diameter_mm"]) for key in ("pump_cd", "pump_se")]
    zones = [HeatingController(url(key), name=key, slave_address=flow[key]["slave_address"],
                               max_temperature_c=flow[key]["max_temperature_c"],
                               tolerance_c=flow[key]["tolerance_c"],
                               settle_time_s=flow[key]["settle_time_s"],
                               poll_interval_s=flow[key]["poll_interval_s"])
             for key in ("chamber", "oven")]
    spec_cfg, det_cfg = flow["spectrometer"], flow["detector"]
    backend = (spectrometer_backend if hardware == "sim"
               else _seabreeze_spectrometer(spec_cfg["serial_number"]))
    spectrometer = UVVisSpectrometer(backend, name="uv")
    spectrometer.integration_time_s.put(spec_cfg["integration_time_s"])
    spectrometer.averages.put(spec_cfg["averages"])
    detector = saxs_detector(det_cfg, hardware, urls, frames)
    reactor = ReactorSpec(**flow["reactor"], max_rate_ml_min=min(
        flow[key]["max_rate_ml_min"] for key in ("pump_cd", "pump_se")))
    return FlowInstruments(*pumps, *zones, spectrometer, detector, DeadlineTimer(name="timer"),
                           reactor, float(spec_cfg["path_cm"]))
