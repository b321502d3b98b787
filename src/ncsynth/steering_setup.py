"""A dry run steered from its live fits (issue 19): what it loads, and what it reports.

:func:`prepare_steering` turns the dry run's ``steering`` request (``target_radius_nm``,
``quench``, ``second_injection_at_radius_nm``) into the arguments of
:func:`~ncsynth.plans.steered_synthesis`, checked against the configuration's ``[steering]``
limits before anything starts, and loads the simulated syringe B: cold solvent for a quench
(ODE at room temperature, 25 °C: it freezes at ~17 °C; no Cd), or the Cd precursor for a
second injection. :func:`steering_summary` reports the decisions (the run's ``agent`` stream)
and the final radius against the target, or B's firing against the radius crossing, beside
what the simulated flask held.
"""

from __future__ import annotations

import math

import numpy as np

from ncsynth.plans.decisions import SteeringLimits, check_steering
from ncsynth.simulators.world import SyringeCharge
from ncsynth.steering_feed import FitFeed

#: Syringe B for a quench: 4.5 mL of octadecene at room temperature, no precursor.
QUENCH_CHARGE = SyringeCharge(mass_g=3.56, volume_ml=4.5, temperature_c=25.0, cd_molar=0.0)
#: What the recipe says syringe B holds for a quench (name, mass g).
QUENCH_CONTENTS = ("ODE (cold solvent, quench)", QUENCH_CHARGE.mass_g)
#: Tolerance the issue asks of a target radius, nm.
TARGET_TOLERANCE_NM = 0.05


def prepare_steering(steering: dict, config: dict, *, plan_kwargs: dict, recipe_kwargs: dict,
                     beamline_options: dict, analysis: bool, fixed_second_injection: bool,
                     load_second_syringe) -> FitFeed:
    """Check ``steering`` (ValueError, one line), fill the plan's, the recipe's and the
    simulated beamline's arguments in place; return the plan's :class:`FitFeed`.
    ``load_second_syringe(charge)`` loads syringe B with the Cd precursor ``charge`` (the
    double injection's loading: recipe and beamline)."""
    if not analysis:
        raise ValueError("steering decides from the live fits: it needs the live analysis "
                         "(drop --no-analysis)")
    if plan_kwargs.get("piston", "A") != "A":
        raise ValueError("--piston: a steered synthesis fires A first")
    limits = SteeringLimits.from_config(config)
    checked = check_steering(limits, fixed_second_injection=fixed_second_injection,
                             acquisition=plan_kwargs.get("acquisition", "software"),
                             **{k: v for k, v in steering.items() if k != "cd_molar"})
    if checked["quench"]:
        from ncsynth.plans import Chemical

        beamline_options["charge_b"] = QUENCH_CHARGE
        recipe_kwargs.setdefault("syringe_b", (Chemical(*QUENCH_CONTENTS),))
    elif checked["second_injection_at_radius_nm"] is not None:
        load_second_syringe(SyringeCharge(cd_molar=float(steering.get("cd_molar", 0.1))))
    feed = FitFeed()
    plan_kwargs.pop("piston", None)
    plan_kwargs.pop("acquisition", None)
    plan_kwargs.update(feed=feed, limits=limits, quench=checked["quench"],
                       target_radius_nm=checked["target_radius_nm"],
                       second_injection_at_radius_nm=checked["second_injection_at_radius_nm"])
    return feed


def steering_summary(decisions: list[dict], plan_kwargs: dict, summary: dict,
                     trace=None) -> dict:
    """The summary's ``decisions`` and ``steering`` (target, final radius and miss, nm; or
    B's firing against the crossing of its radius, s after A), with the simulated flask's
    numbers from ``trace`` (:class:`~ncsynth.flask_truth.FlaskTrace`) when there is one."""
    target = plan_kwargs.get("target_radius_nm")
    report = {"rule": "target_radius" if target is not None else "second_injection_at_radius",
              "acted": any(d.get("rule") in ("target_radius", "second_injection_at_radius")
                           for d in decisions),
              "fell_back": any(d.get("rule") == "fallback" for d in decisions)}
    if target is not None:
        final = summary.get("final_radius_nm")
        report.update(target_radius_nm=target, final_radius_nm=final,
                      miss_nm=None if final is None else final - target)
        truth = (summary.get("simulator_truth") or {}).get("at_last_frame") or {}
        if "mean_radius_nm" in truth:
            report["simulated_final_radius_nm"] = truth["mean_radius_nm"]
            report["simulated_miss_nm"] = truth["mean_radius_nm"] - target
        if report["miss_nm"] is not None:
            report["within_tolerance"] = abs(report["miss_nm"]) <= TARGET_TOLERANCE_NM
    else:
        radius = plan_kwargs["second_injection_at_radius_nm"]
        report["radius_nm"] = radius
        fired = next((d for d in decisions if d.get("rule") in
                      ("second_injection_at_radius", "fallback_delay")), None)
        if fired is not None:
            report.update(fired_at_s=fired["time_s"], crossing_time_s=fired["crossing_time_s"],
                          frame_interval_s=fired["frame_interval_s"])
            if trace is not None:
                crossing = _first_crossing(trace.time_s, trace.mean_radius_nm, radius)
                report["simulated_crossing_time_s"] = crossing
                report["after_simulated_crossing_s"] = fired["time_s"] - crossing
    acted = [d for d in decisions if math.isfinite(d.get("latency_wall_s", math.nan))]
    if acted:
        report["latency_wall_s"] = acted[0]["latency_wall_s"]
        report["latency_world_s"] = acted[0]["latency_world_s"]
        report["evaluation_latency_median_s"] = acted[0]["evaluation_latency_median_s"]
        report["evaluation_latency_max_s"] = acted[0]["evaluation_latency_max_s"]
    return {"decisions": decisions, "steering": report}


