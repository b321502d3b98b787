"""From run to run: the campaign that reaches a target final radius (issue 19), submitting each
synthesis through bluesky-queueserver and learning from the catalog.

:func:`run_campaign` is the loop around the agent (:class:`ncsynth.agent_rule.RadiusAgent`,
bluesky-adaptive's interface): ask, queue the synthesis with
``REManagerAPI`` (``hot_injection`` items, preceded on the simulated beamline by the
``new_batch`` plan of :mod:`ncsynth.session_startup`, the refill an operator does by hand at
the hutch), wait, read the outcome from the catalog, tell, and store the report as one event
of the campaign's own run (``plan_name`` ``agent_report``, linked to every raw run by uid,
each raw run linked back by ``md["agent_campaign"]``). What stays fixed between runs and what
is refused before anything is queued: :mod:`ncsynth.agent_protocol`. The command line:
``ncsynth agent`` (:func:`campaign_command`).
Radii in nm, times in s, temperatures in °C.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
from bluesky_adaptive.protocols import ID_KEY
from event_model import compose_run

from ncsynth import agent_surrogate
from ncsynth.agent_protocol import DISPERSION_TOLERANCE, SynthesisProtocol, check_campaign
from ncsynth.agent_rule import RadiusAgent, TargetUnreachable
from ncsynth.agent_surrogate import RecipeAgent
from ncsynth.errors import first_line

#: The report's keys of each agent: (name, event-model dtype, units); wall_s is the loop's.
_REPORT_KEYS = {
    RadiusAgent: (("iteration", "integer", ""), ("raw_uid", "string", ""),
                  ("reaction_time_s", "number", "s"), ("final_radius_nm", "number", "nm"),
                  ("radius_err_nm", "number", "nm"), ("dispersion", "number", ""),
                  ("miss_nm", "number", "nm"), ("best_raw_uid", "string", ""),
                  ("bracket_low_s", "number", "s"), ("bracket_high_s", "number", "s")),
    RecipeAgent: agent_surrogate.REPORT_KEYS}


class ReportRun:
    """The campaign's run in the catalog (``plan_name`` ``agent_report``): its start names the
    agent, its targets, tolerances and bounds, and the protocol; one event of stream ``report``
    per tell; its stop lists the raw runs and says why the campaign ended."""

    def __init__(self, catalog, agent: RadiusAgent | RecipeAgent, protocol: SynthesisProtocol):
        self._writer = catalog.writer()
        targets = {"target_radius_nm": agent.target_radius_nm,
                   "tolerance_nm": agent.tolerance_nm}
        if isinstance(agent, RecipeAgent):
            targets.update(target_dispersion=agent.target_dispersion,
                           dispersion_tolerance=agent.dispersion_tolerance,
                           bounds_s=list(agent.time_bounds_s),
                           growth_bounds_c=list(agent.growth_bounds_c))
        else:
            targets["bounds_s"] = list(agent.bounds_s)
        self._bundle = compose_run(metadata={
            "plan_name": "agent_report", "agent": type(agent).__name__, **targets,
            "protocol": asdict(protocol)})
        self.uid = self._bundle.start_doc["uid"]
        self.raw_uids: list[str] = []
        self._writer("start", self._bundle.start_doc)
        keys = {key: {"dtype": dtype, "shape": [], "source": "ncsynth.run_agent", "units": units}
                for key, dtype, units in (*_REPORT_KEYS[type(agent)], ("wall_s", "number", "s"))}
        self._stream = self._bundle.compose_descriptor(name="report", data_keys=keys)
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



@dataclass
class CampaignResult:
    """What a campaign did: the agent (its runs, best point, report), the reports (one per run,
    each with its wall time in s), the campaign's report run uid, and why it ended."""

    agent: RadiusAgent | RecipeAgent
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


def make_agent(target_radius_nm: float, protocol: SynthesisProtocol, tolerance_nm: float,
               target_dispersion: float | None = None,
               dispersion_tolerance: float = DISPERSION_TOLERANCE) -> RadiusAgent | RecipeAgent:
    """The radius-only campaign's :class:`RadiusAgent` (reaction time), or with a dispersion
    target the :class:`RecipeAgent` (reaction time and growth temperature)."""
    times = (protocol.min_reaction_time_s, protocol.max_reaction_time_s)
    if target_dispersion is None:
        return RadiusAgent(target_radius_nm, times, tolerance_nm)
    return RecipeAgent(target_radius_nm, times, (protocol.min_growth_temperature_c,
                                                 protocol.max_growth_temperature_c),
                       tolerance_nm, target_dispersion, dispersion_tolerance)


