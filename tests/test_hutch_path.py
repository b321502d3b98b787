"""The hutch path on the simulated beamline: a ``hardware = "hutch"`` configuration filled with
what ``ncsynth sim serve`` prints (:meth:`SimulatedBeamline.hutch_settings`: the simulators'
sockets, the simulated areaDetector IOC's prefix and monitor PVs, the PONI and mask files) runs
``hot_injection`` with a short schedule in this plain Python process; every frame after the
injection gets a fit, and every frame's event carries the two beam monitors' readings.

Real components throughout: the simulated world, Modbus and injector protocols over TCP, the
caproto IOC over Channel Access on the loopback, a real RunEngine following the world's jumping
clock, the live analysis reading its calibration from the descriptor.
"""

import math

import pytest
from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.analysis.live import LiveAnalysis
from ncsynth.config import default_config
from ncsynth.instruments import connect
from ncsynth.plans import Recipe, hot_injection
from ncsynth.simulators.beamline import SimulatedBeamline

#: Frame starts, s after the injection: past the first second, when the nuclei are still too
#: few to scatter above the solvent (seed 000 §S.3), up to the reaction time.
SCHEDULE_S = [5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0]


def test_a_hutch_configuration_runs_hot_injection_on_the_simulated_beamline(tmp_path):
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock):
        config = default_config()
        config.update(hardware="hutch", data={"dir": str(tmp_path / "data")})
        for section, values in sim.hutch_settings(tmp_path / "calibration").items():
            config[section].update(values)
        devices = connect(config)
        derived = []
        live = LiveAnalysis(lambda name, doc: derived.append((name, doc)))
        RE = RunEngine({}, call_returns_result=True)
        sim.clock.follow(RE)
        RE.subscribe(live)
        events = []
        RE.subscribe(lambda name, doc: events.append(doc["data"]) if name == "event" else None)
        recipe = Recipe(operator="hutch-path test", sample="simulated CdSe",
                        cd_initial_molar=round(sim.cd_initial_molar("A"), 6), reaction_time_s=120.0)
        try:
            result = RE(hot_injection(devices.heater, devices.injector, devices.detector, recipe,
                                      schedule_s=SCHEDULE_S, n_background=3, monitor_period_s=0,
                                      timer=devices.timer))
        finally:
            heater_state = devices.heater.safe_state.get()
            devices.close()
        assert live.flush(timeout_s=120)
        live.close()
    assert result.exit_status == "success"
    assert heater_state.startswith("confirmed safe"), heater_state
    fits = [doc["data"] for name, doc in derived if name == "event" and "radius_nm" in doc["data"]]
    assert len(fits) == len(SCHEDULE_S)
    assert all(fit["success"] for fit in fits), [fit["reason"] for fit in fits if not fit["success"]]
    assert all(math.isfinite(fit["radius_nm"]) and fit["radius_nm"] > 0 for fit in fits)
    assert fits[-1]["radius_nm"] == pytest.approx(float(sim.world.reaction.mean_radius_nm), rel=0.2)
    frames = [data for data in events if "saxs_frame_time" in data]
    assert len(frames) == 3 + len(SCHEDULE_S)
    assert all(data["saxs_incident_flux"] == sim.detector.incident_flux and
               data["saxs_transmitted_flux"] == sim.detector.transmitted_flux for data in frames)
