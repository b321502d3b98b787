"""The hutch path on the simulated beamline: a ``hardware = "hutch"`` configuration whose serial
URLs are the simulators' sockets and whose [detector] section names the simulated areaDetector
IOC (its prefix, monitor PVs, PONI and mask files) runs ``hot_injection`` with a short schedule
in this plain Python process; every frame after the injection gets a fit.

Real components throughout: the simulated world, Modbus and injector protocols over TCP, the
caproto IOC over Channel Access on the loopback, a real RunEngine following the world's jumping
clock, the live analysis reading its calibration from the descriptor.
"""

import math

import pytest
from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.analysis.calibration_files import write_calibration
from ncsynth.analysis.live import LiveAnalysis
from ncsynth.config import default_config
from ncsynth.instruments import connect
from ncsynth.plans import Recipe, hot_injection
from ncsynth.simulators.area_detector import (INCIDENT_SUFFIX, TRANSMITTED_SUFFIX, SimulatedAreaDetector,
                                              epics_client_environment)
from ncsynth.simulators.beamline import SimulatedBeamline

#: Frame starts, s after the injection: past the first second, when the nuclei are still too
#: few to scatter above the solvent (seed 000 §S.3), up to the reaction time.
SCHEDULE_S = [5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0]
#: A prefix of its own: Channel Access clients keep channels by name for the whole process.
PREFIX = "HUTCH:SAXS:"


def test_a_hutch_configuration_runs_hot_injection_on_the_simulated_beamline(tmp_path, monkeypatch):
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock):
        ioc = SimulatedAreaDetector(sim.world, prefix=PREFIX, seed=5)
        sim.host.run(ioc.start())
        for key, value in epics_client_environment(ioc.address).items():
            monkeypatch.setenv(key, value)
        poni, mask = write_calibration(ioc.synthesizer.geometry, tmp_path / "calibration")
        config = default_config()
        config.update(hardware="hutch", data={"dir": str(tmp_path / "data")})
        config["heater"]["url"], config["injector"]["url"] = sim.urls["heater"], sim.urls["injector"]
        config["detector"].update(prefix=PREFIX, poni=str(poni), mask=str(mask),
                                  incident_monitor_pv=PREFIX + INCIDENT_SUFFIX,
                                  transmitted_monitor_pv=PREFIX + TRANSMITTED_SUFFIX)
        devices = connect(config)
        derived = []
        live = LiveAnalysis(lambda name, doc: derived.append((name, doc)))
        RE = RunEngine({}, call_returns_result=True)
        sim.clock.follow(RE)
        RE.subscribe(live)
        recipe = Recipe(operator="hutch-path test", sample="simulated CdSe",
                        cd_initial_molar=round(sim.cd_initial_molar("A"), 6), reaction_time_s=120.0)
        try:
            result = RE(hot_injection(devices.heater, devices.injector, devices.detector, recipe,
                                      schedule_s=SCHEDULE_S, n_background=3, monitor_period_s=0,
                                      timer=devices.timer))
        finally:
            heater_state = devices.heater.safe_state.get()
            devices.close()
            sim.host.run(ioc.stop())
        assert live.flush(timeout_s=120)
        live.close()
    assert result.exit_status == "success"
    assert heater_state.startswith("confirmed safe"), heater_state
    fits = [doc["data"] for name, doc in derived if name == "event" and "radius_nm" in doc["data"]]
    assert len(fits) == len(SCHEDULE_S)
    assert all(fit["success"] for fit in fits), [fit["reason"] for fit in fits if not fit["success"]]
    assert all(math.isfinite(fit["radius_nm"]) and fit["radius_nm"] > 0 for fit in fits)
    assert fits[-1]["radius_nm"] == pytest.approx(float(sim.world.reaction.mean_radius_nm), rel=0.2)