def _progress_line(report: dict) -> str:
    growth = report.get("growth_temperature_c")
    return (f"run {report['iteration']}: reaction_time_s {report['reaction_time_s']:.1f}"
            + (f", growth_temperature_c {growth:.1f}" if growth is not None else "")
            + f" -> final radius {report['final_radius_nm']:.3f} nm (miss "
              f"{report['miss_nm']:+.3f}), dispersion {report['dispersion']:.3f}, "
              f"{report['wall_s']:.1f} s")


def run_campaign(RM, catalog, target_radius_nm: float, config: dict, *,
                 protocol: SynthesisProtocol = SynthesisProtocol(), tolerance_nm: float = 0.05,
                 target_dispersion: float | None = None,
                 dispersion_tolerance: float = DISPERSION_TOLERANCE,
                 max_runs: int = 8, reload_plan: str | None = "new_batch",
                 run_timeout_s: float = 600.0, progress=print) -> CampaignResult:
    """Ask, queue (``reload_plan`` first if given, then the synthesis), wait, tell, report,
    until the target (radius, and dispersion sigma / radius if given) is met, the bounds
    cannot meet it, a run fails, or ``max_runs`` runs (:func:`make_agent`).
    ``RM``: a ``bluesky_queueserver_api`` REManagerAPI whose environment is open; ``catalog``:
    the :class:`~ncsynth.storage.Catalog` the queue server's session writes; ``config``: the
    configuration (limits). A bad campaign is refused before anything is queued."""
    check_campaign(target_radius_nm, protocol, config, max_runs, tolerance_nm,
                   target_dispersion, dispersion_tolerance)
    if not RM.status().get("worker_environment_exists"):
        raise RuntimeError("the queue server's environment is not open (RM.environment_open())")
    needed = {"hot_injection"} | ({reload_plan} if reload_plan else set())
    missing = needed - set(RM.plans_allowed()["plans_allowed"])
    if missing:
        raise RuntimeError(f"the queue server offers no plan {sorted(missing)}")
    from bluesky_queueserver_api import BPlan

    agent = make_agent(target_radius_nm, protocol, tolerance_nm, target_dispersion,
                       dispersion_tolerance)
    report_run = ReportRun(catalog, agent, protocol)
    reports, exit_status, reason = [], "success", f"no run within {tolerance_nm} nm"
    try:
        for _ in range(max_runs):
            started = time.monotonic()
            (proposal,) = agent.suggest(1)
            md = {"agent_campaign": report_run.uid, "agent_iteration": proposal[ID_KEY]}
            if reload_plan:
                _queue_and_wait(RM, BPlan(reload_plan), run_timeout_s)
            result = _queue_and_wait(RM, protocol.item(
                proposal["reaction_time_s"], md, proposal.get("growth_temperature_c")),
                run_timeout_s)
            (raw_uid,) = result["run_uids"]
            agent.ingest([{**proposal, **final_outcome(catalog, raw_uid)}])
            report = {**agent.report(), "wall_s": time.monotonic() - started}
            report_run.record(report)
            reports.append(report)
            progress(_progress_line(report))
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


def campaign_command(config: dict, target_radius_nm: float, *, tolerance_nm: float,
                     max_runs: int, queue: str, reload: bool,
                     target_dispersion: float | None = None,
                     dispersion_tolerance: float | None = None) -> int:
    """``ncsynth agent``: a campaign against the queue server at ``queue`` (its 0MQ control
    address, environment open) and the configuration's catalog, one line per run as it ends,
    then why it stopped and the report run's uid. Exit 0 when the target was reached, 1 when
    not (the command line reports a failure: 2 for a refused campaign or an unreachable
    target, 1 otherwise). With ``target_dispersion`` the two-knob campaign
    (``dispersion_tolerance`` None: :data:`~ncsynth.agent_protocol.DISPERSION_TOLERANCE`)."""
    from bluesky_queueserver_api.comm_base import RequestTimeoutError
    from bluesky_queueserver_api.zmq import REManagerAPI

    from ncsynth.catalog_server import open_configured_catalog

    RM = REManagerAPI(zmq_control_addr=queue)
    try:
        try:
            RM.status()  # before the catalog is opened
        except RequestTimeoutError:
            raise TimeoutError(f"no queue server answers at {queue}") from None
        with open_configured_catalog(config) as catalog:
            result = run_campaign(RM, catalog, target_radius_nm, config,
                                  tolerance_nm=tolerance_nm, max_runs=max_runs,
                                  target_dispersion=target_dispersion,
                                  dispersion_tolerance=DISPERSION_TOLERANCE
                                  if dispersion_tolerance is None else dispersion_tolerance,
                                  reload_plan="new_batch" if reload else None,
                                  progress=partial(print, flush=True))
    finally:
        RM.close()
    print(f"{result.reason}; report run {result.report_uid}")
    return 0 if result.reached else 1
