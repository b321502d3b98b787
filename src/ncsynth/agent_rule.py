"""The run-to-run agent's rule (issue 19): which reaction time the next synthesis takes to
reach a target final radius, from the runs so far (:mod:`ncsynth.run_agent` runs the loop).

The agent, :class:`RadiusAgent`, follows bluesky-adaptive's interface
(:class:`bluesky_adaptive.protocols.Optimizer`, with ``SupportsStoppingCriteria``):
``ingest`` is its *tell* (a finished run's final mean radius and size dispersion, read from the
run's derived ``fits``), ``suggest`` its *ask* (the next recipe), ``get_best_points`` the run
closest to the target, ``should_stop`` whether the target is met, and ``report`` a document of
what it knows.

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
from dataclasses import asdict, dataclass, field

from bluesky_adaptive.protocols import ID_KEY

#: An extrapolation this close to a bound (in ln s, ~10 %) goes to the bound.
NEAR_BOUND = 0.1


class TargetUnreachable(ValueError):
    """The protocol's bounds cannot give the target final radius (said in one line)."""


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
