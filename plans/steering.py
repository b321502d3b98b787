"""Steer a synthesis from the live fits, inside the run (issue 19).

:func:`steered_synthesis` is :func:`~ncsynth.plans.hot_injection` (piston A, frames on the
§S.1.4 schedule, the same validation and safety) with one decision taken on the way:

* ``target_radius_nm``: end the growth when the mean radius has reached it (heater to its
  safe state; with ``quench``, piston B, loaded with cold solvent, then dilutes and cools the
  flask, adding no precursor). Frames go on over the cool-down, as after the fixed protocol's
  end; the recipe's reaction time stays the latest end.
* ``second_injection_at_radius_nm``: fire piston B when the first population has reached
  that radius, instead of after a fixed delay (seed 000 §S.5), then frames on a second,
  dense schedule from B's firing, as :func:`~ncsynth.plans.double_injection` takes them.

After every frame the plan waits for that frame's fit (:class:`~ncsynth.steering_feed.FitFeed`)
at most until the next frame is due in the world's time (a dry run's simulated world waits
with it), and applies the rule of :mod:`.decisions` to the running estimate of the last
frames. The decision, the numbers it used, the action, and its latency (the newest fit's
arrival to the device's reply, wall clock; the newest frame's mid-exposure to the action,
world clock) are one event of the run's stream ``agent``.

Safe: arguments outside the configured limits are refused before anything moves; piston B
is checked loaded before the run opens and asked again (``STATUS?``) before it fires: a spent
or empty piston is not fired, the refusal recorded. When the live analysis stops delivering
(lost, or no fit for ``limits.analysis_stall_s`` of wall time), the plan says so in the log
and in ``agent`` and goes on with its fixed protocol: the growth ends at the recipe's reaction
time; piston B fires ``fallback_delay_s`` after A.
"""

from __future__ import annotations

import logging
import math
import statistics
import time

import bluesky.plan_stubs as bps
from ophyd import Component as Cpt
from ophyd import Device, Signal

from ncsynth import timebase
from ncsynth.devices.clock import DeadlineTimer

from .checks import check_protocol, hot_injection_schedule, schedule_offsets
from .decisions import AGENT, RadiusRule, SteeringLimits, check_steering, running_radius
from .hot_injection import frames_after_firing, injection_with_frames, synthesis_run
from .readiness import NOT_READY
from .recipe import Recipe
from .stubs import call, end_reaction, inject

logger = logging.getLogger(__name__)

#: World time, s, the plan leaves before the next frame's deadline when it waits for a fit.
DEADLINE_MARGIN_S = 0.005


#: The fields of one decision (stream ``agent``; the text ones first): units in the names,
#: times of the world clock (epoch s, or s after piston A's firing; wall-clock latencies say so).
AGENT_TEXT = ("rule", "action", "reason")
AGENT_NUMBERS = ("world_time", "time_s", "threshold_nm", "confidence_sigma", "lead_s",
                 "predicted_nm", "radius_nm",
                 "radius_err_nm", "rate_nm_per_s", "n_fits", "fit_time_s", "crossing_time_s",
                 "frame_interval_s", "latency_wall_s", "latency_world_s", "evaluations",
                 "evaluation_latency_median_s", "evaluation_latency_max_s")
#: An ophyd Device of soft Signals, one per field, read into the stream ``agent``.
AgentRecord = type("AgentRecord", (Device,), {
    **{name: Cpt(Signal, value="", kind="normal") for name in AGENT_TEXT},
    **{name: Cpt(Signal, value=math.nan, kind="normal") for name in AGENT_NUMBERS}})


