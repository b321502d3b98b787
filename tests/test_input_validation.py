"""Bad plan and command-line input refused before anything moves (issue 12).

Plan arguments: calling the plan function raises (so no RunEngine message can exist) and
the simulated world is untouched. Command line: the real ``ncsynth`` entry point in a
subprocess exits 2 with one line naming the option, and nothing is created in the data
directory (tests/test_command_line.py: before any heavy import).
"""

import os
import subprocess
import sys

import pytest

from ncsynth import command_line, timebase
from ncsynth.config import load_config
from ncsynth.instruments import connect, simulated_hutch
from ncsynth.plans import Chemical, Recipe, double_injection, hot_injection
from ncsynth.simulators.beamline import BeamlineOptions, SimulatedBeamline
from ncsynth.simulators.world import SyringeCharge

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
ENV.pop("NCSYNTH_CONFIG", None)
ENV.pop("NCSYNTH_DATA_DIR", None)
DAY_S = 24 * 3600.0


@pytest.fixture(scope="module")
def beamline(tmp_path_factory):
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path_factory.mktemp("data"))
    options = BeamlineOptions(seed=3, charge_b=SyringeCharge())
    with SimulatedBeamline(options=options) as sim, timebase.use_clock(sim.clock):
        devices = connect(simulated_hutch(config, sim))
        yield sim, devices
        devices.close()


def _world(sim) -> tuple:
    """What a plan that moved anything would have changed: setpoint, output, syringes, arm."""
    sim.world.advance()
    controller = sim.world.controller
    return (controller.target_setpoint_c, controller.output_percent,
            len(sim.world.deliveries), sim.world.injector.snapshot()["armed"])


def _recipe(sim, **changes) -> Recipe:
    return Recipe(operator="pytest", sample="input validation",
                  cd_initial_molar=round(sim.cd_initial_molar(), 6),
                  syringe_b=(Chemical("Cd(OA)2 precursor in ODE", 3.56),),
                  cd_second_molar=0.02, **changes)


HOT = [  # (recipe changes, plan keyword arguments, what the refusal names)
    ({"reaction_time_s": 1e15}, {}, "reaction_time_s"),
    ({"reaction_time_s": True}, {}, "reaction_time_s"),
    ({"flask": (Chemical("TOPO", True),)}, {}, "mass of 'TOPO'"),
    ({}, {"monitor_period_s": 1e-9}, "monitor_period_s"),
    ({}, {"monitor_period_s": True}, "monitor_period_s"),
    ({}, {"cooldown_s": 1e15}, "cooldown_s"),
    ({}, {"n_background": 10**9}, "n_background"),
    ({}, {"integration_s": True}, "integration_s"),
    ({}, {"n_frames": 10**6, "ratio": 1.0}, "n_frames"),
    ({}, {"ratio": 1.1}, "later than 86400 s"),                 # 0.022 s × 1.1^574 ≈ 1e22 s
    ({}, {"schedule_s": [0.0, 1e15]}, "later than 86400 s"),
    ({"reaction_time_s": DAY_S}, {"monitor_period_s": 0.1}, "heater readings"),  # 864 000
]


@pytest.mark.parametrize("recipe_changes, kwargs, names", HOT,
                         ids=[f"{r}{k}"[:60] for r, k, _ in HOT])
def test_hot_injection_refuses_sizes_it_cannot_hold_when_called(beamline, recipe_changes,
                                                                 kwargs, names):
    sim, dev = beamline
    before = _world(sim)
    with pytest.raises((TypeError, ValueError)) as refused:
        hot_injection(dev.heater, dev.injector, dev.detector, _recipe(sim, **recipe_changes),
                      timer=dev.timer, **kwargs)
    assert names in str(refused.value) and "\n" not in str(refused.value)
    assert _world(sim) == before


