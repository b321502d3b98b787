"""The dry run's protocol: everything of :func:`ncsynth.dryrun.dry_run` that needs the
beamline's stack (bluesky, ophyd, the simulators, pyFAI, scipy).

Starts the simulated beamline, points the configuration at its sockets and its
areaDetector IOC, connects the device classes the hutch uses, installs the world's
clock as the time base, runs :func:`~ncsynth.plans.hot_injection` in a RunEngine that
writes to the embedded catalog and feeds the live analysis, and returns a summary.
:mod:`ncsynth.dryrun` imports this module only once the catalog's writer (its worker
process) has started, so that the two imports run side by side (issue 18).
"""

from __future__ import annotations

import gc
import logging

from ncsynth import timebase
from ncsynth.errors import first_line
from ncsynth.flask_truth import FlaskRecorder, firing_times, record_truth
from ncsynth.plans.frame_account import FrameAccount
from ncsynth.instruments import connect, simulated_hutch
from ncsynth.plans import Chemical, Recipe, double_injection, hot_injection
from ncsynth.plans.schedule import frames_to_reach
from ncsynth.progress import ProgressBar
from ncsynth.run_engine import RunEngine
from ncsynth.simulators.beamline import HOT_FLASK_VOLUME_ML, BeamlineOptions, SimulatedBeamline
from ncsynth.simulators.world import SyringeCharge
from ncsynth.steering_feed import DecisionLog
from ncsynth.termination import run_to_the_end

logger = logging.getLogger(__name__)


#: the live analysis's event backlog in a dry run: never reached (575 frames, ~800 readings)
_NEVER_DROP = 1_000_000


def run_protocol(catalog, writer, root, config: dict, *, speed: float | None, seed: int | None,
                 analysis: bool, progress: bool, plan_kwargs: dict | None,
                 recipe_kwargs: dict | None, beamline_options: dict | None,
                 second_injection: dict | None, steering: dict | None,
                 processes: tuple[str, ...]) -> dict:
    """The body of :func:`ncsynth.dryrun.dry_run` (see its arguments) on the open ``catalog``
    of the data directory ``root`` and its started ``writer``; the summary dict."""
    sim_cfg = config.get("simulation", {})
    speed = speed if speed is not None else (sim_cfg.get("speed") or None)
    seed = seed if seed is not None else sim_cfg.get("seed")
    beamline_options = dict(beamline_options or {})
    plan, plan_kwargs, recipe_kwargs = hot_injection, dict(plan_kwargs or {}), \
        dict(recipe_kwargs or {})
    def load_second_syringe(charge_b: SyringeCharge) -> None:
        beamline_options["charge_b"] = charge_b
        recipe_kwargs.setdefault("syringe_b", _syringe_contents(charge_b))
        recipe_kwargs.setdefault("cd_second_molar", _added_by_b(charge_b, beamline_options))
        # the analysis needs syringe B's Cd for the yield after both injections (S2.6)
        recipe_kwargs.setdefault("extra", {}).setdefault("cd_syringe_b_molar", charge_b.cd_molar)

    feed = None
    if steering:
        from ncsynth.plans import steered_synthesis
        from ncsynth.steering_setup import prepare_steering

        plan = steered_synthesis
        feed = prepare_steering(steering, config, plan_kwargs=plan_kwargs,
                                recipe_kwargs=recipe_kwargs, beamline_options=beamline_options,
                                analysis=analysis, fixed_second_injection=bool(second_injection),
                                load_second_syringe=load_second_syringe)
    elif second_injection:
        plan = double_injection
        load_second_syringe(SyringeCharge(cd_molar=float(second_injection.get("cd_molar", 0.1))))
        plan_kwargs["delay_s"] = float(second_injection["delay_s"])
    elif plan_kwargs.get("piston") == "B":  # one injection, from the second syringe
        charge_b = beamline_options.setdefault("charge_b", SyringeCharge())
        if charge_b is not None:
            recipe_kwargs.setdefault("syringe_b", _syringe_contents(charge_b))
    options = BeamlineOptions(speed=speed or None, seed=seed, **beamline_options)
    summary, trace, start_doc = _dry_run(catalog, writer, root, config, options, analysis,
                                         progress, plan, plan_kwargs, recipe_kwargs,
                                         processes, feed)
    exponent_pairs = None  # what the measured growth exponent was fitted to
    if second_injection and analysis and summary.get("uid"):
        from ncsynth.runs import RunError, second_injection_analysis, second_injection_summary

        try:
            superfocusing = second_injection_analysis(catalog, summary["uid"])
            exponent_pairs = superfocusing.exponent_pairs()
            summary.update(second_injection_summary(
                superfocusing, root / "figures" / f"superfocusing_{summary['uid'][:8]}.png"))
        except RunError as exc:  # e.g. no frame could be fitted: say so, keep the run
            summary["growth_exponent_reason"] = str(exc)
    if feed is not None:  # a steered plan's second injection: when it happened
        from ncsynth.steering_setup import taken_start_doc

        start_doc = taken_start_doc(start_doc, trace)
    if trace is not None and summary.get("uid"):
        try:
            summary["simulator_truth"].update(record_truth(
                trace, start_doc, summary["frames"],
                exponent_pairs,
                root / "truth" / f"{summary['uid']}.json"))
        except (OSError, KeyError) as exc:  # a full disk, a run the catalog did not take
            summary["simulator_truth"]["not_recorded"] = f"{type(exc).__name__}: {exc}"
    short = _frames_end_before_reaction(start_doc, summary)
    if short:
        summary["frames_end_before_reaction"] = short
    if feed is not None:
        from ncsynth.steering_setup import steering_summary

        summary.update(steering_summary(summary["decisions"], plan_kwargs, summary, trace))
    return summary


