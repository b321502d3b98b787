"""Build the flow reactor's devices from the configuration (``[flow]``, seed 002).

``connect_flow(config)`` returns the two syringe pumps, the nucleation-chamber and
growth-oven controllers, the UV-Vis spectrometer, the SAXS detector, a deadline timer and the
:class:`~ncsynth.plans.flow_points.ReactorSpec` the plans validate against, from a
``hardware = "hutch"`` configuration (seabreeze for the spectrometer, EPICS areaDetector for
the SAXS detector). A flow dry run first points its configuration at the running
:class:`~ncsynth.simulators.flow_reactor.SimulatedFlowReactor` (:func:`simulated_flow`) and
passes the reactor's in-process spectrometer (USB at the hutch: no address to point at) as
``spectrometer_backend``; the device classes and the code that builds them are the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ncsynth.config import data_dir
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.devices.heater import HeatingController
from ncsynth.devices.pump import SyringePump
from ncsynth.devices.spectrometer import UVVisSpectrometer
from ncsynth.instruments import area_detector, release_each
from ncsynth.plans.flow_points import ReactorSpec


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
        """Release the pumps' ports (reopened if used again), the controllers and the
        detector (``destroy``: their ports or channels closed, unusable after) and the
        spectrometer, each even if one before it failed. Close before the simulated reactor (its IOC must still serve the
        detector's last metadata reads: :meth:`AreaDetectorSAXS.destroy`)."""
        release_each(*(pump.close for pump in self.pumps), self.chamber.destroy,
                     self.oven.destroy, self.spectrometer.close, self.detector.destroy)


def _seabreeze_spectrometer(serial_number: str):
    try:
        from seabreeze.spectrometers import Spectrometer
    except ImportError as error:
        raise RuntimeError("hardware = 'hutch' needs python-seabreeze for the UV-Vis "
                           "spectrometer (pip install seabreeze)") from error
    if serial_number:
        return Spectrometer.from_serial_number(serial_number)
    return Spectrometer.from_first_available()


def connect_flow(config: dict, *, spectrometer_backend=None) -> FlowInstruments:
    """The devices of a ``hardware = "hutch"`` configuration's ``[flow]`` sections;
    ``spectrometer_backend``: the spectrometer to use instead of seabreeze's."""
    if config["hardware"] != "hutch":
        raise ValueError("hardware = 'sim': point the configuration at a running simulated flow reactor "
                         "first (ncsynth.flow_instruments.simulated_flow(config, reactor))")
    flow = config["flow"]
    frames = Path(data_dir(config)) / "frames"
    pumps = [SyringePump(flow[key]["url"], name=key, address=flow[key]["address"],
                         diameter_mm=flow[key]["diameter_mm"], timeout_s=flow[key]["reply_timeout_s"])
             for key in ("pump_cd", "pump_se")]
    zones = [HeatingController(flow[key]["url"], name=key, slave_address=flow[key]["slave_address"],
                               max_temperature_c=flow[key]["max_temperature_c"],
                               tolerance_c=flow[key]["tolerance_c"],
                               settle_time_s=flow[key]["settle_time_s"],
                               poll_interval_s=flow[key]["poll_interval_s"],
                               timeout_s=flow[key]["reply_timeout_s"])
             for key in ("chamber", "oven")]
    spec_cfg, det_cfg = flow["spectrometer"], flow["detector"]
    backend = (_seabreeze_spectrometer(spec_cfg["serial_number"]) if spectrometer_backend is None
               else spectrometer_backend)
    spectrometer = UVVisSpectrometer(backend, name="uv")
    spectrometer.integration_time_s.put(spec_cfg["integration_time_s"])
    spectrometer.averages.put(spec_cfg["averages"])
    detector = area_detector(det_cfg, frames)
    return FlowInstruments(*pumps, *zones, spectrometer, detector, DeadlineTimer(name="timer"),
                           ReactorSpec.from_config(flow), float(spec_cfg["path_cm"]))


def simulated_flow(config: dict, reactor) -> dict:
    """A copy of ``config`` pointed at the running simulated flow ``reactor``: ``hardware =
    "hutch"`` with the reactor's :meth:`~ncsynth.simulators.flow_reactor.SimulatedFlowReactor.
    hutch_settings` in its ``[flow.*]`` sections (calibration files written to
    ``<data dir>/calibration/simulated``); every other key stays the configuration's."""
    pointed = copy.deepcopy(config)
    pointed["hardware"] = "hutch"
    for section, values in reactor.hutch_settings(Path(data_dir(config)) / "calibration" / "simulated").items():
        pointed["flow"][section].update(values)
    return pointed
