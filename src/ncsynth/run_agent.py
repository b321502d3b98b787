"""From run to run: an agent that proposes the next synthesis to reach a target final radius
(issue 19), submitting each through bluesky-queueserver and learning from the catalog.

The agent, :class:`RadiusAgent`, follows bluesky-adaptive's interface
(:class:`bluesky_adaptive.protocols.Optimizer`, with ``SupportsStoppingCriteria``):
``ingest`` is its *tell* (a finished run's final mean radius and size dispersion, read from the
run's derived ``fits``), ``suggest`` its *ask* (the next recipe), ``get_best_points`` the run
closest to the target, ``should_stop`` whether the target is met, and ``report`` a document of
what it knows. :func:`run_campaign` is the loop: ask, queue the synthesis with
``REManagerAPI`` (``hot_injection`` items, preceded on the simulated beamline by the
``new_batch`` plan of :mod:`ncsynth.session_startup`, the refill an operator does by hand at
the hutch), wait, read the outcome from the catalog, tell, and store the report as one event
of the campaign's own run (``plan_name`` ``agent_report``, linked to every raw run by uid,
each raw run linked back by ``md["agent_campaign"]``).

The knob is the reaction time (s at the growth temperature before the heater goes off) of a
fixed observation: the final radius is the fits' mean radius at the last frame, a fixed time
after the injection. The flask cools for minutes after the heater goes off and the crystals go
on growing meanwhile, so the response is flat at short times and steep later, never falling
(measured on the simulated flask: 20/107.7/171.4/580 s give 1.868/1.873/1.997/2.231 nm,
docs/run_agent.md). The rule below assumes only that: a longer reaction time never gives a
smaller final radius.

The rule is a bracketing secant (regula falsi with the Illinois weighting) on the radius against
the logarithm of the reaction time, inside the protocol's bounds: once two runs bracket the
target it interpolates between the closest ones; before, it extrapolates from the two runs
nearest to the side it must go (half-way to the bound with one run). A target the bounds
cannot reach is said in one line as soon as a run at the bound misses on the same side. The
response is 1-D, never falling and measured with ~1e-4 nm fit errors: a bracketing root finder
needs no surrogate model (a Gaussian process) for it.
Radii in nm, times in s, temperatures in °C.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from bluesky_adaptive.protocols import ID_KEY
from event_model import compose_run

from ncsynth import validation
from ncsynth.errors import first_line

#: The short protocol of the tests and the docs: background frame, injection at t = 0, frames
#: 5..600 s after it (geometric), 1 s exposures; the final radius is the last frame's.
SHORT_SCHEDULE_S = (0.0, 5.0, 9.0, 17.0, 32.0, 60.0, 110.0, 200.0, 360.0, 600.0)
#: An extrapolation this close to a bound (in ln s, ~10 %) goes to the bound.
NEAR_BOUND = 0.1


class TargetUnreachable(ValueError):
    """The protocol's bounds cannot give the target final radius (said in one line)."""


@dataclass(frozen=True)
class SynthesisProtocol:
    """What stays fixed from run to run: the recipe but its reaction time, the frame schedule
    (s after the injection) and the reaction times (s) the agent may choose between."""

    operator: str = "run-to-run agent"
    sample: str = "simulated CdSe"
    injection_temperature_c: float = 290.0
    growth_temperature_c: float = 260.0
    schedule_s: tuple[float, ...] = SHORT_SCHEDULE_S
    integration_s: float = 1.0
    n_background: int = 1
    min_reaction_time_s: float = 20.0
    max_reaction_time_s: float = 580.0

    def check(self) -> "SynthesisProtocol":
        """ValueError naming the bad field: bounds positive, ordered, the longest before the last
        frame (the final radius is measured after the heater went off)."""
        low = validation.real("min_reaction_time_s", self.min_reaction_time_s, above=0, unit="s")
        high = validation.real("max_reaction_time_s", self.max_reaction_time_s, above=low,
                               unit="s")
        if high >= self.schedule_s[-1]:
            raise ValueError(f"max_reaction_time_s ({high} s) must end before the last frame "
                             f"({self.schedule_s[-1]} s): the final radius is read after the "
                             f"heater went off")
        return self

    def recipe(self, reaction_time_s: float) -> dict:
        """The recipe's dict form (:meth:`~ncsynth.plans.Recipe.to_metadata`) for one run."""
        return {"operator": self.operator, "sample": self.sample,
                "injection_temperature_c": self.injection_temperature_c,
                "growth_temperature_c": self.growth_temperature_c,
                "reaction_time_s": float(reaction_time_s)}

    def item(self, reaction_time_s: float, md: dict):
        """The queue item of one synthesis (devices named as in the session namespace)."""
        from bluesky_queueserver_api import BPlan

        return BPlan("hot_injection", "heater", "injector", "detector",
                     self.recipe(reaction_time_s), timer="timer", md=md,
                     schedule_s=list(self.schedule_s), integration_s=self.integration_s,
                     n_background=self.n_background, monitor_period_s=0.0)


