"""The world's adaptive slow window: the reaction stepped as rarely as its accuracy allows.

The simulated beamline steps the kinetics at the flask's mean temperature over a slow window:
0.5 s while the reaction moves fast, up to ``SLOW_MAX_DT_S`` once it only ripens. The flask here
follows the beamline's temperature (an injection dip, then the controller's ±6.3 °C / 190 s
limit cycle around 257 °C) and receives two injections (§S.1.2, §S.5); the adaptive window must
move the flask by less than the fixed 0.5 s window's own truncation error, estimated in the
same run against a flask on a grid twice as fine with a 10x tighter nucleation tolerance (the
approach of tests/test_kinetics.py). Measured (3000 s): the adaptive window moves the mean
radius by 3e-7, σ by 1.1e-4, the concentration by 1e-8 and the yield by 7e-8 (relative); the
truncation error is 8e-5, 5.9e-3, 2.8e-4 and 8e-13 (the yield is complete at 0.9993: a floor
of 1e-6 applies); 33 % fewer kinetics sub-steps.
"""

import math

import pytest

from ncsynth.simulators.beamline import HOT_FLASK_VOLUME_ML, SLOW_MAX_DT_S
from ncsynth.simulators.beamline_models import FlaskReaction
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.kinetics_parameters import SIMULATED_FLASK, GridOptions
from ncsynth.simulators.world import SyringeCharge, World

END_S = 3000.0
QUANTITIES = ("mean_radius_nm", "std_radius_nm", "concentration_molar", "yield_fraction")


class _ManualClock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        return self.t


class _ProgrammedFlask:
    """Liquid temperature of the beamline's flask after the first firing (t = 0)."""

    volume_ml = HOT_FLASK_VOLUME_ML

    def __init__(self, world):
        self.world = world
        self.temperature_c = 290.0

    def step(self, dt_s, world):
        t = world.time + dt_s
        dip = 60.0 * math.exp(-t / 20.0) if t >= 0 else 0.0
        self.temperature_c = 257.0 + 6.3 * math.sin(2.0 * math.pi * t / 190.0) - dip

    def add_liquid(self, mass_g, temperature_c, volume_ml):
        self.volume_ml += volume_ml


def _injected_world(slow_dt_s=0.5, slow_max_dt_s=SLOW_MAX_DT_S, grid=None, **reaction_options):
    """(clock, world): the programmed flask and the simulated flask's reaction, injected at 0."""
    clock = _ManualClock()
    world = World(clock, slow_dt_s=slow_dt_s, slow_max_dt_s=slow_max_dt_s)
    world.add("flask", _ProgrammedFlask(world))
    world.add("reaction", FlaskReaction(ReactionState(SIMULATED_FLASK, grid, **reaction_options)))
    world.deliver(SyringeCharge())
    return clock, world


def _run(slow_dt_s, slow_max_dt_s=None, tolerance=0.05, n_cells=502):
    """Two injections (t = 0 and 240 s), 1200 s; the world advanced in 7.3 s requests that
    read only the fast models (the controller), every third one the reaction (a frame)."""
    clock, world = _injected_world(slow_dt_s, slow_max_dt_s, GridOptions(n_cells=n_cells),
                                   nucleation_tolerance=tolerance)
    reaction = world.reaction
    requests = 0
    for end, second in ((240.0, True), (END_S, False)):
        while clock.t < end - 1e-9:
            clock.t = min(end, clock.t + 7.3)
            requests += 1
            world.advance(slow=requests % 3 == 0)
        if second:
            world.deliver(SyringeCharge(cd_molar=0.1))
    world.advance()
    return reaction.state


def test_adaptive_slow_window_moves_the_flask_less_than_the_fixed_windows_truncation_error():
    fixed = _run(0.5)
    adaptive = _run(0.5, SLOW_MAX_DT_S)
    reference = _run(0.5, tolerance=0.005, n_cells=1004)
    assert adaptive.substeps < 0.75 * fixed.substeps  # the point: fewer kinetics steps
    for name in QUANTITIES:
        expected = getattr(fixed, name)
        truncation = abs(expected - getattr(reference, name))
        assert abs(getattr(adaptive, name) - expected) <= truncation + 1e-6 * abs(expected), name
    assert abs(adaptive.material_balance_error) < 1e-9


def test_adaptive_window_is_the_fixed_one_while_the_reaction_moves_fast():
    clock, world = _injected_world()
    clock.t = 1.0
    world.advance(slow=False)
    assert world._slow_window == 0.5  # nucleation right after the injection: sub-steps << 0.5 s
    clock.t = 3000.0
    world.advance()
    assert world._slow_window == SLOW_MAX_DT_S  # ripening: the longest window
    world.deliver(SyringeCharge())
    assert world._slow_window == 0.5


def test_slow_max_dt_s_below_slow_dt_s_is_refused():
    with pytest.raises(ValueError, match="slow_max_dt_s"):
        World(_ManualClock(), slow_dt_s=0.5, slow_max_dt_s=0.2)


def _sample(world):
    state = world.reaction.state
    return (world.time, world.flask.temperature_c, state.mean_radius_nm, state.concentration_molar)


@pytest.mark.parametrize("read_after_s", [0.0, 0.0375, 7.3])
def test_a_probe_is_the_world_at_its_time_however_late_it_is_read(read_after_s):
    """A detector's exposure is sampled at its middle (simulators/detector.py): a dry run whose
    sampling thread came 37.5 ms late (the clock had moved on to the exposure's end) gave
    other fits for the same seed. A probe at t = 20.0375 s is the state a world brought to
    exactly then has (every model, the reaction too), bit for bit, whether the clock and
    other requests (the controller's, fast models only) have moved on by the time it is read."""
    at_s = 20.0375
    clock, world = _injected_world(grid=GridOptions(n_cells=202))
    clock.t = 20.0
    world.advance(slow=False)
    probe = world.probe(at_s, lambda: _sample(world))
    clock.t = at_s + read_after_s
    world.advance(slow=False)  # a controller request at the clock's now
    sampled = probe.read()

    clock, reference = _injected_world(grid=GridOptions(n_cells=202))
    clock.t = 20.0
    reference.advance(slow=False)
    clock.t = at_s
    reference.advance()  # the world brought to exactly mid-exposure, as a clock standing there does
    assert sampled == _sample(reference)
    if read_after_s:  # as it was sampled before: the world at the read, not the exposure's time
        clock.t = at_s + read_after_s
        reference.advance()
        assert _sample(reference)[1:] != sampled[1:]


@pytest.mark.parametrize("read_after_s", [0.0375, 7.3])
def test_a_late_probe_read_leaves_the_world_as_a_timely_one_does(read_after_s):
    """The thread that reads a probe (a frame's synthesis) comes a different wall time late in
    each run: had its read stepped the world on to the clock's now, the models' steps would
    end there, and every later state differ in its last bits (a default dry run with the same
    seed gave another radius once in 12). Read late, it steps the world to the probe's time and
    no further: the world at a later request is the same, bit for bit, as with a timely read."""
    at_s, later_s = 20.0375, 31.0

    def world_at_later_request(read_at_s):
        clock, world = _injected_world(grid=GridOptions(n_cells=202))
        clock.t = 20.0
        world.advance(slow=False)
        probe = world.probe(at_s, lambda: _sample(world))
        clock.t = read_at_s
        sampled = probe.read()
        clock.t = later_s
        world.advance()
        return sampled, _sample(world)

    late, timely = world_at_later_request(at_s + read_after_s), world_at_later_request(at_s)
    assert late == timely
