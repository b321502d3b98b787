"""Plan stubs of the hot-injection protocol (seed 000 §S.1.2), reusable on their own.

Each stub is a small generator for use inside an open run. Waits on absolute
deadlines go through a :class:`~ncsynth.devices.clock.DeadlineTimer`, so the
schedule never drifts with overhead and the RunEngine can pause or abort
during any wait.
"""

from __future__ import annotations

import logging

import bluesky.plan_stubs as bps
import numpy as np

from ncsynth import timebase

logger = logging.getLogger(__name__)

PRIMARY, BACKGROUND, INJECTION, TEMPERATURE = "primary", "background", "injection", "temperature"


def call(function, *args, **kwargs):
    """Run a quick, blocking device call (arm, disarm, safe_off) as a plan step."""
    yield from bps.null()
    return function(*args, **kwargs)


def preheat(heater, temperature_c: float):
    """Set the heater to ``temperature_c`` and wait until it has settled."""
    yield from bps.mv(heater, temperature_c)


def background_frames(detector, heater, n_frames: int):
    """Record ``n_frames`` frames before injection (stream ``background``), for subtraction."""
    for _ in range(n_frames):
        yield from bps.trigger_and_read([detector, heater.temperature, heater.output],
                                        name=BACKGROUND)


def inject(injector, heater, piston: str = "A", growth_temperature_c: float | None = None,
           wait: bool = True, group: str = "fire"):
    """Arm, fire ``piston`` and, at once, set the growth setpoint; return t0.

    t = 0 of the reaction is the injector's own firing timestamp (epoch s),
    known from the board's reply to FIRE and read back in the ``injection``
    stream. The growth setpoint goes to the controller right after the fire
    command. With ``wait=False`` the piston's stroke (Status in ``group``) is
    not waited for here, so frames can start at t0; the caller must wait for
    ``group`` later (a jam then fails the run).
    """
    yield from call(injector.arm)
    yield from bps.abs_set(injector, piston, group=group)
    if growth_temperature_c is not None:
        yield from bps.abs_set(heater.setpoint, growth_temperature_c, wait=False)
    if wait:
        yield from bps.wait(group=group)
    reading = yield from bps.trigger_and_read([injector], name=INJECTION)
    return firing_time(injector, reading, piston)


def firing_time(injector, reading: dict, piston: str) -> float:
    """The firing timestamp of ``piston`` from an injector reading (epoch s)."""
    key = f"{injector.name}_fire_time_{piston.lower()}"
    if key not in reading:
        raise KeyError(f"{injector.name} reading has no {key!r}; got {sorted(reading)}")
    return float(reading[key]["value"])


def timed_acquisition(detector, heater, timer, t0: float, offsets_s, *,
                      monitor_period_s: float = 10.0, heater_off_at_s: float | None = None,
                      check_group: tuple[str, float] | None = None):
    """Software-triggered frames at absolute deadlines ``t0 + offsets_s``.

    Every frame is read with the heater's temperature and output (stream
    ``primary``); between frames the heater is also read every
    ``monitor_period_s`` (stream ``temperature``). At ``t0 + heater_off_at_s``
    the reaction ends: the heater is switched off and frames go on recording
    the cool-down. ``check_group = (group, after_s)`` waits for the Statuses of
    ``group`` (e.g. the injector's stroke) once ``after_s`` has passed, so a
    failure there ends the run.
    """
    readables = [detector, heater.temperature, heater.output]

    def act(kind, index):
        if kind == "frame":
            yield from bps.trigger_and_read(readables, name=PRIMARY)
        else:
            yield from bps.trigger_and_read([heater.temperature, heater.output],
                                            name=TEMPERATURE)

    agenda = _agenda(t0, offsets_s, monitor_period_s, heater_off_at_s, check_group)
    yield from _follow(agenda, timer, heater, check_group, act)