@dataclass
class _Run:
    id: int
    reaction_time_s: float
    final_radius_nm: float
    radius_err_nm: float
    dispersion: float
    raw_uid: str

    @property
    def u(self) -> float:
        return math.log(self.reaction_time_s)


@dataclass
class RadiusAgent:
    """Ask/tell agent for one target final radius (nm) within ``tolerance_nm``, choosing the
    reaction time (s) in ``bounds_s``; ``first_s`` is its first proposal (default: the
    geometric middle of the bounds)."""

    target_radius_nm: float
    bounds_s: tuple[float, float]
    tolerance_nm: float = 0.05
    first_s: float | None = None
    runs: list[_Run] = field(default_factory=list, init=False)
    _asked: int = field(default=0, init=False, repr=False)

    # -- tell ---------------------------------------------------------------------------
    def ingest(self, points) -> None:
        """Tell: each point has ``_id``, ``reaction_time_s``, ``final_radius_nm``,
        ``radius_err_nm``, ``dispersion`` (sigma / radius) and ``raw_uid``."""
        for p in points:
            self.runs.append(_Run(p[ID_KEY], float(p["reaction_time_s"]),
                                  float(p["final_radius_nm"]), float(p["radius_err_nm"]),
                                  float(p["dispersion"]), str(p["raw_uid"])))

    # -- ask ----------------------------------------------------------------------------
    def suggest(self, num_points: int | None = 1) -> list[dict]:
        """Ask: ``[{"_id": n, "reaction_time_s": t}]`` (one point per synthesis)."""
        if num_points not in (None, 1):
            raise ValueError(f"one synthesis at a time: num_points must be 1, got {num_points}")
        self._asked += 1
        return [{ID_KEY: self._asked, "reaction_time_s": self._next_time_s()}]

    def _next_time_s(self) -> float:
        lo, hi = math.log(self.bounds_s[0]), math.log(self.bounds_s[1])
        if not self.runs:
            return self.first_s if self.first_s is not None else math.exp(0.5 * (lo + hi))
        target = self.target_radius_nm
        below = [r for r in self.runs if r.final_radius_nm < target]
        above = [r for r in self.runs if r.final_radius_nm >= target]
        if below and above:
            a, b = max(below, key=lambda r: r.u), min(above, key=lambda r: r.u)
            if a.u < b.u:
                fa, fb = a.final_radius_nm - target, b.final_radius_nm - target
                # Illinois: an end kept while the last two runs fell on the other side weighs half
                last = [r.final_radius_nm >= target for r in self.runs[-2:]]
                if len(last) == 2 and last[0] == last[1]:
                    fa, fb = (fa, fb / 2) if last[0] is False else (fa / 2, fb)
                return math.exp(a.u + (b.u - a.u) * fa / (fa - fb))
            # a longer time gave a smaller radius: the runs scatter more than the bracket is wide
            return math.exp(0.5 * (a.u + b.u))
        side, bound = (below, hi) if below else (above, lo)
        nearest = sorted(side, key=lambda r: r.u, reverse=bool(below))
        if abs(nearest[0].u - bound) < 1e-9:
            r = nearest[0]
            raise TargetUnreachable(
                f"target radius {target} nm is out of reach: at the bound reaction_time_s = "
                f"{r.reaction_time_s:g} s the final radius was {r.final_radius_nm:.3f} nm")
        n0 = nearest[0]
        step = 0.5 * (bound - n0.u)
        if len(nearest) > 1 and nearest[1].final_radius_nm != n0.final_radius_nm:
            slope = (n0.final_radius_nm - nearest[1].final_radius_nm) / (n0.u - nearest[1].u)
            if slope > 0:
                step = (target - n0.final_radius_nm) / slope
        u = n0.u + step
        if (u - bound) * (1 if below else -1) > -NEAR_BOUND:  # at, past or just short of it
            return self.bounds_s[1] if below else self.bounds_s[0]
        return math.exp(u)

    # -- what it knows ------------------------------------------------------------------
    def should_stop(self) -> tuple[bool, str | None]:
        """(True, why) once the latest run's final radius is within the tolerance."""
        if self.runs and abs(self.runs[-1].final_radius_nm - self.target_radius_nm) \
                <= self.tolerance_nm:
            r = self.runs[-1]
            return True, (f"target {self.target_radius_nm} nm reached within "
                          f"{self.tolerance_nm} nm: {r.final_radius_nm:.3f} nm at "
                          f"reaction_time_s = {r.reaction_time_s:.1f} s (run {len(self.runs)})")
        return False, None

    def get_best_points(self) -> list[tuple]:
        """``[(_id, {"reaction_time_s"}, {outcomes})]`` of the run closest to the target."""
        if not self.runs:
            return []
        r = min(self.runs, key=lambda r: abs(r.final_radius_nm - self.target_radius_nm))
        outcomes = {k: v for k, v in asdict(r).items() if k not in ("id", "reaction_time_s")}
        return [(r.id, {"reaction_time_s": r.reaction_time_s}, outcomes)]

    def report(self) -> dict:
        """What the agent knows after its latest tell: that run, its miss (nm), the best run's
        uid, and the bracket of reaction times (s; nan where none)."""
        r = self.runs[-1]
        target = self.target_radius_nm
        below = [x.reaction_time_s for x in self.runs if x.final_radius_nm < target]
        above = [x.reaction_time_s for x in self.runs if x.final_radius_nm >= target]
        return {"iteration": len(self.runs), "raw_uid": r.raw_uid,
                "reaction_time_s": r.reaction_time_s, "final_radius_nm": r.final_radius_nm,
                "radius_err_nm": r.radius_err_nm, "dispersion": r.dispersion,
                "miss_nm": r.final_radius_nm - target,
                "best_raw_uid": self.get_best_points()[0][2]["raw_uid"],
                "bracket_low_s": max(below) if below else math.nan,
                "bracket_high_s": min(above) if above else math.nan}