def _frames_end_before_reaction(start_doc: dict | None, summary: dict) -> dict | None:
    """For a whole one-injection run on the §S.1.4 schedule whose last frame starts before
    the reaction ends (``--frames 12 --reaction-time 60``: at 1.09 s): ``last_frame_s``,
    ``reaction_time_s`` and ``frames_to_reach`` (the ``--frames`` whose last frame starts at
    the reaction's end, None beyond the schedule's limits); else None."""
    start_doc = start_doc or {}
    schedule, offsets = start_doc.get("schedule") or {}, start_doc.get("frame_offsets_s") or []
    reaction_s = (start_doc.get("recipe") or {}).get("reaction_time_s")
    if (start_doc.get("plan_name") != "hot_injection" or schedule.get("user_schedule", True)
            or summary.get("exit_status") != "success" or not offsets or reaction_s is None
            or offsets[-1] >= reaction_s):
        return None
    return {"last_frame_s": round(float(offsets[-1]), 4), "reaction_time_s": float(reaction_s),
            "frames_to_reach": frames_to_reach(reaction_s, schedule["integration_s"],
                                               schedule["dead_time_s"], schedule["ratio"])}


def _syringe_contents(charge: SyringeCharge) -> tuple[Chemical, ...]:
    """The recipe's list of what a simulated syringe holds (its Cd precursor, by mass)."""
    return (Chemical("Cd(OA)2 precursor in ODE", charge.mass_g),)


def _added_by_b(charge_b: SyringeCharge, beamline_options: dict) -> float:
    """Cd (mol/L) piston B adds to the flask after piston A's charge (volumes add up)."""
    charge_a = beamline_options.get("charge_a", SyringeCharge())
    volume_ml = HOT_FLASK_VOLUME_ML + charge_a.volume_ml + charge_b.volume_ml
    return round(charge_b.cd_molar * charge_b.volume_ml / volume_ml, 6)