def detector_timed_acquisition(detector, heater, timer, t0: float, offsets_s, *,
                               monitor_period_s: float = 10.0,
                               heater_off_at_s: float | None = None,
                               check_group: tuple[str, float] | None = None):
    """Frames at ``t0 + offsets_s`` timed by the detector itself (flyer interface).

    The detector receives every start time at kickoff and keeps the schedule on its
    own clock, so frame timing does not depend on the RunEngine. Meanwhile the plan
    reads the heater at every frame start and every ``monitor_period_s`` (stream
    ``temperature``), collects the frames written so far (stream ``primary``) and
    ends the reaction at ``t0 + heater_off_at_s``.
    """
    offsets = np.asarray(offsets_s, dtype=float)
    yield from call(detector.prepare_sequence, t0 + offsets)
    yield from bps.declare_stream(detector, name=PRIMARY, collect=True)
    yield from bps.kickoff(detector, wait=True)

    def act(kind, index):
        yield from bps.trigger_and_read([heater.temperature, heater.output], name=TEMPERATURE)
        if kind == "frame" and index > 0:
            yield from bps.collect(detector, name=PRIMARY)

    agenda = _agenda(t0, offsets, monitor_period_s, heater_off_at_s, check_group)
    yield from _follow(agenda, timer, heater, check_group, act)
    yield from bps.complete(detector, wait=True)
    yield from bps.collect(detector, name=PRIMARY)


def _follow(agenda, timer, heater, check_group, act):
    """Walk an :func:`_agenda`: status checks, waits to each deadline, the reaction's
    end; ``act(kind, index)`` is the plan for a "frame" or "monitor" item.

    A checkpoint precedes every wait, so a pause (one Ctrl-C) takes effect at the
    next deadline instead of at the end of a two-hour schedule. A frame whose successor
    is already due (after a resume, or a stall longer than the frame spacing) is
    skipped and the count logged, so the run rejoins its schedule at once instead of
    taking the missed frames late, back to back.
    """
    frame_deadlines = [deadline for deadline, kind, _ in agenda if kind == "frame"]
    skipped = []
    for deadline, kind, index in agenda:
        if kind == "check":
            yield from bps.wait(group=check_group[0])
            continue
        if kind == "frame" and index + 1 < len(frame_deadlines) \
                and timebase.now() > frame_deadlines[index + 1]:
            skipped.append(index)
            continue
        if skipped:
            logger.warning("skipped frames %d-%d: their deadlines had passed, %.3f s ago for "
                           "the first (pause or stall)", skipped[0], skipped[-1],
                           timebase.now() - frame_deadlines[skipped[0]])
            skipped = []
        yield from bps.checkpoint()
        yield from bps.mv(timer, deadline)
        if kind == "end":
            yield from end_reaction(heater)
        else:
            yield from act(kind, index)


def end_reaction(heater):
    """End of the reaction time: heating off (§S.1.2), the flask cools down."""
    logger.info("reaction time over: heater off")
    yield from call(heater.safe_off)


def record_cooldown(heater, timer, duration_s: float, period_s: float = 10.0):
    """Read the heater every ``period_s`` for ``duration_s`` (stream ``temperature``)."""
    t_start = timebase.now()
    for k in range(1, int(duration_s // period_s) + 1):
        yield from bps.mv(timer, t_start + k * period_s)
        yield from bps.trigger_and_read([heater.temperature, heater.output], name=TEMPERATURE)


def _agenda(t0, offsets_s, monitor_period_s, heater_off_at_s, check_group=None):
    """Merge frame deadlines, monitor readings, status checks and the reaction's end."""
    offsets = np.asarray(offsets_s, dtype=float)
    items = [(t0 + off, 0, "frame", i) for i, off in enumerate(offsets)]
    if heater_off_at_s is not None:
        items.append((t0 + heater_off_at_s, 1, "end", -1))
    if check_group is not None:
        items.append((t0 + check_group[1], 3, "check", -1))
    if monitor_period_s and monitor_period_s > 0 and offsets.size:
        # a frame already reads the heater: skip monitor slots that have one nearby;
        # monitoring goes on to the reaction's end even when the frames stop earlier
        covered = set(np.round(offsets / monitor_period_s).astype(int))
        last_s = max(offsets[-1], heater_off_at_s or 0.0)
        for k in range(1, int(last_s // monitor_period_s) + 1):
            if k not in covered:
                items.append((t0 + k * monitor_period_s, 2, "monitor", -1))
    items.sort()
    return [(t, kind, i) for t, _, kind, i in items]