_REPORT_KEYS = {key: {"dtype": dtype, "shape": [], "source": "ncsynth.run_agent", "units": units}
                for key, dtype, units in (
                    ("iteration", "integer", ""), ("raw_uid", "string", ""),
                    ("reaction_time_s", "number", "s"), ("final_radius_nm", "number", "nm"),
                    ("radius_err_nm", "number", "nm"), ("dispersion", "number", ""),
                    ("miss_nm", "number", "nm"), ("best_raw_uid", "string", ""),
                    ("bracket_low_s", "number", "s"), ("bracket_high_s", "number", "s"),
                    ("wall_s", "number", "s"))}


class ReportRun:
    """The campaign's run in the catalog (``plan_name`` ``agent_report``): its start names the
    target, tolerance, bounds and protocol; one event of stream ``report`` per tell; its stop
    lists the raw runs and says why the campaign ended."""

    def __init__(self, catalog, agent: RadiusAgent, protocol: SynthesisProtocol):
        self._writer = catalog.writer()
        self._bundle = compose_run(metadata={
            "plan_name": "agent_report", "agent": "RadiusAgent",
            "target_radius_nm": agent.target_radius_nm, "tolerance_nm": agent.tolerance_nm,
            "bounds_s": list(agent.bounds_s), "protocol": asdict(protocol)})
        self.uid = self._bundle.start_doc["uid"]
        self.raw_uids: list[str] = []
        self._writer("start", self._bundle.start_doc)
        self._stream = self._bundle.compose_descriptor(name="report", data_keys=_REPORT_KEYS)
        self._writer("descriptor", self._stream.descriptor_doc)

    def record(self, report: dict) -> None:
        now = time.time()
        self.raw_uids.append(report["raw_uid"])
        self._writer("event", self._stream.compose_event(
            data=report, timestamps={k: now for k in report}, time=now))

    def close(self, exit_status: str, reason: str) -> None:
        try:
            self._writer("stop", self._bundle.compose_stop(exit_status=exit_status, reason=reason))
        finally:
            self._writer.close()


