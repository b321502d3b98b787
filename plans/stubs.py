"""Plan stubs of the hot-injection protocol (seed 000 §S.1.2), reusable on their own.

Each stub is a small generator for use inside an open run. Waits on absolute
deadlines go through a :class:`~ncsynth.devices.clock.DeadlineTimer`, so the
schedule never drifts with overhead and the RunEngine can pause or abort
during any wait.

The loop that runs while frames are due (:func:`_follow`, :func:`take_frame`, the
heater monitor) yields bare :class:`~bluesky.Msg` objects rather than calling
``bluesky.plan_stubs``: every call of a ``@plan`` stub records the caller's stack
(``traceback.format_stack``, an ``os.stat`` per frame) for its "never iterated"
warning, ~0.3 ms in the middle of the path from a deadline to the detector's trigger
and a tenth of the dry run's CPU time.
"""

from __future__ import annotations

import gc
import logging

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky import Msg
from bluesky.utils import RunEngineControlException
from bluesky.utils import short_uid as _short_uid

from ncsynth import timebase
from ncsynth.devices.heater import HeaterFaultError

from .frame_account import FrameAccount

logger = logging.getLogger(__name__)

PRIMARY, BACKGROUND, INJECTION, TEMPERATURE = "primary", "background", "injection", "temperature"
#: The warning of :func:`_follow` for frames whose deadlines had passed (the last frame is
#: always taken, so every skip is told when the schedule is rejoined).
SKIPPED_FRAMES = ("skipped %d frames (%d-%d): their deadlines had passed, %.3f s ago for the "
                  "first (pause or stall)")


def call(function, *args, **kwargs):
    """Run a quick, blocking device call (arm, disarm, safe_off) as a plan step."""
    yield from bps.null()
    return function(*args, **kwargs)


def preheat(heater, temperature_c: float):
    """Set the heater to ``temperature_c`` and wait until it has settled. A pause during
    the wait (one Ctrl-C in a session) rewinds to the checkpoint before it: resuming sets
    the heater again and waits for it to settle."""
    yield from bps.checkpoint()
    yield from bps.mv(heater, temperature_c)


def check_heater(heater):
    """Fail the run if the heater has tripped on a fault (its ``fault`` says why): a
    thermocouple break during acquisition switches the heater off but fails no Status,
    and a run that went on would close as a success."""
    fault = getattr(heater, "fault", None)
    if fault:
        raise HeaterFaultError(f"{heater.name}: {fault}")
    yield from ()


def background_frames(detector, heater, n_frames: int):
    """Record ``n_frames`` frames before injection (stream ``background``), for subtraction."""
    for _ in range(n_frames):
        yield from bps.trigger_and_read([detector, heater], name=BACKGROUND)
        yield from check_heater(heater)


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
                      check_group: tuple[str, float] | None = None, declare: bool = True,
                      after_frame=None):
    """Software-triggered frames at absolute deadlines ``t0 + offsets_s``.

    Every frame is read with the heater's temperature, setpoint and output (stream
    ``primary``); between frames the heater is also read every
    ``monitor_period_s`` (stream ``temperature``). At ``t0 + heater_off_at_s``
    the reaction ends: the heater is switched off and frames go on recording
    the cool-down. ``check_group = (group, after_s)`` waits for the Statuses of
    ``group`` (e.g. the injector's stroke) once ``after_s`` has passed, so a
    failure there ends the run. With ``declare`` the stream ``primary`` is declared first
    (:func:`declare_frames`); pass False if the run has declared it already.
    ``after_frame(index)``: a plan run after each frame (in-run decisions,
    :mod:`ncsynth.plans.steering`); returning True ends this schedule there.
    """
    offsets = np.asarray(offsets_s, dtype=float)
    mid_exposure = t0 + offsets + _exposure_s(detector) / 2
    if declare:
        yield from declare_frames(detector, heater)

    def act(kind, index):
        if kind == "frame":
            yield from take_frame(detector, heater, timer, mid_exposure[index])
        else:
            yield from _trigger_and_read([heater], TEMPERATURE)

    agenda = _agenda(t0, offsets, monitor_period_s, heater_off_at_s, check_group)
    yield from collector_frozen(_on_schedule(
        timer, agenda, mid_exposure, _follow(agenda, timer, heater, check_group, act, after_frame)))


def declare_frames(detector, heater, detector_timed: bool = False):
    """Declare the stream ``primary`` of the frames (its descriptor) ahead of the first one.

    Software-triggered frames are events of the detector and the heater's readings
    (temperature, setpoint, output: :func:`take_frame`); detector-timed ones are collected
    from the detector.
    Declared once per run, before t = 0, the descriptor (describe, configuration,
    validation: several ms) is not composed in the first frame's dead time.
    """
    if detector_timed:
        yield from bps.declare_stream(detector, name=PRIMARY, collect=True)
    else:
        yield from bps.declare_stream(detector, heater, name=PRIMARY)