class Steering:
    """The decision taken after each frame (see module); one per run."""

    def __init__(self, feed, heater, injector, rule: RadiusRule, limits: SteeringLimits, *,
                 quench: bool = False, fallback_delay_s: float | None = None):
        self.feed, self.heater, self.injector = feed, heater, injector
        self.rule, self.limits, self.quench = rule, limits, quench
        self.fallback_delay_s = fallback_delay_s
        self.record = AgentRecord(name=AGENT)
        self.frames = 0
        self.done = False
        self.fallback: str | None = None
        self._fallback_told = False
        self.t0: float | None = None
        self.t_second: float | None = None  # piston B's firing (second injection at radius)
        self._evaluation_latencies: list[float] = []
        self._first_action: tuple[float, float] | None = None
        self._last_arrival_wall = math.nan  # wall time (perf_counter) of the newest fit

    # -- after each frame ------------------------------------------------------------------
    def after_frame(self, t_fire: float, offsets):
        """``after_frame`` plan for the frames of a schedule started at ``t_fire``."""
        def hook(index):
            self.frames += 1
            if self.t0 is None:  # the first frame: the analysis' time starts now
                self.t0, self._last_arrival_wall = t_fire, time.perf_counter()
            if self.done:
                return False
            interval_s = float(offsets[index + 1] - offsets[index]) \
                if index + 1 < len(offsets) else math.nan
            next_deadline = t_fire + offsets[index + 1] if index + 1 < len(offsets) else None
            if self.fallback is None:
                yield from call(self._wait_for_fit, next_deadline)
            if self.fallback is not None:
                return (yield from self._fixed_protocol(interval_s))
            estimate = running_radius(self.feed.points(), self.limits.window_frames)
            if estimate is not None and math.isfinite(estimate.arrived_wall_s):
                self._evaluation_latencies.append(time.perf_counter() - estimate.arrived_wall_s)
            if not self.rule.reached(estimate):
                return False
            return (yield from self._act(estimate, interval_s))
        return hook

    def _wait_for_fit(self, next_deadline: float | None) -> None:
        """Block until this frame's fit has come, at most until the next frame is due (world
        time: a dry run's world waits with the plan, see :meth:`FitFeed.wait_for`) and at most
        ``analysis_stall_s`` of wall time; set :attr:`fallback` when the analysis is lost or
        has delivered nothing for ``analysis_stall_s`` of wall time."""
        before = len(self.feed)
        self.feed.wait_for(self.frames, self.limits.analysis_stall_s,
                           None if next_deadline is None else next_deadline - DEADLINE_MARGIN_S)
        now = time.perf_counter()
        if len(self.feed) > before:
            self._last_arrival_wall = now
        if self.feed.error:
            self.fallback = f"the live analysis stopped delivering: {self.feed.error}"
        elif len(self.feed) < self.frames and \
                now - self._last_arrival_wall > self.limits.analysis_stall_s:
            self.fallback = (f"the live analysis stopped delivering: no fit for "
                             f"{now - self._last_arrival_wall:.1f} s, {self.frames - len(self.feed)}"
                             f" frames behind")

    # -- actions ---------------------------------------------------------------------------
    def _act(self, estimate, interval_s: float):
        self.done = True
        fields = {"threshold_nm": self.rule.radius_nm,
                  "confidence_sigma": self.rule.confidence_sigma,
                  "lead_s": self.rule.lead_for(estimate),
                  "predicted_nm": self.rule.predicted_nm(estimate),
                  "radius_nm": estimate.radius_nm, "radius_err_nm": estimate.radius_err_nm,
                  "rate_nm_per_s": estimate.rate_nm_per_s, "n_fits": estimate.n_fits,
                  "fit_time_s": estimate.time_s,
                  "crossing_time_s": estimate.crossing_time_s(self.rule.radius_nm),
                  "frame_interval_s": interval_s}
        reason = (f"running radius {estimate.radius_nm:.4f} +- {estimate.radius_err_nm:.4f} nm "
                  f"({estimate.n_fits} frames)" + (
                      f", {self.rule.predicted_nm(estimate):.4f} nm after "
                      f"{self.rule.lead_for(estimate):g} s more growth,"
                      if self.rule.lead_for(estimate) else "") +
                  f" reached {self.rule.radius_nm} nm at {self.rule.confidence_sigma:g} sigma")
        if self.rule.name == "target_radius":
            action, ends = (yield from self._end_growth()), False
        else:
            action, ends = (yield from self._fire_second()), self.t_second is not None
        done_wall, done_world = self._first_action or (time.perf_counter(), timebase.now())
        yield from self._record(self.rule.name, action, reason, done_world, **fields,
                                latency_wall_s=done_wall - estimate.arrived_wall_s,
                                latency_world_s=done_world - (self.t0 + estimate.time_s))
        return ends

    def _end_growth(self):
        yield from end_reaction(self.heater)
        self._acted()
        action = "heater off (safe state)"
        if self.quench:
            action += "; " + (yield from self._fire_b("quench by piston B (cold solvent)",
                                                      wait=True))
        return action

    def _fire_second(self):
        return (yield from self._fire_b("piston B fired (second injection)", wait=False))

    def _fire_b(self, what: str, *, wait: bool):
        """Fire piston B if the injector reports it loaded; the action's text either way."""
        yield from bps.trigger(self.injector, wait=True)  # STATUS? into the state signals
        state = yield from bps.rd(self.injector.state_b)
        if state in NOT_READY:
            logger.error("steering: piston B %s: not fired", NOT_READY[state])
            return f"refused: piston B {NOT_READY[state]}; not fired"
        self.t_second = yield from inject(self.injector, self.heater, "B", None, wait=wait,
                                          group="fire_b")
        self._acted()
        return what

    def _acted(self) -> None:
        """Note when the decision's first device action was done (wall, world clock)."""
        if self._first_action is None:
            self._first_action = (time.perf_counter(), timebase.now())

    def _fixed_protocol(self, interval_s: float):
        """After the fallback: say so once, then what the fixed protocol does (B at its
        fixed delay, if B is this run's decision)."""
        if not self._fallback_told:
            self._fallback_told = True
            logger.warning("steering: %s; going on with the fixed protocol", self.fallback)
            yield from self._record("fallback", "none: the fixed protocol goes on",
                                    self.fallback, timebase.now(), frame_interval_s=interval_s)
        if self.rule.name == "target_radius" or self.fallback_delay_s is None:
            return False
        if timebase.now() < self.t0 + self.fallback_delay_s:
            return False
        self.done = True
        action = yield from self._fire_second()
        yield from self._record("fallback_delay", action,
                                f"fixed protocol: piston B {self.fallback_delay_s:g} s after A",
                                timebase.now(), frame_interval_s=interval_s)
        return self.t_second is not None

    def _record(self, rule: str, action: str, reason: str, world_time: float, **fields):
        latencies = self._evaluation_latencies
        values = {**dict.fromkeys(AGENT_NUMBERS, math.nan),
                  "rule": rule, "action": action, "reason": reason, "world_time": world_time,
                  "time_s": world_time - self.t0, "evaluations": len(latencies),
                  "evaluation_latency_median_s": statistics.median(latencies) if latencies
                  else math.nan,
                  "evaluation_latency_max_s": max(latencies, default=math.nan), **fields}
        for name, value in values.items():  # numbers as floats: one dtype whatever comes first
            getattr(self.record, name).put(float(value) if name in AGENT_NUMBERS else value)
        logger.info("steering: %s -> %s (%s)", rule, action, reason)
        yield from bps.trigger_and_read([self.record], name=AGENT)


