"""In-run decisions from the live fits (issue 19): the rules, pure (numpy only).

A decision never rests on one frame. :func:`running_radius` fits a straight line, weighted
by the fits' errors, to the mean radius of the last ``window`` fitted frames and evaluates
it at the newest one; its standard error is the line's, scaled by sqrt(χ²_red) when the
frames scatter more than their error bars say (as the kinetics laws are, see DESIGN.md).
A :class:`RadiusRule` acts once that running estimate has reached its radius with the
stated confidence: the line ``lead_s`` ahead, less z times its error, at or above the radius
(z = ``confidence_sigma``, one-sided; z = 2 is 97.7 %). With a radius growing by δ per frame the rule acts within one
frame of the crossing plus z·error, and never on a single frame that scatters high.

``lead_s`` is what the action cannot stop at once: the crystals go on growing while the flask
cools after the heater is switched off (or after a quench, faster). To first order that growth
is the rate at the stop times a time of the apparatus, ``coast_s`` (``quench_coast_s``), which
a steered run calibrates: (final radius - radius at the decision) / rate at the decision.
Early in a synthesis the crystals grow ~1 nm/s and no linear coast describes that: a lead
projecting more than ``max_coast_nm`` of growth is not used.

Radii in nm, times in s after the first firing (the fits' ``time_s``).

:class:`SteeringLimits` are the configured limits (``[steering]`` in the configuration);
:func:`check_steering` refuses, in one line naming what and why, targets outside them and
combinations the plan cannot carry out, before anything moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncsynth import validation

#: The raw run's stream of steering decisions (one event per decision; fields ``agent_<name>``,
#: :data:`ncsynth.plans.steering.AGENT_TEXT` and ``AGENT_NUMBERS``).
AGENT = "agent"


@dataclass(frozen=True)
class FitPoint:
    """One frame's fit as the steering reads it: time after the first firing (s), mean
    radius and its error (nm), and the wall time (``time.perf_counter``, s) it arrived."""

    time_s: float
    radius_nm: float
    radius_err_nm: float
    arrived_wall_s: float = math.nan

    @property
    def usable(self) -> bool:
        return all(math.isfinite(v) for v in (self.time_s, self.radius_nm, self.radius_err_nm)) \
            and self.radius_err_nm > 0 and self.radius_nm > 0


@dataclass(frozen=True)
class RadiusEstimate:
    """The running line at ``time_s``: radius ± error (nm), growth rate ± error (nm/s) and
    their covariance (nm²/s), from ``n_fits`` frames (the newest arrived at ``arrived_wall_s``,
    perf_counter s)."""

    time_s: float
    radius_nm: float
    radius_err_nm: float
    rate_nm_per_s: float
    rate_err_nm_per_s: float
    covariance_nm2_per_s: float
    n_fits: int
    arrived_wall_s: float

    def ahead(self, lead_s: float) -> tuple[float, float]:
        """The line ``lead_s`` ahead: (radius, error), nm, the error from both coefficients'
        (a fast, noisy growth early in the synthesis projects with a large error)."""
        variance = self.radius_err_nm ** 2 + lead_s ** 2 * self.rate_err_nm_per_s ** 2 \
            + 2 * lead_s * self.covariance_nm2_per_s
        return self.radius_nm + self.rate_nm_per_s * lead_s, math.sqrt(max(variance, 0.0))

    def crossing_time_s(self, radius_nm: float) -> float:
        """When the running line passes ``radius_nm`` (s after the first firing); NaN if it
        does not grow."""
        if not self.rate_nm_per_s > 0:
            return math.nan
        return self.time_s + (radius_nm - self.radius_nm) / self.rate_nm_per_s


def running_radius(points, window: int = 5, min_fits: int = 3) -> RadiusEstimate | None:
    """The running estimate from the usable ones among the last ``window`` points (see
    module); None with fewer than ``min_fits`` usable points there."""
    recent = [p for p in list(points)[-window:] if p.usable]
    if len(recent) < min_fits:
        return None
    t = np.array([p.time_s for p in recent])
    r = np.array([p.radius_nm for p in recent])
    w = 1.0 / np.array([p.radius_err_nm for p in recent]) ** 2
    design = np.column_stack([np.ones_like(t), t - t[-1]])
    normal = design.T @ (design * w[:, None])
    try:
        covariance = np.linalg.inv(normal)
    except np.linalg.LinAlgError:  # all at one time: no slope
        return None
    coefficients = covariance @ (design.T @ (w * r))
    residual = r - design @ coefficients
    dof = len(recent) - 2
    chi2_reduced = float(residual @ (w * residual)) / dof if dof > 0 else 1.0
    covariance = covariance * max(1.0, chi2_reduced)
    return RadiusEstimate(time_s=float(t[-1]), radius_nm=float(coefficients[0]),
                          radius_err_nm=float(math.sqrt(covariance[0, 0])),
                          rate_nm_per_s=float(coefficients[1]),
                          rate_err_nm_per_s=float(math.sqrt(covariance[1, 1])),
                          covariance_nm2_per_s=float(covariance[0, 1]), n_fits=len(recent),
                          arrived_wall_s=recent[-1].arrived_wall_s)


@dataclass(frozen=True)
class RadiusRule:
    """Act once the running line, ``lead_s`` ahead, has reached ``radius_nm`` with
    ``confidence_sigma``."""

    name: str
    radius_nm: float
    confidence_sigma: float = 2.0
    lead_s: float = 0.0
    max_lead_nm: float = 0.2

    def lead_for(self, estimate: RadiusEstimate) -> float:
        """``lead_s``, or 0 while the growth it projects exceeds ``max_lead_nm``: a linear
        coast does not describe nucleation and the fast early growth (~1 nm/s)."""
        growth_nm = estimate.rate_nm_per_s * self.lead_s
        return self.lead_s if 0 <= growth_nm <= self.max_lead_nm else 0.0

    def predicted_nm(self, estimate: RadiusEstimate) -> float:
        """The radius the action will leave: the line :meth:`lead_for` ahead."""
        return estimate.ahead(self.lead_for(estimate))[0]

    def reached(self, estimate: RadiusEstimate | None) -> bool:
        if estimate is None:
            return False
        radius_nm, error_nm = estimate.ahead(self.lead_for(estimate))
        return radius_nm - self.confidence_sigma * error_nm >= self.radius_nm


@dataclass(frozen=True)
class SteeringLimits:
    """What the steering may be asked (configuration ``[steering]``).

    min_radius_nm, max_radius_nm: targets the live fit measures in its q range; the
    nucleating crystals (~1 nm) are the lower end. confidence_sigma: z of the rules.
    window_frames: frames in the running estimate. analysis_stall_s: wall time a dry run
    with a jumping clock waits for a frame's fit before it says the live analysis has
    stopped delivering and falls back to the fixed protocol. coast_s, quench_coast_s: the
    growth after switching the heater off (with a quench), in s of the rate at the stop (see
    module); the defaults are the simulated flask's, measured with steered dry runs;
    max_coast_nm: the largest growth after the stop a lead may anticipate (see module).
    """

    min_radius_nm: float = 1.0
    max_radius_nm: float = 5.0
    confidence_sigma: float = 2.0
    window_frames: int = 5
    analysis_stall_s: float = 30.0
    coast_s: float = 107.0
    quench_coast_s: float = 52.0
    max_coast_nm: float = 0.3

    def __post_init__(self):
        if not 0 < self.min_radius_nm < self.max_radius_nm:
            raise ValueError(f"steering limits: min_radius_nm ({self.min_radius_nm}) must be "
                             f"below max_radius_nm ({self.max_radius_nm})")

    @classmethod
    def from_config(cls, config: dict) -> "SteeringLimits":
        return cls(**(config.get("steering") or {}))


def check_steering(limits: SteeringLimits, *, target_radius_nm=None, quench=False,
                   second_injection_at_radius_nm=None, acquisition="software",
                   fixed_second_injection=False) -> dict:
    """The steering's requests checked against ``limits`` (ValueError/TypeError, one line
    naming what and why); return ``{"target_radius_nm", "second_injection_at_radius_nm",
    "quench"}`` with plain values."""
    checked = {"target_radius_nm": None, "second_injection_at_radius_nm": None,
               "quench": bool(quench)}
    for name, value in (("target_radius_nm", target_radius_nm),
                        ("second_injection_at_radius_nm", second_injection_at_radius_nm)):
        if value is not None:
            try:
                checked[name] = validation.real(name, value, minimum=limits.min_radius_nm,
                                                maximum=limits.max_radius_nm, unit="nm")
            except ValueError as exc:
                raise ValueError(f"{exc} (the configured [steering] limits)") from None
    target, second = checked["target_radius_nm"], checked["second_injection_at_radius_nm"]
    if quench and target is None:
        raise ValueError("quench ends the growth at the target radius: give target_radius_nm")
    if target is None and second is None:
        raise ValueError("steering needs a target_radius_nm or a "
                         "second_injection_at_radius_nm")
    if target is not None and second is not None:
        raise ValueError("target_radius_nm with second_injection_at_radius_nm: one decision "
                         "per run for now (piston B either quenches or injects)")
    if second is not None and fixed_second_injection:
        raise ValueError("second_injection_at_radius_nm replaces the fixed second injection "
                         "delay: give one of them")
    if acquisition != "software":
        raise ValueError("steering acts between software-triggered frames: acquisition must "
                         f"be 'software', got {acquisition!r}")
    return checked