def final_outcome(catalog, raw_uid: str, timeout_s: float = 120.0) -> dict:
    """The run's final mean radius (nm, the last successful fit), its error and the size
    dispersion sigma / radius, from its derived run (waited for: the live analysis finishes
    the run's fits shortly after its stop)."""
    deadline = time.monotonic() + timeout_s
    while (derived := catalog.analysis(raw_uid)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {raw_uid}: no complete analysis run within {timeout_s} s")
        time.sleep(0.2)
    fits = derived["fits"].read()
    ok = np.flatnonzero(fits["success"].values.astype(bool) & np.isfinite(fits["radius_nm"].values))
    if ok.size == 0:
        raise RuntimeError(f"run {raw_uid}: no frame of its analysis has a fit")
    last = int(ok[-1])
    radius = float(fits["radius_nm"].values[last])
    return {"raw_uid": raw_uid, "final_radius_nm": radius,
            "radius_err_nm": float(fits["radius_err_nm"].values[last]),
            "dispersion": float(fits["sigma_nm"].values[last]) / radius}


def check_campaign(target_radius_nm: float, protocol: SynthesisProtocol, config: dict,
                   max_runs: int) -> None:
    """Refuse, before anything is queued, a target outside ``[steering]`` min/max_radius_nm,
    a bad protocol or run count (ValueError, one line)."""
    steering = config["steering"]
    validation.real("target_radius_nm", target_radius_nm, minimum=steering["min_radius_nm"],
                    maximum=steering["max_radius_nm"], unit="nm")
    validation.integer("max_runs", max_runs, minimum=1, maximum=100)
    limit = config["heater"]["max_temperature_c"]
    for name in ("injection_temperature_c", "growth_temperature_c"):
        validation.real(name, getattr(protocol, name), minimum=20, maximum=limit, unit="°C")
    protocol.check()


@dataclass
class CampaignResult:
    """What a campaign did: the agent (its runs, best point, report), the reports (one per run,
    each with its wall time in s), the campaign's report run uid, and why it ended."""

    agent: RadiusAgent
    reports: list[dict]
    report_uid: str
    reached: bool
    reason: str


def _queue_and_wait(RM, item, timeout_s: float) -> dict:
    """Queue ``item``, start the queue, wait until idle; its result (RuntimeError naming the
    plan and its message if it did not complete). One item per start: two queued back to back
    (a 4 ms ``new_batch``, then the synthesis) once failed with bluesky-queueserver 0.0.25's
    "Attempt to start a plan (Run Engine) while worker is not reset after completion of the
    previous plan" (17 ms between them)."""
    uid = RM.item_add(item)["item"]["item_uid"]
    RM.queue_start()
    RM.wait_for_idle(timeout=timeout_s)
    history = {i["item_uid"]: i for i in RM.history_get()["items"]}
    result = history[uid]["result"] if uid in history else {"exit_status": "not run"}
    if result.get("exit_status") != "completed":
        RM.queue_clear()
        raise RuntimeError(f"queued {item.to_dict()['name']} did not complete "
                           f"({result.get('exit_status')}): {result.get('msg', '')}".strip())
    return result


def run_campaign(RM, catalog, target_radius_nm: float, config: dict, *,
                 protocol: SynthesisProtocol = SynthesisProtocol(), tolerance_nm: float = 0.05,
                 max_runs: int = 8, reload_plan: str | None = "new_batch",
                 run_timeout_s: float = 600.0, progress=print) -> CampaignResult:
    """Ask, queue (``reload_plan`` first if given, then the synthesis), wait, tell, report,
    until the target is met, the bounds cannot meet it, a run fails, or ``max_runs`` runs.
    ``RM``: a ``bluesky_queueserver_api`` REManagerAPI whose environment is open; ``catalog``:
    the :class:`~ncsynth.storage.Catalog` the queue server's session writes; ``config``: the
    configuration (limits). A bad campaign is refused before anything is queued."""
    check_campaign(target_radius_nm, protocol, config, max_runs)
    if not RM.status().get("worker_environment_exists"):
        raise RuntimeError("the queue server's environment is not open (RM.environment_open())")
    needed = {"hot_injection"} | ({reload_plan} if reload_plan else set())
    missing = needed - set(RM.plans_allowed()["plans_allowed"])
    if missing:
        raise RuntimeError(f"the queue server offers no plan {sorted(missing)}")
    from bluesky_queueserver_api import BPlan

    agent = RadiusAgent(target_radius_nm, (protocol.min_reaction_time_s,
                                           protocol.max_reaction_time_s), tolerance_nm)
    report_run = ReportRun(catalog, agent, protocol)
    reports, exit_status, reason = [], "success", f"no run within {tolerance_nm} nm"
    try:
        for _ in range(max_runs):
            started = time.monotonic()
            (proposal,) = agent.suggest(1)
            md = {"agent_campaign": report_run.uid, "agent_iteration": proposal[ID_KEY]}
            if reload_plan:
                _queue_and_wait(RM, BPlan(reload_plan), run_timeout_s)
            result = _queue_and_wait(RM, protocol.item(proposal["reaction_time_s"], md),
                                     run_timeout_s)
            (raw_uid,) = result["run_uids"]
            agent.ingest([{**proposal, **final_outcome(catalog, raw_uid)}])
            report = {**agent.report(), "wall_s": time.monotonic() - started}
            report_run.record(report)
            reports.append(report)
            progress(f"run {report['iteration']}: reaction_time_s {report['reaction_time_s']:.1f} "
                     f"-> final radius {report['final_radius_nm']:.3f} nm (miss "
                     f"{report['miss_nm']:+.3f}), dispersion {report['dispersion']:.3f}, "
                     f"{report['wall_s']:.1f} s")
            stop, why = agent.should_stop()
            if stop:
                reason = why
                break
    except TargetUnreachable as err:
        exit_status, reason = "fail", first_line(err)
        raise
    except BaseException as err:
        exit_status, reason = "abort", first_line(err)
        raise
    finally:
        report_run.close(exit_status, reason)
    return CampaignResult(agent, reports, report_run.uid, agent.should_stop()[0], reason)


def main(argv=None) -> int:
    """``python -m ncsynth.run_agent --target-radius NM --queue tcp://HOST:PORT``: a campaign
    against the queue server whose environment is open, the catalog of the configuration."""
    import argparse
    import sys

    from ncsynth.config import load_config

    parser = argparse.ArgumentParser(prog="python -m ncsynth.run_agent",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--target-radius", type=float, required=True, help="final radius, nm")
    parser.add_argument("--tolerance", type=float, default=0.05, help="nm (default 0.05)")
    parser.add_argument("--max-runs", type=int, default=8)
    parser.add_argument("--queue", default="tcp://127.0.0.1:60615",
                        help="the manager's 0MQ control address")
    parser.add_argument("--config", help="configuration file (default: NCSYNTH_CONFIG)")
    parser.add_argument("--no-reload", action="store_true",
                        help="queue no new_batch (hutch: the flask is refilled by hand)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        check_campaign(args.target_radius, SynthesisProtocol(), config, args.max_runs)
        from bluesky_queueserver_api.zmq import REManagerAPI

        from ncsynth.catalog_server import open_configured_catalog

        RM = REManagerAPI(zmq_control_addr=args.queue)
        with open_configured_catalog(config) as catalog:
            result = run_campaign(RM, catalog, args.target_radius, config,
                                  tolerance_nm=args.tolerance, max_runs=args.max_runs,
                                  reload_plan=None if args.no_reload else "new_batch")
    except Exception as err:
        print(f"ncsynth.run_agent: {first_line(err)}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    print(f"{result.reason}; report run {result.report_uid}")
    return 0 if result.reached else 1


if __name__ == "__main__":
    raise SystemExit(main())
