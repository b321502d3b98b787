"""What the simulated flask really held, recorded on the simulator's side of a dry run.

:class:`FlaskRecorder` is a slow model added to the simulated world after the reaction: every
time the world steps the kinetics (every 0.5 s of world time, and right before a syringe is
delivered) it records the reaction state — mean radius, σ, number concentration, yield — and,
after a second delivery, the two sets apart (seed 000 §S.5). Growth keeps the order of the
radii (dr/dt = j_G(r, t) is one ODE for every crystal), so the set present before the second
delivery is, until it dissolves, the N₁ largest crystals, N₁ being its number concentration
just before the delivery times the dilution; the rest is the new set.

:func:`headline_truth` applies the measured side's own definitions
(:mod:`ncsynth.analysis.nucleation_period`, :func:`~ncsynth.analysis.growth.fit_growth_exponent`)
to the recorded trace, so measured and true headline numbers mean the same thing. Hutch code
(devices, plans, analysis callbacks) never sees any of this. Times in s after the first
firing, radii in nm, concentrations in mol/L.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ncsynth.analysis.growth import fit_growth_exponent
from ncsynth.analysis.nucleation_period import FRACTION, time_to_fraction_of_final
from ncsynth.simulators.kinetics_parameters import AVOGADRO_PER_MOL

#: A new set below this fraction of the old set's number is not reported (not formed yet).
MIN_NEW_SET_FRACTION = 1e-3


def split_largest(radius_nm, numbers, n_large):
    """(r₁, σ₁, r₂, σ₂, c₂) of the ``n_large`` largest crystals and of the rest.

    ``numbers``: crystals per radius cell (any unit, the same as ``n_large``); the cell where
    the cumulative count from the top reaches ``n_large`` is shared pro rata. NaN for a set
    with no crystals.
    """
    r = np.asarray(radius_nm, dtype=float)
    n = np.clip(np.asarray(numbers, dtype=float), 0.0, None)
    from_top = np.cumsum(n[::-1])[::-1]            # crystals at or above each cell
    above = from_top - n                           # crystals strictly above each cell
    large = np.clip(n_large - above, 0.0, n)       # share of each cell in the large set
    small = n - large
    return (*_moments(r, large), *_moments(r, small), float(small.sum()))


def _moments(r, weights):
    total = weights.sum()
    if not total > 0:
        return math.nan, math.nan
    mean = float(weights @ r / total)
    return mean, math.sqrt(max(float(weights @ (r - mean) ** 2 / total), 0.0))


@dataclass(frozen=True)
class FlaskTrace:
    """The recorded truth: arrays on the world's kinetics steps (``time_s`` after the first firing).

    ``large_*``/``small_*``: the set present before the second delivery and the new one (NaN
    before it, and for a new set below :data:`MIN_NEW_SET_FRACTION` of the old one);
    ``second_injection_s``: the second firing (NaN for one injection).
    """

    time_s: np.ndarray
    mean_radius_nm: np.ndarray
    std_radius_nm: np.ndarray
    concentration_molar: np.ndarray
    yield_fraction: np.ndarray
    large_radius_nm: np.ndarray
    large_sigma_nm: np.ndarray
    small_radius_nm: np.ndarray
    small_sigma_nm: np.ndarray
    small_concentration_molar: np.ndarray
    second_injection_s: float = math.nan

    def until(self, t_end_s: float) -> "FlaskTrace":
        """The trace from the first firing up to ``t_end_s`` (e.g. the last frame's mid-exposure)."""
        keep = (self.time_s >= 0) & (self.time_s <= t_end_s)
        return FlaskTrace(**{f.name: (getattr(self, f.name)[keep] if f.name != "second_injection_s"
                                      else self.second_injection_s) for f in fields(self)})

    def at(self, times_s) -> dict:
        """Every recorded quantity linearly interpolated to ``times_s`` (e.g. frame mid-exposures)."""
        t = np.asarray(times_s, dtype=float)
        return {f.name: np.interp(t, self.time_s, getattr(self, f.name), left=math.nan,
                                  right=math.nan)
                for f in fields(self) if f.name not in ("time_s", "second_injection_s")}


class FlaskRecorder:
    """World model (``slow``: stepped with the kinetics, after it) recording the reaction state.

    Add it to the world after the reaction; :meth:`trace` gives the record as a :class:`FlaskTrace`.
    """

    slow = True

    def __init__(self):
        self._rows: list[tuple] = []
        self._deliveries_seen = 0
        self._old_set_molar = math.nan   # number of the set present before the second delivery

    def step(self, dt_s: float, world) -> None:
        reaction = world.reaction
        if reaction is None:
            return
        if len(world.deliveries) != self._deliveries_seen:
            self._deliveries_seen = len(world.deliveries)
            if self._deliveries_seen == 2 and self._rows:
                volume_ml = getattr(world.flask, "volume_ml", None)
                charge = world.deliveries[-1][1]
                dilution = 1.0 if not volume_ml else 1.0 - charge.volume_ml / volume_ml
                self._old_set_molar = self._rows[-1][3] * dilution
        sets = (math.nan,) * 5
        if math.isfinite(self._old_set_molar):
            numbers = np.asarray(reaction.number_density_per_m3) / AVOGADRO_PER_MOL / 1000.0  # mol/L
            sets = split_largest(reaction.radius_nm, numbers, self._old_set_molar)
            if not sets[4] > MIN_NEW_SET_FRACTION * self._old_set_molar:
                sets = (*sets[:2], math.nan, math.nan, sets[4])
        self._rows.append((world.time, reaction.mean_radius_nm, reaction.std_radius_nm,
                           reaction.concentration_molar, reaction.yield_fraction, *sets))

    def trace(self, first_firing_s: float, second_firing_s: float = math.nan) -> FlaskTrace:
        """The record with times after ``first_firing_s`` (world s); ``second_firing_s`` likewise."""
        columns = np.array(self._rows, dtype=float).reshape(-1, 10).T
        return FlaskTrace(columns[0] - first_firing_s, *columns[1:5], *columns[5:10],
                          second_injection_s=second_firing_s - first_firing_s)


def firing_times(injector) -> list[float]:
    """World times (s) at which the simulated injector's pistons fired, earliest first."""
    boot = injector.boot_epoch_s
    return sorted(boot + p.fired_us * 1e-6 for p in injector.pistons.values()
                  if p.fired_us is not None and boot is not None)


def headline_truth(trace: FlaskTrace, exponent_pairs=None, fraction: float = FRACTION) -> dict:
    """The true headline numbers of a (cut, see :meth:`FlaskTrace.until`) trace.

    98 % times of the concentration and the yield and their ratio, by the definitions of
    :func:`~ncsynth.analysis.nucleation_period.time_to_fraction_of_final` (§S.3); with
    ``exponent_pairs`` (what the measured exponent was fitted to, see
    :meth:`~ncsynth.analysis.superfocusing.SecondInjectionAnalysis.exponent_pairs`) the
    effective exponent that the true radii of both sets imply at the same frames, with the same
    weights (S4.15 fitted as the measurement does, ``growth_exponent_effective``, §S.5).
    """
    t_c = time_to_fraction_of_final(trace.time_s, trace.concentration_molar, fraction)
    t_y = time_to_fraction_of_final(trace.time_s, trace.yield_fraction, fraction)
    truth = {"t_concentration_s": t_c, "t_yield_s": t_y,
             "nucleation_fraction": t_c / t_y if t_y > 0 else math.nan}
    if exponent_pairs is not None:
        truth["growth_exponent_effective"] = effective_growth_exponent(trace, **exponent_pairs)
    return truth


def effective_growth_exponent(trace: FlaskTrace, time_s, r1_err_nm=None, r2_err_nm=None,
                              radius_correlation=None) -> float:
    """n of S4.15 fitted to the true mean radii of both sets at ``time_s`` (s after the first
    firing; the measured frames' mid-exposures), weighted by the measured radii's standard
    errors (nm) and their correlation when given: the value the measurement tends to without
    noise. The true law is not S4.15 exactly (S6.16's offset and Kelvin term), so where and how
    the pairs are weighted moves this n. NaN if fewer than 3 pairs or no fit."""
    true = trace.at(time_s)
    r1, r2 = true["large_radius_nm"], true["small_radius_nm"]
    inside = np.isfinite(r1) & np.isfinite(r2)
    if inside.sum() < 3:
        return math.nan
    pick = (lambda v: None if v is None else np.broadcast_to(np.asarray(v, dtype=float),
                                                             inside.shape)[inside])
    fit = fit_growth_exponent(r1[inside], r2[inside], pick(r1_err_nm), pick(r2_err_nm),
                              radius_correlation=pick(radius_correlation))
    return fit.n if fit.success else math.nan


def frame_mid_times_s(start_doc: dict, n_frames: int) -> np.ndarray:
    """Scheduled mid-exposures (s after the first firing) of the first ``n_frames`` frames of a
    raw run, from its start document (``frame_offsets_s``, and after a second injection
    ``second_injection.delay_s`` + ``second_frame_offsets_s``)."""
    offsets = list(start_doc.get("frame_offsets_s") or [])
    if "second_injection" in start_doc:
        delay = float(start_doc["second_injection"]["delay_s"])
        offsets += [delay + t for t in start_doc.get("second_frame_offsets_s") or []]
    half = 0.5 * float((start_doc.get("schedule") or {}).get("integration_s", 0.0))
    return np.asarray(offsets[:n_frames], dtype=float) + half


def truth_path(root, uid: str) -> Path:
    """Where a dry run in data directory ``root`` keeps its flask's truth (:func:`record_truth`)."""
    return Path(root) / "truth" / f"{uid}.json"


def stored_truth(root, uid: str) -> dict | None:
    """What :func:`record_truth` saved for run ``uid`` in data directory ``root`` (``headline``,
    ``frames``, ``second_injection_s``); None if it saved nothing (not a dry run); ValueError
    naming the file if it cannot be read as such."""
    path = truth_path(root, uid)
    if not path.exists():
        return None
    try:
        truth = json.loads(path.read_text())
        if not isinstance(truth.get("headline"), dict):
            raise ValueError("no headline")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable simulated truth ({exc})") from None
    return truth


def record_truth(trace: FlaskTrace, start_doc: dict, n_frames: int, exponent_pairs, path) -> dict:
    """Headline truth of a dry run up to its last frame, and the per-frame truth saved to ``path``.

    Returns the :func:`headline_truth` keys and ``at_last_frame`` (the flask's mean radius,
    concentration and yield at the last frame's mid-exposure, the moment a run cut short by
    ``--frames`` is measured at) ({} without frames); ``path`` (JSON) gets them with every
    recorded quantity at each scheduled frame mid-exposure, for ``ncsynth validate``.
    """
    times = frame_mid_times_s(start_doc, n_frames)
    if times.size == 0:
        return {}
    headline = headline_truth(trace.until(times[-1]), exponent_pairs)
    frames = {"time_s": times, **trace.at(times)}
    headline["at_last_frame"] = {"time_s": float(times[-1]), **{
        key: float(frames[key][-1]) for key in ("mean_radius_nm", "concentration_molar",
                                                "yield_fraction")}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "headline": headline, "second_injection_s": trace.second_injection_s,
        "frames": {k: np.asarray(v).tolist() for k, v in frames.items()}}))
    return headline