def steered_synthesis(heater, injector, detector, recipe: Recipe | dict, *, feed,
                      target_radius_nm: float | None = None, quench: bool = False,
                      second_injection_at_radius_nm: float | None = None,
                      limits: SteeringLimits | None = None, fallback_delay_s: float = 240.0,
                      n_frames: int = 575, integration_s: float = 0.075,
                      dead_time_s: float = 0.022, ratio: float = 1.015,
                      second_n_frames: int | None = None, second_ratio: float | None = None,
                      n_background: int = 5, monitor_period_s: float = 10.0,
                      cooldown_s: float = 0.0, timer: DeadlineTimer | None = None,
                      md: dict | None = None):
    """Hot injection with one in-run decision from the live fits (see module).

    ``feed``: the :class:`~ncsynth.steering_feed.FitFeed` the live analysis fills.
    ``limits``: :class:`~ncsynth.plans.decisions.SteeringLimits` (configuration ``[steering]``).
    A quench needs ``recipe.syringe_b`` (the cold solvent) and ``recipe.cd_second_molar`` 0;
    a second injection needs ``syringe_b`` and ``cd_second_molar`` > 0. Other arguments as
    :func:`~ncsynth.plans.hot_injection` and :func:`~ncsynth.plans.double_injection`
    (``fallback_delay_s``: B's delay after A when the analysis stops delivering).
    Everything is checked when this function is called, before anything moves.
    """
    limits = limits or SteeringLimits()
    recipe = check_protocol(recipe, n_background, "software", monitor_period_s, cooldown_s,
                            max_temperature_c=getattr(heater, "max_temperature_c", None))
    steer = check_steering(limits, target_radius_nm=target_radius_nm, quench=quench,
                           second_injection_at_radius_nm=second_injection_at_radius_nm)
    offsets = hot_injection_schedule(recipe, n_frames=n_frames, integration_s=integration_s,
                                     dead_time_s=dead_time_s, ratio=ratio,
                                     monitor_period_s=monitor_period_s, cooldown_s=cooldown_s)
    second = steer["second_injection_at_radius_nm"]
    uses_b = second is not None or steer["quench"]
    if uses_b and not recipe.syringe_b:
        raise ValueError("piston B's action needs recipe.syringe_b (what it holds)")
    if steer["quench"] and recipe.cd_second_molar > 0:
        raise ValueError("a quench adds no precursor: recipe.cd_second_molar must be 0 (cold "
                         "solvent in syringe B)")
    if second is not None and not recipe.cd_second_molar > 0:
        raise ValueError("a second injection needs recipe.cd_second_molar > 0 (the Cd it adds)")
    lead_s = 0.0 if second is not None else \
        (limits.quench_coast_s if steer["quench"] else limits.coast_s)
    rule = RadiusRule("target_radius" if second is None else "second_injection_at_radius",
                      steer["target_radius_nm"] or second, limits.confidence_sigma, lead_s,
                      limits.max_coast_nm)
    second_offsets = None if second is None else schedule_offsets(
        second_n_frames or n_frames, integration_s, dead_time_s, second_ratio or ratio)
    steering = Steering(feed, heater, injector, rule, limits, quench=steer["quench"],
                        fallback_delay_s=None if second is None else float(fallback_delay_s))
    timer = timer or DeadlineTimer(name="timer")
    metadata = {
        "plan_name": "steered_synthesis",
        # with a second injection the first schedule ends when B fires: the count is not known
        "num_points": len(offsets) if second is None else None,
        "frame_offsets_s": [float(x) for x in offsets],
        "schedule": {"n_frames": len(offsets), "integration_s": integration_s,
                     "dead_time_s": dead_time_s, "ratio": ratio, "user_schedule": False},
        "piston": "A",
        "steering": {"rule": rule.name, "radius_nm": rule.radius_nm,
                     "confidence_sigma": rule.confidence_sigma, "lead_s": rule.lead_s,
                     "quench": steer["quench"],
                     "window_frames": limits.window_frames,
                     "pistons": ["B"] if uses_b else []},
        **(md or {}),
    }
    if second is not None:
        metadata["second_injection"] = {"piston": "B", "at_radius_nm": second,
                                        "fallback_delay_s": float(fallback_delay_s)}
        metadata["second_frame_offsets_s"] = [float(x) for x in second_offsets]

    def inject_and_acquire():
        t0 = yield from injection_with_frames(
            heater, injector, detector, timer, "A", offsets,
            growth_temperature_c=recipe.growth_temperature_c, monitor_period_s=monitor_period_s,
            reaction_time_s=recipe.reaction_time_s,
            after_frame=_hook_when_fired(injector, "A", steering, offsets))
        if steering.t_second is not None and second is not None:
            yield from frames_after_firing(
                heater, injector, detector, timer, "B", steering.t_second, second_offsets,
                monitor_period_s=monitor_period_s, reaction_time_s=recipe.reaction_time_s,
                reaction_start=t0)
        return t0

    return synthesis_run(heater, injector, detector, recipe, metadata, inject_and_acquire,
                         integration_s=integration_s, n_background=n_background,
                         acquisition="software", cooldown_s=cooldown_s,
                         monitor_period_s=monitor_period_s, timer=timer)


def _hook_when_fired(injector, piston: str, steering: Steering, offsets):
    """``after_frame`` for the schedule of ``piston``: its firing time is read from the
    injector when the first frame has been taken."""
    hooks = []

    def hook(index):
        if not hooks:
            t_fire = float(getattr(injector, f"fire_time_{piston.lower()}").get())
            hooks.append(steering.after_frame(t_fire, offsets))
        return (yield from hooks[0](index))
    return hook
