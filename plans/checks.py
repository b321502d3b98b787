"""The checks a synthesis plan makes of its arguments when it is called, before anything moves.

Pure: numpy and the kernel's validation only (no bluesky, no ophyd), so the command line
runs the same checks on its options before it imports the beamline (``ncsynth dry-run
--frames 0`` is refused in a fraction of a second); :func:`~ncsynth.plans.hot_injection`
and :func:`~ncsynth.plans.double_injection` call these functions themselves.
"""

from __future__ import annotations

import numpy as np

from ncsynth import validation

from .recipe import Recipe
from .schedule import MAX_DURATION_S, MAX_FRAMES, check_schedule, frame_schedule

#: How frames are timed: "software" (the RunEngine triggers each at its deadline) or
#: "detector" (the detector keeps the schedule itself, a flyer).
ACQUISITION_MODES = ("software", "detector")
#: Most background frames before the injection.
MAX_BACKGROUND_FRAMES = 1000
#: Shortest heater read-back period, s (0: none); one Modbus read takes ~5 ms.
MIN_MONITOR_PERIOD_S = 0.1
#: Most heater read-backs one run may schedule (stream ``temperature``, an event each;
#: a day and its cool-down at 1 s fit).
MAX_READINGS = 200_000


def check_protocol(recipe, n_background, acquisition, monitor_period_s, cooldown_s, *,
                   max_temperature_c: float | None = None) -> Recipe:
    """Validate what every synthesis plan shares; return the recipe as a :class:`Recipe`.

    ValueError (TypeError for a value that is no number; booleans are not numbers)
    naming the parameter: the recipe (temperatures up to the heater's ``max_temperature_c``,
    reaction time at most ``MAX_DURATION_S``), 1..``MAX_BACKGROUND_FRAMES`` background
    frames, a monitor period of 0 (none) or ``MIN_MONITOR_PERIOD_S``..``MAX_DURATION_S`` s,
    a cool-down of 0..``MAX_DURATION_S`` s.
    """
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_metadata(recipe or {})
    recipe.validate(max_temperature_c)
    if acquisition not in ACQUISITION_MODES:
        raise ValueError(f"acquisition must be one of {sorted(ACQUISITION_MODES)}, "
                         f"got {acquisition!r}")
    validation.integer("n_background", n_background, minimum=1,
                       maximum=MAX_BACKGROUND_FRAMES)
    period_s = validation.real("monitor_period_s", monitor_period_s, minimum=0,
                               maximum=MAX_DURATION_S, unit="s")
    if 0 < period_s < MIN_MONITOR_PERIOD_S:
        raise ValueError(f"monitor_period_s must be 0 (no monitoring) or >= "
                         f"{MIN_MONITOR_PERIOD_S} s, got {monitor_period_s!r}")
    validation.real("cooldown_s", cooldown_s, minimum=0, maximum=MAX_DURATION_S, unit="s")
    return recipe


def check_monitoring(monitor_period_s: float, span_s: float, cooldown_s: float) -> None:
    """Refuse more than ``MAX_READINGS`` heater read-backs: one every ``monitor_period_s``
    over ``span_s`` (s from the first firing to the last frame or the reaction's end,
    whichever is later) and over the cool-down ``cooldown_s`` (s)."""
    if monitor_period_s and (span_s + cooldown_s) / monitor_period_s > MAX_READINGS:
        raise ValueError(f"monitor_period_s = {monitor_period_s} s over {span_s + cooldown_s:.6g}"
                         f" s of reaction, frames and cool-down makes "
                         f"{(span_s + cooldown_s) / monitor_period_s:.3g} heater readings, more "
                         f"than {MAX_READINGS}: choose a longer period")


def schedule_offsets(n_frames, integration_s, dead_time_s, ratio, schedule_s=None):
    """The geometric schedule of §S.1.4, or the user's ``schedule_s`` checked."""
    if schedule_s is None:
        return frame_schedule(n_frames, integration_s, dead_time_s, ratio)
    return check_schedule(schedule_s, integration_s)


def hot_injection_schedule(recipe: Recipe, *, n_frames=575, integration_s=0.075,
                           dead_time_s=0.022, ratio=1.015, schedule_s=None, piston="A",
                           monitor_period_s=10.0, cooldown_s=0.0) -> np.ndarray:
    """The frame offsets (s after the firing) of :func:`~ncsynth.plans.hot_injection`,
    its schedule, piston and monitoring checked against ``recipe`` (checked first by
    :func:`check_protocol`)."""
    offsets = schedule_offsets(n_frames, integration_s, dead_time_s, ratio, schedule_s)
    check_monitoring(monitor_period_s, max(offsets[-1], recipe.reaction_time_s), cooldown_s)
    if piston not in ("A", "B"):
        raise ValueError(f"piston must be 'A' or 'B', got {piston!r}")
    return offsets


def double_injection_schedules(recipe: Recipe, *, delay_s=240.0, n_frames=575,
                               integration_s=0.075, dead_time_s=0.022, ratio=1.015,
                               schedule_s=None, second_n_frames=None, second_ratio=None,
                               second_schedule_s=None, monitor_period_s=10.0, cooldown_s=0.0):
    """``(delay_s, first, second, second_ratio)`` of :func:`~ncsynth.plans.double_injection`:
    B's delay after A (s) and the frame offsets after each firing (s), checked against
    ``recipe`` (checked first by :func:`check_protocol`). A given ``second_n_frames`` or
    ``second_ratio`` is checked, never replaced by the first schedule's."""
    delay_s = validation.real("delay_s", delay_s, above=0, maximum=MAX_DURATION_S, unit="s")
    if delay_s >= recipe.reaction_time_s:
        raise ValueError(f"delay_s ({delay_s} s) must come before the end of the reaction "
                         f"(recipe.reaction_time_s = {recipe.reaction_time_s} s)")
    second_n_frames = n_frames if second_n_frames is None else validation.integer(
        "second_n_frames", second_n_frames, minimum=1, maximum=MAX_FRAMES)
    second_ratio = ratio if second_ratio is None else validation.real(
        "second_ratio", second_ratio, minimum=1)
    first = schedule_offsets(n_frames, integration_s, dead_time_s, ratio, schedule_s)
    first = first[first + integration_s <= delay_s]
    second = schedule_offsets(second_n_frames, integration_s, dead_time_s, second_ratio,
                              second_schedule_s)
    if first.size == 0:
        raise ValueError(f"no frame of the first schedule fits before the second injection "
                         f"at delay_s = {delay_s} s")
    check_monitoring(monitor_period_s, max(delay_s + second[-1], recipe.reaction_time_s),
                     cooldown_s)
    return delay_s, first, second, second_ratio
