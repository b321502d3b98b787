"""The superfocusing experiment of seed 000 §S.5: a second injection from piston B.

Piston A starts the synthesis at t = 0; after ``delay_s`` (4 min in §S.5.1, 20 s in
§S.5.5) piston B injects more precursor, which nucleates a second, smaller population
while the first keeps growing. How fast the small set catches up with the large one
measures the growth exponent n of S4.12 (see :mod:`ncsynth.analysis.growth`).

Built from the same stubs as :func:`~ncsynth.plans.hot_injection`: frames on the
geometric schedule from A's firing until the second injection, then a second schedule
restarted densely from B's own firing timestamp (frames stay in stream ``primary``; the
``injection`` stream holds one reading per firing). Same validation before anything
moves, same safety whatever ends the run.
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import numpy as np

from ncsynth.devices.clock import DeadlineTimer

from .checks import check_protocol, double_injection_schedules
from .hot_injection import injection_with_frames, synthesis_run
from .recipe import Recipe


def double_injection(heater, injector, detector, recipe: Recipe | dict, *,
                     delay_s: float = 240.0,
                     n_frames: int = 575, integration_s: float = 0.075,
                     dead_time_s: float = 0.022, ratio: float = 1.015, schedule_s=None,
                     second_n_frames: int | None = None, second_ratio: float | None = None,
                     second_schedule_s=None, n_background: int = 5,
                     acquisition: str = "software", monitor_period_s: float = 10.0,
                     cooldown_s: float = 0.0, timer: DeadlineTimer | None = None,
                     md: dict | None = None):
    """Hot injection from piston A, then piston B ``delay_s`` later (seed 000 §S.5).

    Parameters beyond :func:`~ncsynth.plans.hot_injection`'s
    -------------------------------------------------------
    delay_s
        Time of B's firing after A's (s). Frames of the first schedule that would not
        finish before it are left out.
    second_n_frames, second_ratio, second_schedule_s
        The schedule after B, in s after B's own firing timestamp: geometric with the
        same integration and dead time (defaults: ``n_frames`` frames, ``ratio``; a value
        given is checked, never replaced: 0 frames or a ratio below 1 are refused), or the
        user's ``second_schedule_s``.

    The recipe must name what syringe B holds (``syringe_b``) and the Cd it adds to the
    flask (``cd_second_molar``). The growth setpoint is set at A's firing and kept; the
    reaction ends ``recipe.reaction_time_s`` after A's firing.
    """
    recipe = check_protocol(recipe, n_background, acquisition, monitor_period_s, cooldown_s,
                            max_temperature_c=getattr(heater, "max_temperature_c", None))
    if not recipe.syringe_b or not recipe.cd_second_molar > 0:
        raise ValueError("a double injection needs recipe.syringe_b (what piston B injects) "
                         "and recipe.cd_second_molar > 0 (the Cd it adds, mol/L)")
    delay_s, first, second, second_ratio = double_injection_schedules(
        recipe, delay_s=delay_s, n_frames=n_frames, integration_s=integration_s,
        dead_time_s=dead_time_s, ratio=ratio, schedule_s=schedule_s,
        second_n_frames=second_n_frames, second_ratio=second_ratio,
        second_schedule_s=second_schedule_s, monitor_period_s=monitor_period_s,
        cooldown_s=cooldown_s)
    timer = timer or DeadlineTimer(name="timer")
    metadata = {
        "plan_name": "double_injection",
        "num_points": int(first.size + second.size),
        "frame_offsets_s": [float(x) for x in first],
        "second_frame_offsets_s": [float(x) for x in second],
        "schedule": {"n_frames": int(first.size), "second_n_frames": int(second.size),
                     "integration_s": integration_s, "dead_time_s": dead_time_s,
                     "ratio": ratio, "second_ratio": second_ratio,
                     "user_schedule": schedule_s is not None,
                     "second_user_schedule": second_schedule_s is not None},
        "piston": "A",
        "second_injection": {"piston": "B", "delay_s": float(delay_s)},
        **(md or {}),
    }
    common = {"acquisition": acquisition, "monitor_period_s": monitor_period_s}

    def both_injections():
        t0 = yield from injection_with_frames(
            heater, injector, detector, timer, "A", first,
            growth_temperature_c=recipe.growth_temperature_c, **common)
        yield from bps.checkpoint()
        yield from bps.mv(timer, t0 + delay_s)
        yield from injection_with_frames(
            heater, injector, detector, timer, "B", np.asarray(second),
            reaction_time_s=recipe.reaction_time_s, reaction_start=t0, **common)
        return t0

    return synthesis_run(heater, injector, detector, recipe, metadata, both_injections,
                         integration_s=integration_s, n_background=n_background,
                         cooldown_s=cooldown_s, timer=timer, **common)

