"""The hot-injection protocol of seed 000 §S.1.2 as one bluesky plan.

preheat -> background frames -> inject (t = 0 from the injector's own clock,
growth setpoint at once) -> frames on the geometric schedule of §S.1.4 at
absolute deadlines -> heater off at the end of the reaction time (frames go on
over the cool-down) -> optional cool-down monitoring.

Whatever ends the plan (completion, error, abort, Ctrl-C, SIGTERM) the heater is
driven safe and the injector disarmed inside the run, which records the heater's
confirmed safe state in stream ``safety`` (:mod:`.safety`); the run document is
closed by the RunEngine with the honest exit status and a reason naming the device
and the cause, and everything already emitted stays emitted. When the RunEngine
pauses it calls ``stop()`` on the devices it has moved: the injector disarms, the
heater holds (see its docs).
"""

from __future__ import annotations

import logging

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from ncsynth.devices.clock import DeadlineTimer

from .checks import ACQUISITION_MODES, check_protocol, hot_injection_schedule
from .readiness import check_answers, check_loaded
from .recipe import Recipe
from .safety import ending_safely, named_failures
from .stubs import (background_frames, declare_frames, detector_timed_acquisition, inject,
                    preheat, record_cooldown, run_accounting_frames, timed_acquisition)

logger = logging.getLogger(__name__)

ACQUISITION = dict(zip(ACQUISITION_MODES, (timed_acquisition, detector_timed_acquisition)))


def hot_injection(heater, injector, detector, recipe: Recipe | dict, *,
                  n_frames: int = 575, integration_s: float = 0.075, dead_time_s: float = 0.022,
                  ratio: float = 1.015, schedule_s=None, n_background: int = 5,
                  piston: str = "A", acquisition: str = "software",
                  monitor_period_s: float = 10.0,
                  cooldown_s: float = 0.0, timer: DeadlineTimer | None = None,
                  md: dict | None = None):
    """Carry out a hot-injection synthesis with in-situ SAXS (seed 000 §S.1.2, §S.1.4).

    Parameters
    ----------
    heater, injector, detector
        :class:`~ncsynth.devices.HeatingController`, :class:`~ncsynth.devices.Injector`,
        :class:`~ncsynth.devices.AreaDetectorSAXS` (or anything with their interfaces).
    recipe
        :class:`~ncsynth.plans.Recipe` or its dict form; validated before anything moves.
        Gives the injection and growth temperatures (°C) and the reaction time (s).
    n_frames, integration_s, dead_time_s, ratio
        Frame schedule of §S.1.4 (see :func:`~ncsynth.plans.frame_schedule`), unless
        ``schedule_s`` (frame start times in s after injection) is given.
    n_background
        Frames recorded at the injection temperature before injecting (>= 1).
    piston
        "A" or "B".
    acquisition
        "software": the RunEngine triggers each frame at its deadline;
        "detector": the detector keeps the schedule itself (flyer), the plan collects.
    monitor_period_s
        Heater read-back period between frames (stream ``temperature``); 0 for none.
    cooldown_s
        After the last frame, keep reading the heater this long (0: stop at once).

    Every argument is validated when this function is called, before a RunEngine
    runs anything (ValueError naming the parameter).
    """
    recipe = check_protocol(recipe, n_background, acquisition, monitor_period_s, cooldown_s,
                            max_temperature_c=getattr(heater, "max_temperature_c", None))
    offsets = hot_injection_schedule(recipe, n_frames=n_frames, integration_s=integration_s,
                                     dead_time_s=dead_time_s, ratio=ratio, schedule_s=schedule_s,
                                     piston=piston, monitor_period_s=monitor_period_s,
                                     cooldown_s=cooldown_s)
    timer = timer or DeadlineTimer(name="timer")
    metadata = {
        "plan_name": "hot_injection",
        "num_points": len(offsets),
        "frame_offsets_s": [float(x) for x in offsets],
        "schedule": {"n_frames": len(offsets), "integration_s": integration_s,
                     "dead_time_s": dead_time_s, "ratio": ratio,
                     "user_schedule": schedule_s is not None},
        "piston": piston,
        **(md or {}),
    }

    def inject_and_acquire():
        t0 = yield from injection_with_frames(
            heater, injector, detector, timer, piston, offsets,
            growth_temperature_c=recipe.growth_temperature_c, acquisition=acquisition,
            monitor_period_s=monitor_period_s, reaction_time_s=recipe.reaction_time_s)
        return t0

    return synthesis_run(heater, injector, detector, recipe, metadata, inject_and_acquire,
                         integration_s=integration_s, n_background=n_background,
                         acquisition=acquisition, cooldown_s=cooldown_s,
                         monitor_period_s=monitor_period_s, timer=timer)