def _first_crossing(time_s, radius_nm, level: float) -> float:
    """First time (linear interpolation) ``radius_nm`` reaches ``level``; NaN if never."""
    t, r = np.asarray(time_s, float), np.asarray(radius_nm, float)
    above = np.flatnonzero(np.nan_to_num(r, nan=-np.inf) >= level)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0 or not math.isfinite(r[i - 1]):
        return float(t[i])
    return float(t[i - 1] + (level - r[i - 1]) * (t[i] - t[i - 1]) / (r[i] - r[i - 1]))


def steering_rows(summary: dict) -> list[tuple[str, str]]:
    """The terminal summary's lines of a steered dry run: one per decision, then the
    outcome against the target (see :func:`steering_summary`)."""
    rows = []
    for d in summary.get("decisions") or []:
        text = f"{d['time_s']:.1f} s after A: {d['rule']} -> {d['action']} ({d['reason']})"
        if math.isfinite(d.get("latency_wall_s", math.nan)):
            text += (f"; fit -> action {d['latency_wall_s'] * 1e3:.1f} ms wall, "
                     f"frame -> action {d['latency_world_s']:.3g} s world, frame interval "
                     f"{d['frame_interval_s']:.3g} s; {d['evaluations']:.0f} evaluations, fit -> "
                     f"decision median {d['evaluation_latency_median_s'] * 1e3:.2f} ms, max "
                     f"{d['evaluation_latency_max_s'] * 1e3:.2f} ms")
        rows.append(("decision", text))
    report = summary["steering"]
    if "target_radius_nm" in report:
        final = report.get("final_radius_nm")
        text = f"target {report['target_radius_nm']:g} nm: " + (
            "no frame fitted" if final is None else
            f"final {final:.3f} nm (miss {report['miss_nm']:+.3f} nm)")
        if "simulated_final_radius_nm" in report:
            text += (f"; simulated flask {report['simulated_final_radius_nm']:.3f} nm (miss "
                     f"{report['simulated_miss_nm']:+.3f} nm)")
    else:
        text = f"piston B at {report['radius_nm']:g} nm: " + (
            "not fired" if "fired_at_s" not in report else
            f"fired {report['fired_at_s']:.2f} s after A, running line crossed at "
            f"{report['crossing_time_s']:.2f} s, frame interval {report['frame_interval_s']:.3g}"
            f" s")
        if math.isfinite(report.get("simulated_crossing_time_s", math.nan)):
            text += (f"; simulated flask crossed at {report['simulated_crossing_time_s']:.2f} s "
                     f"({report['after_simulated_crossing_s']:+.2f} s)")
    if report.get("fell_back"):
        text += "; the live analysis stopped delivering: fixed protocol"
    elif not report.get("acted"):
        text += "; not reached: fixed protocol"
    rows.append(("steering", text))
    return rows


def taken_start_doc(start_doc: dict, trace) -> dict:
    """The start document as the frames were taken, for the simulated flask's per-frame
    truth: a second injection at a radius fired B at ``trace.second_injection_s`` (s after A),
    ending the first schedule there."""
    delay_s = getattr(trace, "second_injection_s", math.nan)
    if "second_injection" not in start_doc or not math.isfinite(delay_s):
        return start_doc
    first = [t for t in start_doc.get("frame_offsets_s") or [] if t < delay_s]
    return {**start_doc, "frame_offsets_s": first,
            "second_injection": {**start_doc["second_injection"], "delay_s": delay_s}}