def _dry_run(catalog, writer, root, config, options, analysis, progress, plan, plan_kwargs,
             recipe_kwargs, processes, feed=None) -> tuple:
    recovered = catalog.recover()  # runs a killed process left behind, completed honestly
    with SimulatedBeamline(options=options) as sim, timebase.use_clock(sim.clock):
        recorder = sim.world.add("truth_recorder", FlaskRecorder())  # after the reaction
        devices = connect(simulated_hutch(config, sim))
        if "cd_initial_molar" not in recipe_kwargs:  # what the simulated syringe gives
            recipe_kwargs["cd_initial_molar"] = round(sim.cd_initial_molar(
                plan_kwargs.get("piston", "A")), 6)
        recipe = Recipe(**{"operator": "dry-run", "sample": "simulated CdSe", **recipe_kwargs})
        RE = RunEngine({}, scan_id_source=catalog.scan_ids())
        run_uids = []
        RE.subscribe(lambda name, doc: run_uids.append(doc["uid"]), "start")
        sim.clock.follow(RE)  # the world's clock never jumps while the plan is working
        RE.subscribe(writer)
        journaled = _Journaled()  # after the writer: the frames and the stop it has taken
        RE.subscribe(journaled)
        frames = FrameAccount()  # skipped frames, a lost nucleation window
        RE.subscribe(frames)
        decisions = DecisionLog()  # the steering's agent stream, if any
        RE.subscribe(decisions)
        live = None
        if analysis:
            from ncsynth.analysis_service import PublishedAnalysis, analysis_subscriber

            # the analysis and its figure in a process of their own (the other core); one
            # writer for raw and derived runs: every Tiled write goes through its single
            # background thread (two writers would contend for the SQLite catalog). The dry
            # run waits for its analysis rather than dropping frames from it: the same fits
            # on any machine, however far ahead of the analysis the simulated beamline runs.
            # or, with [analysis] publish_address, published to the analysis service. A
            # steered plan reads each fit before the writer journals it (a slow disk's fsync
            # does not delay its decision).
            live = analysis_subscriber(config, writer if feed is None else _both(feed, writer),
                                       root / "figures", in_process="analysis" not in processes,
                                       maxsize=_NEVER_DROP)
            if feed is not None:  # a steered plan waits on the fits: tell it the analysis died
                feed.health = lambda: live.error
            if isinstance(live, PublishedAnalysis):  # the run's start names the proxy
                live.mark(RE)
            RE.subscribe(live)
        if progress:
            RE.subscribe(ProgressBar())
        try:
            writer.wait_ready()  # a catalog that cannot be opened: refused before anything moves
            # calling the plan validates every argument (ValueError before anything moves)
            protocol = plan(devices.heater, devices.injector, devices.detector, recipe,
                            timer=devices.timer, md={"dry_run": True}, **plan_kwargs)
            error, signal_name = run_to_the_end(
                RE, protocol, what="dry run", safe="heater safe, injector disarmed")
        finally:
            heater_state = devices.heater.safe_state.get()
            if writer.failed_runs:
                _spare_the_failed_catalog()
            storage_error = _close_storage(live, writer)
            devices.close()  # waits until the heater is confirmed safe
        truth = _simulator_truth(sim)
        firings = firing_times(sim.world.injector)
        if plan_kwargs.get("quench"):  # piston B added no crystals: one population
            firings = firings[:1]
        trace = recorder.trace(*firings[:2]) if firings else None
    uid = run_uids[0] if run_uids else None
    stored = writer.stored.get(uid) or {}  # the documents the catalog took: no read-back
    stop = stored.get("stop") or journaled.stop  # the journal's, when the catalog did not take it
    if writer.failed_runs:
        storage_error = "; ".join(filter(None, (storage_error,
                                                _not_stored(writer.failed_runs, uid, root))))
    summary = {"uid": uid,
               "exit_status": stop.get("exit_status") or ("fail" if error else "unknown"),
               "frames": int((stop.get("num_events") or {}).get("primary", journaled.frames)),
               "heater": heater_state}
    if (writer.started.get(uid) or {}).get("scan_id"):
        summary["scan_id"] = writer.started[uid]["scan_id"]
    if error is not None or storage_error is not None:
        summary["error"] = "; ".join(e for e in (error, storage_error) if e)
    summary.update(frames.result)
    if signal_name is not None:
        summary["terminated_by"] = signal_name
    summary.update(live.summary() if live is not None else
                   {"final_radius_nm": None, "concentration_molar": None, "yield_fraction": None})
    if summary.get("analysis_error") and uid and uid not in writer.failed_runs:
        summary["analysis_error"] += (f"; the run is stored: `ncsynth replay {uid[:8]} --data-dir "
                                      f"{root}` analyses it")
    if live is not None:
        summary["figures"] = [str(p) for p in live.paths]
    summary["simulator_truth"] = truth
    if feed is not None:
        summary["decisions"] = decisions.decisions
    if recovered:
        summary["recovered_runs"] = [r._asdict() for r in recovered]
    summary["data_dir"] = str(root)
    return summary, trace, writer.started.get(uid) or {}