def injection_with_frames(heater, injector, detector, timer, piston, offsets, *,
                          growth_temperature_c=None, acquisition="software",
                          monitor_period_s=10.0, reaction_time_s=None, reaction_start=None,
                          after_frame=None):
    """Fire ``piston`` and take frames at ``t_fire + offsets``; return t_fire (epoch s).

    Frames start at the FIRE reply, not after the stroke: the stroke's Status is
    checked once the injector's jam time-out has passed, so a jam fails the run.
    The reaction ends (heater off) ``reaction_time_s`` after ``reaction_start`` (epoch s;
    default: this firing), on the way if frames go on longer. ``after_frame``: see
    :func:`frames_after_firing`.
    """
    t_fire = yield from inject(injector, heater, piston, growth_temperature_c,
                               wait=False, group=f"fire_{piston.lower()}")
    logger.info("piston %s fired at %.6f", piston, t_fire)
    yield from frames_after_firing(heater, injector, detector, timer, piston, t_fire, offsets,
                                   acquisition=acquisition, monitor_period_s=monitor_period_s,
                                   reaction_time_s=reaction_time_s,
                                   reaction_start=reaction_start, after_frame=after_frame)
    return t_fire


def frames_after_firing(heater, injector, detector, timer, piston, t_fire, offsets, *,
                        acquisition="software", monitor_period_s=10.0, reaction_time_s=None,
                        reaction_start=None, after_frame=None):
    """Frames at ``t_fire + offsets`` after ``piston`` fired (its stroke's Status, group
    ``fire_<piston>``, checked after the jam time-out), the reaction's end on the way
    (see :func:`injection_with_frames`). ``after_frame(index)``: a plan after each
    software-triggered frame; True ends the schedule there (in-run decisions)."""
    heater_off_at_s = None if reaction_time_s is None else \
        (reaction_start or t_fire) + reaction_time_s - t_fire
    extra = {} if after_frame is None else {"after_frame": after_frame}
    yield from ACQUISITION[acquisition](
        detector, heater, timer, t_fire, offsets, monitor_period_s=monitor_period_s,
        heater_off_at_s=heater_off_at_s,
        check_group=(f"fire_{piston.lower()}", getattr(injector, "jam_timeout_s", 5.0) + 0.5),
        declare=False, **extra)


def synthesis_run(heater, injector, detector, recipe: Recipe, metadata: dict, inject_and_acquire,
                  *, integration_s, n_background, acquisition, cooldown_s, monitor_period_s,
                  timer):
    """One run around ``inject_and_acquire()``: preheat, background frames, the injections
    and frames (staged once), optional cool-down; made safe whatever ends it."""
    # sample and operator also at the top, where catalog searches look (Key("sample"))
    metadata = {"recipe": recipe.to_metadata(), "sample": recipe.sample,
                "operator": recipe.operator, "detectors": [detector.name],
                "acquisition": acquisition, "n_background": n_background,
                "hints": {"dimensions": [(["time"], "primary")]}, **metadata}

    def declared_then(frames):
        # the stream of frames declared once the detector is staged (its configuration then
        # holds the beam monitors' flux and transmission, which the analysis calibrates
        # with) and before the injection, so no descriptor is composed in the first frame's
        # dead time
        yield from declare_frames(detector, heater, detector_timed=acquisition == "detector")
        return (yield from frames)

    def protocol():
        yield from bps.mv(detector.exposure_time, integration_s)
        yield from preheat(heater, recipe.injection_temperature_c)
        # one staging (one HDF5 file, one resource) per stream of frames
        yield from bpp.stage_wrapper(background_frames(detector, heater, n_background),
                                     [detector])
        # the acquisition agenda ends the reaction (heater off), waiting for it if the
        # frames finish earlier
        yield from bpp.stage_wrapper(declared_then(inject_and_acquire()), [detector])
        if cooldown_s:
            yield from record_cooldown(heater, timer, cooldown_s, monitor_period_s or 10.0)

    pistons = [metadata["piston"], *metadata.get("steering", {}).get("pistons", ())]
    if "second_injection" in metadata:
        pistons.append(metadata["second_injection"]["piston"])
    pistons = list(dict.fromkeys(pistons))
    # a spent piston or a controller that does not answer is refused before the run opens and
    # the flask preheats; the run is made safe inside, so that it records the heater's safe state
    return bpp.pchain(check_answers(heater), check_loaded(injector, pistons),
                      run_accounting_frames(ending_safely(named_failures(protocol()), heater,
                                                          injector), metadata))
