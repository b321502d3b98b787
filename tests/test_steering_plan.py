"""The steered plan's safety against the simulated beamline (issue 19), without the analysis:
the fits come from the test, one per frame as the frame's event is emitted, as a derived run's
documents (what the live analysis would send; its own behaviour is in test_steered_dry_run.py).
"""

import dataclasses
import queue
import threading
import time

import pytest

from connected_beamline import connected_beamline
from ncsynth.plans import Chemical, Recipe, steered_synthesis
from ncsynth.plans.decisions import SteeringLimits
from ncsynth.simulators.beamline import BeamlineOptions
from ncsynth.steering_feed import FitFeed
from ncsynth.steering_setup import QUENCH_CHARGE, QUENCH_CONTENTS
from test_steering_rules import derived_fits_documents

LIMITS = SteeringLimits(coast_s=0.0, quench_coast_s=0.0)


@pytest.fixture
def beamline(tmp_path):
    with connected_beamline(tmp_path, BeamlineOptions(seed=2, charge_b=QUENCH_CHARGE)) as bl:
        yield bl


def recipe(sim):
    return Recipe(operator="pytest", sample="steered", reaction_time_s=60.0,
                  cd_initial_molar=round(sim.cd_initial_molar(), 6),
                  syringe_b=(Chemical(*QUENCH_CONTENTS),))


def fits_per_frame(RE, feed, radii_nm, on_frame=None, late_s=0.0):
    """Feed ``feed`` the fit of each primary frame as its event is emitted (``late_s`` of wall
    time later, from another thread, in order): radius ``radii_nm[k]`` for frame k;
    ``on_frame(k)`` is called first."""
    fits = iter(derived_fits_documents(radii_nm, err_nm=0.002))
    for name, doc in (next(fits), next(fits)):
        feed(name, doc)
    queued = queue.Queue()

    def deliver(name, doc):
        if late_s > 0:
            queued.put((time.perf_counter(), (name, doc)))
        else:
            feed(name, doc)

    def analysis():  # slower than the frames: each fit late_s after its frame
        while True:
            sent, doc = queued.get()
            time.sleep(max(0.0, sent + late_s - time.perf_counter()))
            feed(*doc)

    if late_s > 0:
        threading.Thread(target=analysis, daemon=True).start()
    primary, count = set(), [0]

    def callback(name, doc):
        if name == "descriptor" and doc["name"] == "primary":
            primary.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in primary:
            if on_frame is not None:
                on_frame(count[0])
            count[0] += 1
            deliver(*next(fits))
    RE.subscribe(callback)


def agent_events(docs):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "agent"}
    return [d["data"] for n, d in docs if n == "event" and d["descriptor"] in uids]


def test_a_quench_fires_piston_b_once_the_running_radius_reaches_the_target(beamline):
    sim, dev, RE, docs = beamline
    feed = FitFeed()
    fits_per_frame(RE, feed, [1.5 + 0.02 * k for k in range(40)])  # 2.0 nm at frame 25
    RE(steered_synthesis(dev.heater, dev.injector, dev.detector, recipe(sim), feed=feed,
                         target_radius_nm=2.0, quench=True, limits=LIMITS, n_frames=40,
                         ratio=1.05, n_background=2, monitor_period_s=5, timer=dev.timer))
    assert docs[-1][1]["exit_status"] == "success"
    (decision,) = agent_events(docs)
    assert decision["agent_rule"] == "target_radius"
    assert decision["agent_action"] == "heater off (safe state); quench by piston B (cold solvent)"
    assert 2.0 <= decision["agent_radius_nm"] - 2 * decision["agent_radius_err_nm"] < 2.03
    assert sim.world.injector.snapshot()["B"]["fired_us"] is not None
    assert sim.world.deliveries[-1][1] == QUENCH_CHARGE  # cold solvent, no precursor
    sim.world.advance()
    assert sim.world.controller.output_percent == 0 and not sim.world.injector.snapshot()["armed"]


def test_the_decision_waits_for_the_fit_of_its_frame_however_slow_the_analysis(beamline):
    """The simulated world waits with the plan for each frame's fit (the budget to the next
    frame is world time): fits arriving 0.3 s of wall time after frames 0.1-0.2 s apart give
    the decision of fits arriving at once, on the frame whose fit crossed (CI saw a steered
    dry run fire piston B a frame late when a fit came later than the frame interval)."""
    sim, dev, RE, docs = beamline
    feed = FitFeed()
    fits_per_frame(RE, feed, [1.8 + 0.02 * k for k in range(40)], late_s=0.3)  # 2.0 at k=10
    RE(steered_synthesis(dev.heater, dev.injector, dev.detector, recipe(sim), feed=feed,
                         target_radius_nm=2.0, quench=True, limits=LIMITS, n_frames=40,
                         ratio=1.05, n_background=2, monitor_period_s=5, timer=dev.timer))
    assert docs[-1][1]["exit_status"] == "success"
    primary = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "primary"}
    agent = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "agent"}
    events = [d for n, d in docs if n == "event" and d["descriptor"] in primary | agent]
    decided = next(i for i, d in enumerate(events) if d["descriptor"] in agent)
    frames_before = sum(d["descriptor"] in primary for d in events[:decided])
    decision = events[decided]["data"]
    assert decision["agent_fit_time_s"] == frames_before - 1  # the fit of the frame just taken
    assert 2.0 <= decision["agent_radius_nm"] - 2 * decision["agent_radius_err_nm"] < 2.03
    assert decision["agent_n_fits"] == 5


def test_a_spent_piston_b_is_not_fired_and_the_refusal_is_recorded(beamline):
    sim, dev, RE, docs = beamline
    feed = FitFeed()

    def spend_b(k):  # someone fires B by hand after the run has checked it
        if k == 0:
            sim.world.injector.pistons["B"].state = "EXTENDED"
    fits_per_frame(RE, feed, [1.5 + 0.02 * k for k in range(40)], on_frame=spend_b)
    RE(steered_synthesis(dev.heater, dev.injector, dev.detector, recipe(sim), feed=feed,
                         target_radius_nm=2.0, quench=True, limits=LIMITS, n_frames=40,
                         ratio=1.05, n_background=2, monitor_period_s=5, timer=dev.timer))
    assert docs[-1][1]["exit_status"] == "success"
    (decision,) = agent_events(docs)
    assert decision["agent_action"] == ("heater off (safe state); refused: piston B is spent "
                                        "(fired in an earlier synthesis); not fired")
    assert sim.world.injector.snapshot()["B"]["fired_us"] is None
    assert len(sim.world.deliveries) == 1  # piston A's only
    sim.world.advance()
    assert sim.world.controller.output_percent == 0


def test_a_target_outside_the_limits_is_refused_before_anything_moves(beamline):
    sim, dev, RE, docs = beamline
    with pytest.raises(ValueError, match=r"target_radius_nm .* <= 5 nm, got 8.0 \(the "
                                         r"configured \[steering\] limits\)"):
        steered_synthesis(dev.heater, dev.injector, dev.detector, recipe(sim), feed=FitFeed(),
                          target_radius_nm=8.0, timer=dev.timer)
    with pytest.raises(ValueError, match="a quench adds no precursor"):
        steered_synthesis(dev.heater, dev.injector, dev.detector,
                          dataclasses.replace(recipe(sim), cd_second_molar=0.02),
                          feed=FitFeed(), target_radius_nm=2.0, quench=True, timer=dev.timer)
    assert docs == [] and sim.world.injector.snapshot()["A"]["fired_us"] is None