def _both(first, second):
    """One callback (name, doc) calling ``first`` then ``second``."""
    def both(name, doc):
        first(name, doc)
        second(name, doc)
    return both


class _Journaled:
    """What of the run reached it (subscribed after the catalog writer, which raises on a
    document it could not journal): ``frames``, the events of stream ``primary`` kept, and the
    ``stop`` document ({} before it)."""

    def __init__(self):
        self.frames, self.stop, self._primary = 0, {}, set()

    def __call__(self, name: str, doc: dict) -> None:
        if name == "stop":
            self.stop = doc
        elif name == "descriptor" and doc.get("name") == "primary":
            self._primary.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self._primary:
            self.frames += 1
        elif name == "event_page" and doc["descriptor"] in self._primary:
            self.frames += len(doc["seq_num"])


def _not_stored(failed_runs: dict, raw_uid: str | None, root) -> str:
    """One line: the runs the catalog did not take (the writer's process killed, a full disk),
    the raw run first, and how their journals get into it."""
    order = sorted(failed_runs, key=lambda uid: uid != raw_uid)
    uids = ", ".join(uid[:8] for uid in order)
    err = failed_runs[order[0]]
    return (f"catalog: run{'s' if len(failed_runs) > 1 else ''} {uids} not stored "
            f"({type(err).__name__}: {first_line(err)}); every document is in the journal: "
            f"`ncsynth recover --data-dir {root}` stores them")


def _spare_the_failed_catalog() -> None:
    """No cyclic garbage collection for the rest of the process once the catalog's commits
    have failed (a full disk): the ADBC SQLite connection left behind by the failed COMMIT
    crashes the interpreter when the collector frees it (exit 139 before the summary, 60 MB
    tmpfs). The dry run's process ends soon after, without teardown (:func:`ncsynth.cli.run`)."""
    gc.freeze()
    gc.disable()


def _close_storage(live, writer) -> str | None:
    """Flush the live analysis and the catalog writer, close the writer; None, or what
    failed in one line (a full disk must not skip closing the devices after it)."""
    try:
        if live is not None:
            live.flush()
            live.close()
        writer.flush()
        writer.close()
    except Exception as exc:
        logger.error("the catalog could not store everything: %s", exc)
        return f"catalog: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _simulator_truth(sim: SimulatedBeamline) -> dict:
    """What the simulated flask really holds at the end (for comparison with the analysis)."""
    sim.world.advance()
    reaction = sim.world.reaction
    return {"mean_radius_nm": round(float(reaction.mean_radius_nm), 4),
            "concentration_molar": float(reaction.concentration_molar),
            "yield_fraction": round(float(reaction.yield_fraction), 4)}
