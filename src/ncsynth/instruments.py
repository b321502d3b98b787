"""Build the devices from the configuration.

``connect(config)`` returns the heater, injector, detector and deadline timer of a
``hardware = "hutch"`` configuration: serial URLs, the areaDetector's PV prefix, monitor PVs
and calibration files. A dry run (``hardware = "sim"``) first points its configuration at the
running :class:`~ncsynth.simulators.beamline.SimulatedBeamline` with :func:`simulated_hutch`
(the simulators' URLs, the simulated IOC's prefix and monitors, the PONI and mask files of the
simulated set-up); the devices are then built by the same code, from the same keys.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ncsynth.analysis.calibration_files import geometry_from_files
from ncsynth.analysis.standard_frames import HeaderKeys
from ncsynth.analysis.water_standard import water_scale_from_files
from ncsynth.config import catalog_databases, data_dir
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.heater import HeatingController
from ncsynth.devices.injector import Injector
from ncsynth.errors import first_line


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
        """Wait for the heater's pursuit of its safe state, if one is still under way, and
        close its port (:meth:`HeatingController.destroy`), release the injector's port
        (reopened if used again) and the detector's Channel Access channels (``destroy``:
        unusable after), each even if one before it failed. Close before the simulated beamline (its IOC must still serve the
        detector's last metadata reads: :meth:`AreaDetectorSAXS.destroy`)."""
        release_each(self.heater.destroy, self.injector.close, self.detector.destroy)


def _unconnected(timeout: TimeoutError) -> str:
    """What caproto's time-out says of the channel that did not connect: its name, and whether
    no server answered its search or one did (at host:port) and the channel was not made."""
    pv = re.search(r"name='([^']+)'.*?(\(searching|address=\('?([^,']+)'?, (\d+)\))", str(timeout))
    if pv is None:
        return first_line(timeout)
    if pv.group(2) == "(searching":
        return f"{pv.group(1)}: no server answered its search"
    return f"{pv.group(1)}: the server at {pv.group(3)}:{pv.group(4)} answered, the channel did not connect"


def release_each(*releases: Callable[[], object]) -> None:
    """Call each of ``releases`` in order, each even if one before it raised (the error is
    raised once all have run): a port that fails to close must not keep a heater from its
    wait for the safe state, nor a detector's channels open."""
    with contextlib.ExitStack() as stack:
        for release in reversed(releases):
            stack.callback(release)


def connect(config: dict) -> Instruments:
    """The devices of a ``hardware = "hutch"`` configuration (see module docstring)."""
    if config["hardware"] != "hutch":
        raise ValueError("hardware = 'sim': point the configuration at a running simulated beamline "
                         "first (ncsynth.instruments.simulated_hutch(config, beamline))")
    frames = Path(data_dir(config)) / "frames"
    heater_cfg, injector_cfg = config["heater"], config["injector"]
    heater = HeatingController(
        heater_cfg["url"], name="heater", slave_address=heater_cfg["slave_address"],
        max_temperature_c=heater_cfg["max_temperature_c"],
        tolerance_c=heater_cfg["tolerance_c"], settle_time_s=heater_cfg["settle_time_s"],
        timeout_s=heater_cfg["reply_timeout_s"])
    injector = Injector(injector_cfg["url"], name="injector", jam_timeout_s=injector_cfg["jam_timeout_s"],
                        timeout_s=injector_cfg["reply_timeout_s"])
    detector = area_detector(config["detector"], frames, catalog=lambda: _stored_runs(config))
    return Instruments(heater, injector, detector, DeadlineTimer(name="timer"))


def simulated_hutch(config: dict, beamline) -> dict:
    """A copy of ``config`` pointed at the running simulated ``beamline``: ``hardware = "hutch"``
    with the beamline's :meth:`~ncsynth.simulators.beamline.SimulatedBeamline.hutch_settings`
    (its calibration files written to ``<data dir>/calibration/simulated``, where a replay of
    the run finds the mask again); every other key stays the configuration's."""
    pointed = copy.deepcopy(config)
    pointed["hardware"] = "hutch"
    settings = beamline.hutch_settings(Path(data_dir(config)) / "calibration" / "simulated")
    for section, values in settings.items():
        pointed[section].update(values)
    return pointed


def _stored_runs(config: dict):
    """The configuration's catalog, opened to read (a ``water_standard = "run:..."``)."""
    from ncsynth.storage import open_catalog

    return open_catalog(data_dir(config), lazy=True, read_only=True, **catalog_databases(config))


def area_detector(det_cfg: dict, frames: Path, *, catalog=None) -> AreaDetectorSAXS:
    """:class:`AreaDetectorSAXS` at ``det_cfg["prefix"]`` writing under ``frames``, calibrated
    from the section's ``poni``/``mask`` files, ``thickness_cm``, ``calibration`` (K; 0: from
    the monitors), ``water_standard``/``empty_cell`` (the monitors' K with the solid angle
    water measured, :mod:`ncsynth.analysis.water_standard`) and monitor PVs, exposing
    ``exposure_s``, its frames compressed as ``compression`` says, a detector-timed sequence
    triggered by the ``trigger_sequencer`` (if given). A bad file or combination
    of keys is refused here, before anything moves. ``catalog``: a callable opening the catalog
    of stored runs (a ``water_standard``/``empty_cell`` of ``"run:<scan id or uid>"``)."""
    monitors = (det_cfg["incident_monitor_pv"], det_cfg["transmitted_monitor_pv"])
    if any(monitors) and not all(monitors):
        raise ValueError("detector: give both incident_monitor_pv and transmitted_monitor_pv, or neither")
    geometry = geometry_from_files(det_cfg["poni"], det_cfg["mask"] or None) if det_cfg["poni"] else None
    water = _water_scale(det_cfg, geometry, all(monitors), catalog)
    try:
        detector = AreaDetectorSAXS(det_cfg["prefix"], name="saxs",
                                    write_path_template=str(frames) + "/%Y/%m/%d/",
                                    monitors=monitors if all(monitors) else None,
                                    compression=det_cfg["compression"],
                                    sequencer=det_cfg["trigger_sequencer"] or None)
    except TimeoutError as exc:  # ophyd's wait for a channel its component needs at once
        raise ConnectionError(
            f"detector {det_cfg['prefix']!r}: no answer over Channel Access ({_unconnected(exc)}); "
            f"is its IOC running and reachable from here (EPICS_CA_ADDR_LIST)?") from exc
    if geometry is not None:
        detector.geometry_json.put(geometry.to_json())
    detector.thickness_cm.put(det_cfg["thickness_cm"])
    if det_cfg["calibration"] > 0:
        detector.calibration.put(det_cfg["calibration"])
    if water is not None:
        detector.reference_solid_angle_sr.put(water.solid_angle_sr)
        detector.reference_solid_angle_err_sr.put(water.error_sr)
    detector.exposure_time.put(det_cfg["exposure_s"])
    return detector


def _water_scale(det_cfg: dict, geometry, monitors: bool, catalog=None):
    """The :class:`~ncsynth.analysis.water_standard.WaterScale` of the section's
    ``water_standard`` and ``empty_cell`` (None without a water standard); ValueError naming the
    key for a combination that cannot work or a file that cannot be used."""
    water, empty = det_cfg["water_standard"], det_cfg["empty_cell"]
    if not water:
        if empty:
            raise ValueError("empty_cell: given without a water_standard to subtract it from")
        return None
    if det_cfg["calibration"] > 0:
        raise ValueError("water_standard: give it or calibration (K), not both")
    if geometry is None:
        raise ValueError("water_standard: needs the detector geometry (poni) to integrate its frames")
    if not monitors:
        raise ValueError("water_standard: needs incident_monitor_pv and transmitted_monitor_pv "
                         "(its scale is per transmitted photon)")
    headers = HeaderKeys.from_config(det_cfg.get("standard_exposure_header", ""),
                                     det_cfg.get("standard_flux_header", ""))
    return water_scale_from_files(water, empty or None, geometry, det_cfg["thickness_cm"],
                                  headers=headers, catalog=catalog)