def test_the_largest_accepted_synthesis_still_builds(beamline):
    sim, dev = beamline
    before = _world(sim)
    plan = hot_injection(dev.heater, dev.injector, dev.detector,
                         _recipe(sim, reaction_time_s=DAY_S), monitor_period_s=1.0,
                         cooldown_s=DAY_S, timer=dev.timer)
    plan.close()                                  # built, never run
    plan = hot_injection(dev.heater, dev.injector, dev.detector, _recipe(sim),
                         monitor_period_s=0.1, timer=dev.timer)   # 7590 s / 0.1 s: 76 000
    plan.close()
    assert _world(sim) == before


DOUBLE = [
    ({"second_n_frames": 0}, "second_n_frames"),
    ({"second_ratio": 0}, "second_ratio"),
    ({"second_ratio": 0.5}, "second_ratio"),
    ({"delay_s": True}, "delay_s"),
    ({"second_schedule_s": [0.0, 1e15]}, "later than 86400 s"),
]


@pytest.mark.parametrize("kwargs, names", DOUBLE, ids=[str(k) for k, _ in DOUBLE])
def test_double_injection_refuses_given_values_instead_of_defaulting_them(beamline, kwargs,
                                                                          names):
    sim, dev = beamline
    before = _world(sim)
    with pytest.raises((TypeError, ValueError)) as refused:
        double_injection(dev.heater, dev.injector, dev.detector,
                         _recipe(sim, reaction_time_s=600.0), timer=dev.timer,
                         **{"delay_s": 20.0, **kwargs})
    assert names in str(refused.value)
    assert _world(sim) == before


def test_a_growth_exponent_of_zero_is_a_valid_flask_and_negative_is_not():
    # seed 000 S4.12: n = 0 is reaction-limited growth; Fig. S6.2 simulates n = 0, 2, 4
    command_line.check_arguments(command_line.parser().parse_args(
        ["dry-run", "--growth-exponent", "0"]))
    with pytest.raises(ValueError, match="--growth-exponent"):
        command_line.check_arguments(command_line.parser().parse_args(
            ["dry-run", "--growth-exponent", "-1"]))


def test_the_growth_exponent_bound_is_what_the_growth_analysis_can_measure():
    from ncsynth.analysis.growth import EXPONENT_BOUNDS

    assert command_line.MAX_GROWTH_EXPONENT == EXPONENT_BOUNDS[1]


def _ncsynth(*args, timeout):
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, option", [
    (["dry-run", "--speed", "inf"], "--speed"),
    (["dry-run", "--speed", "nan"], "--speed"),
    (["dry-run", "--speed", "-1"], "--speed"),
    (["dry-run", "--growth-exponent", "-0.5"], "--growth-exponent"),
    (["dry-run", "--growth-exponent", "inf"], "--growth-exponent"),
    (["flow", "dry-run", "--speed", "inf"], "--speed"),
    (["session", "--speed", "inf"], "--speed"),
])
def test_the_cli_refuses_a_bad_option_at_once_in_one_line(tmp_path, args, option):
    data = tmp_path / "data"
    result = _ncsynth(*args, "--data-dir", str(data), timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and option in result.stderr
    assert result.stderr.startswith(f"ncsynth {' '.join(args[:-2])}: {option} must be")
    assert not data.exists()                   # no catalog, no run, nothing started


@pytest.mark.parametrize("args, names", [
    (["--reaction-time", "1e15"], "reaction_time_s"),
    (["--monitor-period", "1e-9"], "monitor_period_s"),
    (["--cooldown", "1e15"], "cooldown_s"),
    (["--second-injection", "20", "--second-frames", "0"], "second_n_frames"),
    (["--second-injection", "20", "--second-ratio", "0"], "second_ratio"),
])
def test_the_cli_refuses_plan_arguments_before_any_run(tmp_path, args, names):
    data = tmp_path / "data"
    result = _ncsynth("dry-run", "--no-progress", *args, "--data-dir", str(data), timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    refusal = [line for line in result.stderr.splitlines() if line.startswith("ncsynth dry-run:")]
    assert len(refusal) == 1 and names in refusal[0]
    assert not data.exists()  # refused before the catalog, let alone a run
