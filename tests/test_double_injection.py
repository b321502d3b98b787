"""The superfocusing experiment's plan (seed 000 §S.5) against the simulated beamline."""

import threading

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from connected_beamline import connected_beamline
from ncsynth.plans import Chemical, Recipe, double_injection
from ncsynth.simulators.beamline import BeamlineOptions
from ncsynth.simulators.world import SyringeCharge

DELAY_S = 20.0  # the §S.5.5 experiment


@pytest.fixture
def beamline(tmp_path):
    with connected_beamline(tmp_path, BeamlineOptions(seed=2, charge_b=SyringeCharge())) as bl:
        yield bl


def _recipe(sim, **kw):
    return Recipe(operator="pytest", sample="superfocusing", reaction_time_s=60.0,
                  cd_initial_molar=round(sim.cd_initial_molar(), 6),
                  syringe_b=(Chemical("Cd(OA)2 precursor in ODE", 3.56),), cd_second_molar=0.02,
                  **kw)


def _events(docs, stream):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


def _safe(sim):
    sim.world.advance()
    controller = sim.world.controller
    return controller.output_percent == 0 and not sim.world.injector.snapshot()["armed"]


def test_both_pistons_fire_on_time_and_frames_restart_from_b(beamline):
    sim, dev, RE, docs = beamline
    RE(double_injection(dev.heater, dev.injector, dev.detector, _recipe(sim), delay_s=DELAY_S,
                        n_frames=120, second_n_frames=60, second_ratio=1.04, n_background=2,
                        monitor_period_s=5, timer=dev.timer))
    start, stop = docs[0][1], docs[-1][1]
    assert stop["exit_status"] == "success"
    injection = _events(docs, "injection")
    assert len(injection) == 2
    t_a = injection[0]["data"]["injector_fire_time_a"]
    t_b = injection[1]["data"]["injector_fire_time_b"]
    assert t_b - t_a == pytest.approx(DELAY_S, abs=0.01)   # B fired at its deadline
    assert [t for t, _ in sim.world.deliveries] == pytest.approx([t_a + 0.3, t_b + 0.3], abs=0.1)
    first, second = np.array(start["frame_offsets_s"]), np.array(start["second_frame_offsets_s"])
    assert first[-1] + 0.075 <= DELAY_S and second.size == 60
    starts = np.array([e["data"]["saxs_frame_time"] for e in _events(docs, "primary")])
    expected = np.concatenate([t_a + first, t_b + second])
    assert starts.size == expected.size == start["num_points"]
    assert np.max(np.abs(starts - expected)) < 0.005              # both schedules kept
    # one stream of frames: declared once for the run, not once per injection
    assert [d["name"] for n, d in docs if n == "descriptor"].count("primary") == 1
    # the second injection's cold liquid shows as a temperature drop after t_b
    temps = [(e["data"]["saxs_frame_time"], e["data"]["heater_temperature"])
             for e in _events(docs, "primary")]
    before = [T for t, T in temps if t_b - 6 < t < t_b]
    after = [T for t, T in temps if t_b + 2 < t < t_b + 10]
    assert min(after) < min(before) - 10
    assert _safe(sim)


def test_missing_syringe_b_or_late_delay_is_refused_before_anything_moves(beamline):
    sim, dev, RE, docs = beamline
    plain = Recipe(operator="pytest", sample="x", cd_initial_molar=0.02, reaction_time_s=60.0)
    with pytest.raises(ValueError, match="syringe_b"):
        double_injection(dev.heater, dev.injector, dev.detector, plain, timer=dev.timer)
    with pytest.raises(ValueError, match="delay_s"):
        double_injection(dev.heater, dev.injector, dev.detector, _recipe(sim), delay_s=60.0)
    with pytest.raises(ValueError, match="no frame"):
        double_injection(dev.heater, dev.injector, dev.detector, _recipe(sim), delay_s=0.05)
    assert docs == [] and sim.world.deliveries == []


def test_abort_between_the_injections_never_fires_b_and_ends_safe(beamline):
    sim, dev, RE, docs = beamline

    def pause_early(name, doc):
        if name == "event" and len(_events(docs, "primary")) == 10:  # as from another thread
            threading.Thread(target=RE.request_pause, kwargs={"defer": False}).start()

    RE.subscribe(pause_early)
    with pytest.raises(RunEngineInterrupted):
        RE(double_injection(dev.heater, dev.injector, dev.detector, _recipe(sim),
                            delay_s=DELAY_S, n_frames=120, n_background=2, timer=dev.timer))
    RE.abort(reason="operator")
    assert docs[-1][1]["exit_status"] == "abort"
    assert len(_events(docs, "primary")) >= 10
    assert len(sim.world.deliveries) == 1            # only piston A
    assert _safe(sim)


def test_jammed_piston_b_fails_the_run_keeping_the_frames(beamline):
    sim, dev, RE, docs = beamline
    sim.world.injector.jam("B")
    with pytest.raises(Exception):
        RE(double_injection(dev.heater, dev.injector, dev.detector, _recipe(sim),
                            delay_s=DELAY_S, n_frames=120, second_n_frames=40, n_background=2,
                            timer=dev.timer))
    assert docs[-1][1]["exit_status"] == "fail"
    frames = _events(docs, "primary")
    t_b = _events(docs, "injection")[1]["data"]["injector_fire_time_b"]
    assert sum(e["data"]["saxs_frame_time"] < t_b for e in frames) > 50   # the first set's frames are kept
    assert _safe(sim)
