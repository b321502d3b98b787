"""Build the devices from the configuration: the one place where hutch and simulation part.

``connect(config, urls=...)`` returns the heater, injector, detector and deadline
timer. For ``hardware = "sim"`` the serial URLs and the detector back-end come from a
running :class:`~ncsynth.simulators.beamline.SimulatedBeamline` (``urls``); for
``"hutch"`` from the configuration file. The device classes are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncsynth.analysis.calibration_files import geometry_from_files
from ncsynth.config import data_dir
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.detector import SAXSDetector, SimulatedBackend
from ncsynth.devices.heater import HeatingController
from ncsynth.devices.injector import Injector


@dataclass
class Instruments:
    """The devices of the hot-injection set-up."""

    heater: HeatingController
    injector: Injector
    detector: object
    timer: DeadlineTimer

    def as_dict(self) -> dict:
        return {"heater": self.heater, "injector": self.injector, "detector": self.detector,
                "timer": self.timer}

    def close(self) -> None:
        """Release serial ports (devices reopen lazily if used again)."""
        for device in (self.heater, self.injector):
            close = getattr(device, "close", None)
            if close is not None:
                close()


def connect(config: dict, urls: dict[str, str] | None = None) -> Instruments:
    """Devices for ``config["hardware"]``; ``urls`` are the simulators' when it is "sim"."""
    hardware = config["hardware"]
    if hardware == "sim" and not urls:
        raise ValueError("hardware = 'sim' needs the URLs of a running simulated beamline")
    frames = Path(data_dir(config)) / "frames"
    heater_cfg, injector_cfg, det_cfg = config["heater"], config["injector"], config["detector"]
    heater = HeatingController(
        urls["heater"] if hardware == "sim" else heater_cfg["url"], name="heater",
        slave_address=heater_cfg["slave_address"],
        max_temperature_c=heater_cfg["max_temperature_c"],
        tolerance_c=heater_cfg["tolerance_c"], settle_time_s=heater_cfg["settle_time_s"])
    injector = Injector(urls["injector"] if hardware == "sim" else injector_cfg["url"],
                        name="injector", jam_timeout_s=injector_cfg["jam_timeout_s"])
    detector = saxs_detector(det_cfg, hardware, urls, frames)
    return Instruments(heater, injector, detector, DeadlineTimer(name="timer"))


def saxs_detector(det_cfg: dict, hardware: str, urls: dict[str, str] | None, frames: Path):
    """The SAXS detector of a ``[detector]`` configuration section: the simulated back-end at
    ``urls["detector"]`` for ``hardware = "sim"``, else the area detector at its PV prefix with
    the section's calibration (:func:`area_detector`); frames are written under ``frames``, the
    exposure time is the section's."""
    if hardware == "sim":
        detector = SAXSDetector(SimulatedBackend(urls["detector"]), write_root=frames, name="saxs")
    else:
        detector = area_detector(det_cfg, frames)
    detector.exposure_time.put(det_cfg["exposure_s"])
    return detector


def area_detector(det_cfg: dict, frames: Path) -> AreaDetectorSAXS:
    """:class:`AreaDetectorSAXS` at ``det_cfg["prefix"]`` writing under ``frames``, calibrated
    from the section's ``poni``/``mask`` files, ``thickness_cm``, ``calibration`` (K; 0: from
    the monitors) and monitor PVs. A bad file is refused here, before anything moves."""
    monitors = (det_cfg["incident_monitor_pv"], det_cfg["transmitted_monitor_pv"])
    if any(monitors) and not all(monitors):
        raise ValueError("detector: give both incident_monitor_pv and transmitted_monitor_pv, or neither")
    detector = AreaDetectorSAXS(det_cfg["prefix"], name="saxs", write_path_template=str(frames) + "/%Y/%m/%d/",
                                monitors=monitors if all(monitors) else None)
    if det_cfg["poni"]:
        geometry = geometry_from_files(det_cfg["poni"], det_cfg["mask"] or None)
        detector.geometry_json.put(geometry.to_json())
    detector.thickness_cm.put(det_cfg["thickness_cm"])
    if det_cfg["calibration"] > 0:
        detector.calibration.put(det_cfg["calibration"])
    return detector