def take_frame(detector, heater, timer, mid_exposure: float, name: str = PRIMARY):
    """One software-triggered frame, now, read with the heater (one event in ``name``).

    The detector is triggered first and alone; the heater's readings (one Modbus
    transaction: :meth:`~ncsynth.devices.heater.HeatingController.trigger`) are taken at
    ``mid_exposure`` (epoch s), the temperature the frame integrates over. Its Modbus
    traffic thus stays clear of the exposure's start, where it would add ~1 ms
    of jitter to the frame's start time, and off the frame's dead time.
    """
    group = _short_uid("frame")
    yield Msg("trigger", detector, group=group)
    yield from _until(timer, mid_exposure)
    yield Msg("trigger", heater, group=group)
    yield Msg("wait", None, group=group)
    return (yield from _event([detector, heater], name))


def _until(timer, deadline: float):
    """``bps.mv(timer, deadline)``: wait for the active clock to reach ``deadline``."""
    group = _short_uid("deadline")
    yield Msg("set", timer, deadline, group=group)
    yield Msg("wait", None, group=group)


def _trigger_and_read(readables, name: str):
    """``bps.trigger_and_read(readables, name)``."""
    group = _short_uid("trigger")
    for obj in readables:
        yield Msg("trigger", obj, group=group)
    yield Msg("wait", None, group=group)
    return (yield from _event(readables, name))


def _event(readables, name: str):
    """Read ``readables`` (already triggered) into one event of stream ``name``; a failed
    read drops the bundle, as :func:`bluesky.plan_stubs.trigger_and_read` does."""
    yield Msg("create", None, name=name)

    def read_all():
        readings = {}
        for obj in readables:
            readings.update((yield Msg("read", obj)) or {})
        return readings

    def drop(error):
        yield Msg("drop")
        raise error

    def save():
        yield Msg("save")

    return (yield from bpp.contingency_wrapper(read_all(), except_plan=drop, else_plan=save))


def _exposure_s(detector) -> float:
    """The detector's exposure time, s (its ``exposure_time`` configuration signal)."""
    return float(detector.exposure_time.get())


def detector_timed_acquisition(detector, heater, timer, t0: float, offsets_s, *,
                               monitor_period_s: float = 10.0,
                               heater_off_at_s: float | None = None,
                               check_group: tuple[str, float] | None = None,
                               declare: bool = True):
    """Frames at ``t0 + offsets_s`` timed by the detector itself (flyer interface).

    The detector receives every start time at kickoff and keeps the schedule on its
    own clock, so frame timing does not depend on the RunEngine. Meanwhile the plan
    reads the heater at every frame's mid-exposure and every ``monitor_period_s`` (stream
    ``temperature``), collects the frames written so far (stream ``primary``) and
    ends the reaction at ``t0 + heater_off_at_s``. ``declare``: as for
    :func:`timed_acquisition`.
    """
    offsets = np.asarray(offsets_s, dtype=float)
    yield from bps.prepare(detector, t0 + offsets, wait=True)
    if declare:
        yield from declare_frames(detector, heater, detector_timed=True)
    yield from bps.kickoff(detector, wait=True)

    def act(kind, index):
        yield from _trigger_and_read([heater], TEMPERATURE)
        if kind == "frame" and index > 0:
            yield Msg("collect", detector, stream=False, return_payload=True, name=PRIMARY)

    # at mid-exposure: the frame's temperature, and the RunEngine's work off its start
    mid_exposure = offsets + _exposure_s(detector) / 2
    agenda = _agenda(t0, mid_exposure, monitor_period_s, heater_off_at_s, check_group)
    # readings passed over are not frames: the detector takes every frame, the account of the
    # run counts those it started late (run_accounting_frames)
    yield from collector_frozen(_on_schedule(
        timer, agenda, (), _follow(agenda, timer, heater, check_group, act, tell_skips=False)))
    yield from bps.complete(detector, wait=True)
    yield from bps.collect(detector, name=PRIMARY)


def _on_schedule(timer, agenda, more_deadlines, plan):
    """Run ``plan`` (the walk of ``agenda``) with the timer prepared with every deadline it
    will wait for: the agenda's and ``more_deadlines`` (each frame's mid-exposure). The
    clock then keeps each next deadline while the plan still finishes the previous item
    (:class:`~ncsynth.devices.clock.DeadlineTimer`); the schedule is dropped at the end."""
    deadlines = sorted([float(t) for t, kind, _ in agenda if kind != "check"]
                       + [float(t) for t in more_deadlines])
    yield from bps.prepare(timer, deadlines, wait=True)
    return (yield from bpp.finalize_wrapper(plan, bps.prepare(timer, (), wait=True)))


