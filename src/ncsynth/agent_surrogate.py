"""The run-to-run agent's two-knob rule (issue 19): which reaction time and growth temperature
the next synthesis takes to reach a target final radius and, optionally, a target size
dispersion (sigma / radius), from the runs so far (:mod:`ncsynth.run_agent` runs the loop).

Why a surrogate and not the one-knob bracketing of :mod:`ncsynth.agent_rule`: on the simulated
flask the final radius is not monotonic in the growth temperature (it peaks near 260 °C and
falls above it, at 250 s and 580 s of reaction time) and the dispersion is lowest near 230 °C
(``benchmarks/run_agent_response.py --growth``, docs/run_agent.md), so no ordering of the runs
brackets a target. :class:`RecipeAgent` instead keeps one surrogate of each outcome, a
thin-plate-spline radial basis function with a linear tail (:class:`scipy.interpolate.
RBFInterpolator`) in normalised coordinates ``(ln t, T)`` scaled to the unit square, refitted
on every tell; its ask proposes the grid point of the configured box that minimises the
predicted normalised miss

    J = ((R - R*) / tol_R)^2 + ((D - D*) / tol_D)^2        (the second term only with a D*)

plus a small pull towards the best run so far (of several points predicted on target, the
nearest to what was measured), never within :data:`MIN_SPACING` of a run already made. The
first :data:`EXPLORATION` points are a fixed design spread over the box (a thin-plate spline
with a linear tail needs three points not on a line). J <= 2 with both terms <= 1 is a run on
target. It follows bluesky-adaptive's interface like :class:`~ncsynth.agent_rule.RadiusAgent`
(``ingest`` = tell, ``suggest`` = ask, ``get_best_points``, ``should_stop``, ``report``).
Radii in nm, times in s, temperatures in °C, dispersion dimensionless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from bluesky_adaptive.protocols import ID_KEY
from scipy.interpolate import RBFInterpolator

#: The first proposals, (ln t, T) scaled to [0, 1]: the middle of the box, then long reaction
#: times at a low and a high growth temperature (the radius responds little below ~110 s).
EXPLORATION = ((0.5, 0.5), (0.95, 0.15), (0.85, 0.85))
#: No proposal closer than this (unit square) to a run already made.
MIN_SPACING = 0.04
#: Weight of the pull towards the best run so far (per unit square distance squared).
PULL = 0.5
#: Grid points per side on which the predicted miss is minimised.
GRID = 81
#: Proposed growth temperatures are rounded to the controller's resolution (0.1 °C): the Eurotherm
#: holds one decimal, and a setpoint between two tenths never reads back as set (ophyd's
#: ``Signal.set`` of ``heater.setpoint`` stays pending and fails the next run's set).
SETPOINT_DECIMALS = 1

#: The report's keys: (name, event-model dtype, units).
REPORT_KEYS = (("iteration", "integer", ""), ("raw_uid", "string", ""),
               ("reaction_time_s", "number", "s"), ("growth_temperature_c", "number", "degC"),
               ("final_radius_nm", "number", "nm"), ("radius_err_nm", "number", "nm"),
               ("dispersion", "number", ""), ("miss_nm", "number", "nm"),
               ("dispersion_miss", "number", ""), ("normalised_miss", "number", ""),
               ("predicted_radius_nm", "number", "nm"), ("predicted_dispersion", "number", ""),
               ("best_raw_uid", "string", ""), ("next_reaction_time_s", "number", "s"),
               ("next_growth_temperature_c", "number", "degC"),
               ("next_predicted_miss", "number", ""))


@dataclass
class _Run:
    id: int
    reaction_time_s: float
    growth_temperature_c: float
    final_radius_nm: float
    radius_err_nm: float
    dispersion: float
    raw_uid: str
    predicted: tuple[float, float]


@dataclass
class RecipeAgent:
    """Ask/tell agent for a target final radius (nm, within ``tolerance_nm``) and optionally a
    target dispersion sigma / radius (within ``dispersion_tolerance``), choosing the reaction
    time (s) in ``time_bounds_s`` and the growth temperature (°C) in ``growth_bounds_c``."""

    target_radius_nm: float
    time_bounds_s: tuple[float, float]
    growth_bounds_c: tuple[float, float]
    tolerance_nm: float = 0.05
    target_dispersion: float | None = None
    dispersion_tolerance: float = 0.005
    runs: list[_Run] = field(default_factory=list, init=False)
    _asked: int = field(default=0, init=False, repr=False)
    _pending: dict = field(default_factory=dict, init=False, repr=False)

    # -- coordinates --------------------------------------------------------------------
    def _unit(self, reaction_time_s, growth_c) -> tuple:
        """Knobs (s, °C; floats or arrays) -> the unit square."""
        (t0, t1), (c0, c1) = self.time_bounds_s, self.growth_bounds_c
        return (np.log(reaction_time_s / t0) / math.log(t1 / t0), (growth_c - c0) / (c1 - c0))

    def _knobs(self, x: float, y: float) -> dict:
        (t0, t1), (c0, c1) = self.time_bounds_s, self.growth_bounds_c
        return {"reaction_time_s": float(t0 * (t1 / t0) ** x),
                "growth_temperature_c": min(max(round(float(c0 + y * (c1 - c0)),
                                                      SETPOINT_DECIMALS), c0), c1)}

    def _terms(self, radius_nm, dispersion):
        """The normalised misses (radius, dispersion; the latter 0 without a target)."""
        r = (np.asarray(radius_nm) - self.target_radius_nm) / self.tolerance_nm
        if self.target_dispersion is None:
            return r, np.zeros_like(r)
        return r, (np.asarray(dispersion) - self.target_dispersion) / self.dispersion_tolerance

    def _miss(self, radius_nm, dispersion):
        r, d = self._terms(radius_nm, dispersion)
        return r ** 2 + d ** 2

    # -- tell ---------------------------------------------------------------------------
    def ingest(self, points) -> None:
        """Tell: each point has ``_id``, ``reaction_time_s``, ``growth_temperature_c``,
        ``final_radius_nm``, ``radius_err_nm``, ``dispersion`` (sigma / radius), ``raw_uid``."""
        for p in points:
            self.runs.append(_Run(
                p[ID_KEY], float(p["reaction_time_s"]), float(p["growth_temperature_c"]),
                float(p["final_radius_nm"]), float(p["radius_err_nm"]), float(p["dispersion"]),
                str(p["raw_uid"]), self._pending.pop(p[ID_KEY], (math.nan, math.nan))))

    # -- ask ----------------------------------------------------------------------------
    def suggest(self, num_points: int | None = 1) -> list[dict]:
        """Ask: ``[{"_id": n, "reaction_time_s": t, "growth_temperature_c": T}]``."""
        if num_points not in (None, 1):
            raise ValueError(f"one synthesis at a time: num_points must be 1, got {num_points}")
        self._asked += 1
        knobs, predicted = self._next()
        self._pending[self._asked] = predicted
        return [{ID_KEY: self._asked, **knobs}]

    def predict(self, reaction_time_s, growth_temperature_c) -> tuple[np.ndarray, np.ndarray]:
        """The surrogates' final radius (nm) and dispersion at these knobs (arrays)."""
        x = np.column_stack(self._unit(np.asarray(reaction_time_s, float),
                                       np.asarray(growth_temperature_c, float)))
        return self._predict_unit(x)

    def _predict_unit(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known = np.array([self._unit(r.reaction_time_s, r.growth_temperature_c)
                          for r in self.runs])
        out = []
        for values in ([r.final_radius_nm for r in self.runs], [r.dispersion for r in self.runs]):
            model = RBFInterpolator(known, np.array(values), kernel="thin_plate_spline",
                                    degree=1, smoothing=1e-9)
            out.append(model(x))
        return out[0], out[1]

    def _next(self) -> tuple[dict, tuple[float, float]]:
        made = [self._unit(r.reaction_time_s, r.growth_temperature_c) for r in self.runs]
        if len(self.runs) < len(EXPLORATION):
            x = next(p for p in EXPLORATION
                     if all(math.dist(p, m) >= MIN_SPACING for m in made))
            return self._knobs(*x), (math.nan, math.nan)
        axis = np.linspace(0.0, 1.0, GRID)
        grid = np.array(np.meshgrid(axis, axis, indexing="ij")).reshape(2, -1).T
        distance = np.min(np.linalg.norm(grid[:, None, :] - np.array(made)[None], axis=2), axis=1)
        grid = grid[distance >= MIN_SPACING]
        radius, dispersion = self._predict_unit(grid)
        best = np.array(self._unit(*self._best_knobs()))
        score = self._miss(radius, dispersion) + PULL * np.sum((grid - best) ** 2, axis=1)
        i = int(np.argmin(score))
        return self._knobs(*grid[i]), (float(radius[i]), float(dispersion[i]))

    def _best(self) -> _Run:
        return min(self.runs, key=lambda r: float(self._miss(r.final_radius_nm, r.dispersion)))

    def _best_knobs(self) -> tuple[float, float]:
        best = self._best()
        return best.reaction_time_s, best.growth_temperature_c

    # -- what it knows ------------------------------------------------------------------
    def on_target(self, run: _Run) -> bool:
        r, d = self._terms(run.final_radius_nm, run.dispersion)
        return bool(abs(r) <= 1 and abs(d) <= 1)

    def should_stop(self) -> tuple[bool, str | None]:
        """(True, why) once the latest run is within both tolerances."""
        if not self.runs or not self.on_target(self.runs[-1]):
            return False, None
        r = self.runs[-1]
        what = f"target {self.target_radius_nm} nm"
        if self.target_dispersion is not None:
            what += f", dispersion {self.target_dispersion}"
        return True, (f"{what} reached within {self.tolerance_nm} nm"
                      + (f", {self.dispersion_tolerance}" if self.target_dispersion is not None
                         else "")
                      + f": {r.final_radius_nm:.3f} nm, dispersion {r.dispersion:.3f} at "
                        f"reaction_time_s = {r.reaction_time_s:.1f} s, growth_temperature_c = "
                        f"{r.growth_temperature_c:.1f} °C (run {len(self.runs)})")

    def get_best_points(self) -> list[tuple]:
        """``[(_id, {knobs}, {outcomes})]`` of the run with the smallest normalised miss."""
        if not self.runs:
            return []
        r = self._best()
        return [(r.id, {"reaction_time_s": r.reaction_time_s,
                        "growth_temperature_c": r.growth_temperature_c},
                 {"final_radius_nm": r.final_radius_nm, "radius_err_nm": r.radius_err_nm,
                  "dispersion": r.dispersion, "raw_uid": r.raw_uid})]

    def report(self) -> dict:
        """The latest run, its misses (nm; dispersion; normalised J), what the surrogates had
        predicted for it (nan for an exploration point), the best run's uid, and the next
        proposal with its predicted J (what a further ask would return; not counted as asked)."""
        r = self.runs[-1]
        knobs, predicted = self._next()
        miss = float(self._miss(r.final_radius_nm, r.dispersion))
        next_miss = float(self._miss(*predicted)) if not math.isnan(predicted[0]) else math.nan
        return {"iteration": len(self.runs), "raw_uid": r.raw_uid,
                "reaction_time_s": r.reaction_time_s,
                "growth_temperature_c": r.growth_temperature_c,
                "final_radius_nm": r.final_radius_nm, "radius_err_nm": r.radius_err_nm,
                "dispersion": r.dispersion, "miss_nm": r.final_radius_nm - self.target_radius_nm,
                "dispersion_miss": (r.dispersion - self.target_dispersion
                                    if self.target_dispersion is not None else math.nan),
                "normalised_miss": miss, "predicted_radius_nm": r.predicted[0],
                "predicted_dispersion": r.predicted[1],
                "best_raw_uid": self._best().raw_uid,
                "next_reaction_time_s": knobs["reaction_time_s"],
                "next_growth_temperature_c": knobs["growth_temperature_c"],
                "next_predicted_miss": next_miss}