def collector_frozen(plan):
    """Run ``plan`` with every object that exists now frozen out of Python's cyclic
    garbage collector (:func:`gc.freeze`), given back at the end (:func:`gc.unfreeze`).

    A full (generation 2) collection walks every tracked object of the session, some
    200 000 once bluesky, ophyd and the analysis are imported, and holds the GIL for
    0.1-0.5 s on this kind of machine: a frame due meanwhile starts that late or is
    skipped. Frozen, those objects are not walked; collections during the acquisition
    only see what it creates. Garbage that existed at the start is reclaimed after.
    """
    yield from call(gc.freeze)
    return (yield from bpp.finalize_wrapper(plan, call(gc.unfreeze)))


def _follow(agenda, timer, heater, check_group, act, after_frame=None, tell_skips=True):
    """Walk an :func:`_agenda`: status checks, waits to each deadline, the reaction's
    end; ``act(kind, index)`` is the plan for a "frame" or "monitor" item, and
    ``after_frame(index)`` (optional) a plan after each frame: True ends the walk there
    (the status checks still due are waited for; the reaction's end is then the caller's).

    A checkpoint precedes every wait, so a pause (one Ctrl-C) takes effect at the
    next deadline instead of at the end of a two-hour schedule. A frame whose successor
    is already due (after a resume, or a stall longer than the frame spacing) is
    skipped, so the run rejoins its schedule at once instead of taking the missed frames
    late, back to back; with ``tell_skips`` each such gap is logged in one warning with its
    count (:data:`SKIPPED_FRAMES`).
    """
    frame_deadlines = [deadline for deadline, kind, _ in agenda if kind == "frame"]
    skipped = []
    for position, (deadline, kind, index) in enumerate(agenda):
        if kind == "check":
            yield from bps.wait(group=check_group[0])
            continue
        if kind == "frame" and index + 1 < len(frame_deadlines) \
                and timebase.now() > frame_deadlines[index + 1]:
            skipped.append(index)
            continue
        if skipped:
            if tell_skips:
                logger.warning(SKIPPED_FRAMES, len(skipped), skipped[0], skipped[-1],
                               timebase.now() - frame_deadlines[skipped[0]])
            skipped = []
        yield Msg("checkpoint")
        yield from _until(timer, deadline)
        if kind == "end":
            yield from end_reaction(heater)
        else:
            yield from act(kind, index)
            yield from check_heater(heater)
            if kind == "frame" and after_frame is not None and (yield from after_frame(index)):
                if any(item[1] == "check" for item in agenda[position + 1:]):
                    yield from bps.wait(group=check_group[0])
                return


def run_accounting_frames(plan, md: dict):
    """:func:`bluesky.preprocessors.run_wrapper` whose stop document, when the run missed frames
    of its schedule, says in its ``reason`` how many and why
    (:class:`~ncsynth.plans.frame_account.FrameAccount`, subscribed to the RunEngine for the
    run: it counts the run's own documents, so frames triggered one by one and frames
    collected from a detector-timed sequence count alike). The exit status stays "success":
    what was taken is good data. A detector-timed run also logs the count in one warning
    (software-triggered frames are told as they are skipped, :data:`SKIPPED_FRAMES`)."""
    account = FrameAccount()

    def except_plan(error):
        if isinstance(error, RunEngineControlException):
            yield from bps.close_run(exit_status=error.exit_status)
        else:
            yield from bps.close_run(exit_status="fail", reason=str(error))

    def else_plan():
        reason = account.reason()
        if reason and md.get("acquisition") == "detector":
            logger.warning("%s", reason)
        yield from bps.close_run(reason=reason)

    def accounted_run():
        uid = yield from bps.open_run(md)
        yield from bpp.contingency_wrapper(plan, except_plan=except_plan, else_plan=else_plan)
        return uid

    token = yield from bps.subscribe("all", account)
    return (yield from bpp.finalize_wrapper(accounted_run(), bps.unsubscribe(token)))


def end_reaction(heater):
    """End of the reaction time: heating off (§S.1.2), the flask cools down."""
    logger.info("reaction time over: heater off")
    yield from call(heater.safe_off)


def record_cooldown(heater, timer, duration_s: float, period_s: float = 10.0):
    """Read the heater every ``period_s`` for ``duration_s`` (stream ``temperature``)."""
    t_start = timebase.now()
    for k in range(1, int(duration_s // period_s) + 1):
        yield from bps.mv(timer, t_start + k * period_s)
        yield from bps.trigger_and_read([heater], name=TEMPERATURE)
        yield from check_heater(heater)


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
