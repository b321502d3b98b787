"""Reaction kinetics from a series of SAXS fits (seed 000 §S.2.3 and §S.3.1–S.3.2).

* ``yield_fraction`` / ``yield_fraction_err``: reaction yield from radius, width and
  concentration (S2.5, S2.6), and its error propagated from theirs.
* ``fit_buildup``: single-exponential build-up n(t) = n_∞·(1 − e^{−k(t−t0)}) (S3.3), for the
  nanocrystal concentration.
* ``fit_second_order``: second-order monomer formation (S3.2), for the yield.
* ``time_to_fraction``: when a fitted law reaches a fraction (98 %) of its final value.

:func:`ncsynth.analysis.nucleation_period.summarize_kinetics` puts the laws beside the 98 %
times taken from the data themselves (the primary numbers).

How well a law fits is always reported (``CurveFit.chi2_reduced``).  With per-point errors
a law whose χ² has a p-value below ``MISFIT_P_VALUE`` does not describe the data: the fit says
so (``describes_data`` False, ``reason``), and its covariance — like that of any weighted fit with
χ²_red > 1 — is scaled by χ²_red, so that no error bar pretends the law fitted.  Without
per-point errors a fit is unweighted, its covariance scaled by the residual variance (scipy
``curve_fit`` convention) and χ²_red is that variance (no test possible).

Time in s, concentrations in mol/L, k in 1/s, k2 in L mol⁻¹ s⁻¹.  Non-finite points (failed
frames as NaN) are skipped; too few points or a failed optimisation give ``success=False`` with
a ``reason`` instead of an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import chi2 as chi2_distribution


CDSE_LATTICE_NM = 0.6077  # zinc blende lattice parameter a (S2.5)
CD_PER_UNIT_CELL = 4
#: A fit needs at least this many points more than parameters.
MIN_EXTRA_POINTS = 3
#: A weighted fit whose χ² is less likely than this does not describe the data: a kinetic law
#: here, a single population of a frame (analysis/frame_model.py), a McSAS size distribution
#: (analysis/mcsas.py).
MISFIT_P_VALUE = 1e-3


def mean_sphere_volume_nm3(radius_nm, sigma_nm, skewness=0.0):
    """⟨V⟩ = 4/3·π·(R0³ + 3·R0·σ² + γ·σ³) of a radius distribution with mean R0, standard
    deviation σ and skewness γ (0 for the Gaussian of S2.3), nm³ (for S2.5)."""
    r = np.asarray(radius_nm, dtype=float)
    s = np.asarray(sigma_nm, dtype=float)
    return 4.0 / 3.0 * math.pi * (r**3 + 3.0 * r * s**2 + np.asarray(skewness, dtype=float) * s**3)


def yield_fraction(radius_nm, sigma_nm, concentration_molar, cd_initial_molar,
                   lattice_nm=CDSE_LATTICE_NM, skewness=0.0):
    """Reaction yield Y = c_NC·n_Cd/c_Cd,0 with n_Cd = 4⟨V⟩/a³ (S2.5, S2.6); vectorised, NaN-transparent.

    ``radius_nm``, ``sigma_nm``, ``skewness``: mean, standard deviation and skewness of the
    radius distribution (skewness 0: the Gaussian of S2.3);
    ``concentration_molar``: nanocrystal concentration; ``cd_initial_molar``: initial Cd
    precursor concentration; ``lattice_nm``: cubic lattice parameter a.
    """
    if not cd_initial_molar > 0:
        raise ValueError(f"cd_initial_molar must be > 0, got {cd_initial_molar!r}")
    if not lattice_nm > 0:
        raise ValueError(f"lattice_nm must be > 0, got {lattice_nm!r}")
    cd_per_crystal = CD_PER_UNIT_CELL * mean_sphere_volume_nm3(radius_nm, sigma_nm, skewness) / lattice_nm**3
    return np.asarray(concentration_molar, dtype=float) * cd_per_crystal / cd_initial_molar


def cd_after_second_injection(cd_initial_molar, cd_second_molar, cd_syringe_b_molar):
    """Cd (mol/L) in the flask after a second injection: c_Cd,0 of S2.6 for the frames after it.

    Piston A's Cd diluted by B's volume plus B's Cd: c₀·(1 − c₂/c_B) + c₂, with c₀ = Cd after A
    (in the volume after A), c₂ = Cd added by B (in the volume after both), c_B = Cd in
    syringe B, so that c₂/c_B = V_B/V_after both.
    """
    if not cd_syringe_b_molar >= cd_second_molar > 0:
        raise ValueError(f"need cd_syringe_b_molar >= cd_second_molar > 0, got "
                         f"{cd_syringe_b_molar!r} and {cd_second_molar!r}")
    return cd_initial_molar * (1.0 - cd_second_molar / cd_syringe_b_molar) + cd_second_molar


def yield_fraction_err(radius_nm, radius_err_nm, sigma_nm, sigma_err_nm, concentration_molar,
                       concentration_err_molar, cd_initial_molar, lattice_nm=CDSE_LATTICE_NM):
    """Standard error of ``yield_fraction`` (S2.5, S2.6), the three errors taken independent.

    Y ∝ c·(R³ + 3Rσ²): δY/Y = √[(δc/c)² + ((3R² + 3σ²)δR/v)² + (6Rσ·δσ/v)²], v = R³ + 3Rσ².
    The fit's R and c are anticorrelated, so this is an upper bound (used as relative weights).
    """
    r, s, c = (np.asarray(a, dtype=float) for a in (radius_nm, sigma_nm, concentration_molar))
    dr, ds, dc = (np.asarray(a, dtype=float) for a in (radius_err_nm, sigma_err_nm,
                                                        concentration_err_molar))
    ds = np.where(np.isfinite(ds), ds, 0.0)  # σ held at its lower bound: no error of its own
    v = r**3 + 3.0 * r * s**2
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.sqrt((dc / c) ** 2 + ((3 * r**2 + 3 * s**2) * dr / v) ** 2
                           + (6 * r * s * ds / v) ** 2)
    return np.abs(yield_fraction(r, s, c, cd_initial_molar, lattice_nm)) * relative


def buildup_fraction(time_s, rate_per_s, delay_s=0.0):
    """Normalised exponential build-up 1 − e^{−k(t−t0)} for t > t0, else 0 (S3.3)."""
    elapsed = np.maximum(np.asarray(time_s, dtype=float) - delay_s, 0.0)
    return -np.expm1(-rate_per_s * elapsed)


def second_order_fraction(time_s, k2_l_per_mol_s, beta, cd_initial_molar, delay_s=0.0):
    """Normalised S3.2: n_CdSe(t)/n_CdSe(∞) for Se:Cd ratio ``beta`` (final value min(1, β)·n_Cd,0).

    S3.2 with c0·n_Cd,0 = ``cd_initial_molar``: n/n_Cd,0 = 1 − (β−1)E/(β−E), E = e^{−k2(β−1)c t};
    β = 1 uses its limit k2·c·t/(1 + k2·c·t).
    """
    elapsed = np.maximum(np.asarray(time_s, dtype=float) - delay_s, 0.0)
    kct = k2_l_per_mol_s * cd_initial_molar * elapsed
    excess = beta - 1.0
    if abs(excess) < 1e-6:
        return kct / (1.0 + kct)
    if excess > 0:
        e = np.exp(-excess * kct)
        return 1.0 - excess * e / (beta - e)
    # Se limiting (β < 1): rewrite with 1/E = e^{(β−1)kct} ≤ 1 to avoid overflow; final value β.
    inv_e = np.exp(excess * kct)
    return (1.0 - excess / (beta * inv_e - 1.0)) / beta


@dataclass(frozen=True)
class CurveFit:
    """Fitted parameters of a kinetic law with standard errors and covariance (NaN if failed).

    ``chi2_reduced``: how well the law fits; ``describes_data`` False (with the ``reason``)
    when it does not (see the module docstring), the covariance then scaled by χ²_red.
    """

    law: str
    names: tuple
    values: tuple
    errors: tuple
    chi2_reduced: float
    n_points: int
    success: bool
    reason: str = ""
    fixed: dict = field(default_factory=dict, compare=False)
    covariance: np.ndarray = field(default=None, compare=False, repr=False)
    describes_data: bool = True

    def __getitem__(self, name):
        """Value of a fitted (or fixed) parameter by name."""
        if name in self.names:
            return self.values[self.names.index(name)]
        return self.fixed[name]

    def error(self, name):
        """Standard error of a fitted parameter (0 for a fixed one)."""
        return self.errors[self.names.index(name)] if name in self.names else 0.0

    def value(self, time_s):
        """The fitted curve at ``time_s`` (s), in the units of the fitted data."""
        return _LAWS[self.law].curve(np.asarray(time_s, dtype=float), self._parameters(self.values))

    def _parameters(self, values):
        parameters = dict(self.fixed)
        parameters.update(zip(self.names, values))
        return parameters


class _Law:
    def __init__(self, curve, time_to_fraction):
        self.curve = curve
        self.time_to_fraction = time_to_fraction


def _buildup_curve(t, p):
    return p["amplitude"] * buildup_fraction(t, p["rate_per_s"], p["delay_s"])


def _buildup_time(fraction, p):
    return p["delay_s"] - math.log1p(-fraction) / p["rate_per_s"]


def _second_order_curve(t, p):
    return p["amplitude"] * second_order_fraction(t, p["k2_l_per_mol_s"], p["beta"],
                                                   p["cd_initial_molar"], p["delay_s"])


def _second_order_time(fraction, p):
    """Invert the normalised S3.2 for the time at which it equals ``fraction``."""
    beta, kc = p["beta"], p["k2_l_per_mol_s"] * p["cd_initial_molar"]
    excess = beta - 1.0
    if abs(excess) < 1e-6:
        return p["delay_s"] + fraction / ((1.0 - fraction) * kc)
    if excess > 0:
        e = (1.0 - fraction) * beta / (beta - fraction)
    else:
        e = (1.0 - fraction * beta) / (1.0 - fraction)
    return p["delay_s"] - math.log(e) / (excess * kc)


_LAWS = {"S3.3": _Law(_buildup_curve, _buildup_time), "S3.2": _Law(_second_order_curve, _second_order_time)}


def _clean(time_s, values, errors):
    t = np.asarray(time_s, dtype=float)
    y = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.shape != y.shape:
        raise ValueError(f"time_s and values must be 1-D of the same length, got shapes {t.shape}, {y.shape}")
    keep = np.isfinite(t) & np.isfinite(y)
    e = None
    if errors is not None:
        e = np.asarray(errors, dtype=float)
        if e.shape != t.shape:
            raise ValueError(f"errors must match time_s in shape, got {e.shape} and {t.shape}")
        keep &= np.isfinite(e) & (e > 0)
    return t[keep], y[keep], (None if e is None else e[keep])


def _fit(law, names, guess, lower, upper, fixed, time_s, values, errors, skip=""):
    t, y, e = _clean(time_s, values, errors)
    n = t.size
    nan = (math.nan,) * len(names)

    def failed(reason):  # a law not fitted does not describe the data either
        return CurveFit(law, tuple(names), nan, nan, math.nan, n, False, reason, dict(fixed),
                        describes_data=False)

    if skip:
        return failed(skip)
    if n < len(names) + MIN_EXTRA_POINTS:
        return failed(f"{n} usable points for {len(names)} parameters, need {len(names) + MIN_EXTRA_POINTS}")
    if not np.any(y != 0):
        return failed("all values are zero")

    def model(times, *values):
        parameters = dict(fixed)
        parameters.update(zip(names, values))
        return _LAWS[law].curve(times, parameters)

    start = np.clip(guess(t, y), np.nextafter(lower, np.inf), np.nextafter(upper, -np.inf))
    try:
        values_fit, covariance = curve_fit(model, t, y, p0=start, sigma=e, absolute_sigma=e is not None,
                                           bounds=(lower, upper), max_nfev=2000, x_scale="jac")
    except (RuntimeError, ValueError) as error:
        return failed(f"optimisation failed: {error}")
    residual = (y - model(t, *values_fit)) / (1.0 if e is None else e)
    dof = n - len(names)
    chi2_reduced = float(residual @ residual / dof)
    reason, describes = "", True
    if e is not None and chi2_reduced > 1.0:
        covariance = covariance * chi2_reduced
        p_value = float(chi2_distribution.sf(chi2_reduced * dof, dof))
        if p_value < MISFIT_P_VALUE:
            describes = False
            reason = (f"{law} does not describe the data: reduced chi2 = {chi2_reduced:.3g} "
                      f"(p = {p_value:.1g}); its errors are scaled by sqrt(reduced chi2)")
    if not np.all(np.isfinite(np.diag(covariance))):
        return failed("parameters not determined by the data (singular covariance)")
    flat = _undetermined(covariance)
    if flat.any():  # bounded curve_fit gives such a direction zero variance, not an infinite one
        covariance = covariance.copy()
        covariance[flat, :] = covariance[:, flat] = np.inf
        reason = "; ".join(filter(None, [reason, (
            f"{', '.join(np.asarray(names)[flat])} not determined by the data (chi2 is flat "
            f"along it): its error is infinite")]))
    errors_fit = np.sqrt(np.diag(covariance))
    return CurveFit(law, tuple(names), tuple(map(float, values_fit)), tuple(map(float, errors_fit)),
                    chi2_reduced, n, True, reason, dict(fixed), covariance, describes)


#: A direction of the parameters whose scaled variance is below this fraction of the largest
#: is one the data do not determine (its singular value was discarded, or nearly so).
FLAT_DIRECTION_RATIO = 1e-10


def _undetermined(covariance) -> np.ndarray:
    """Which parameters a least-squares covariance leaves undetermined (bool per parameter).

    scipy's ``curve_fit`` with bounds (the 'trf' method) inverts the Jacobian's normal matrix
    by a pseudo-inverse that drops its near-zero singular values: a parameter the data do not
    constrain (e.g. the S3.3 rate of a build-up complete before the first frame) then gets
    variance **zero**, i.e. a confident error, instead of an infinite one. Such a direction is
    an eigenvector of the correlation matrix with a ~zero eigenvalue (or a zero variance); the
    parameters that take part in it (components above 0.1) are the undetermined ones.
    """
    variance = np.diag(covariance)
    flat = ~(variance > 0)
    scale = np.sqrt(np.where(flat, 1.0, variance))
    kept = ~flat
    if kept.sum() > 1:
        correlation = covariance[np.ix_(kept, kept)] / np.outer(scale[kept], scale[kept])
        eigenvalues, vectors = np.linalg.eigh(correlation)
        for value, vector in zip(eigenvalues, vectors.T):
            if value < FLAT_DIRECTION_RATIO * eigenvalues[-1]:
                flat[np.flatnonzero(kept)[np.abs(vector) > 0.1]] = True
    return flat


def fit_buildup(time_s, values, errors=None, fit_delay=False, skip=""):
    """Fit the exponential build-up n_∞·(1 − e^{−k(t−t0)}) (S3.3) to ``values`` against ``time_s``.

    Parameters ``amplitude`` (n_∞, units of ``values``), ``rate_per_s`` (k) and, with
    ``fit_delay``, ``delay_s`` (t0, otherwise fixed at 0).  Returns a ``CurveFit``; ``skip``:
    why the law does not apply to these data (the fit is not made and fails with it).
    """
    names = ["amplitude", "rate_per_s"] + (["delay_s"] if fit_delay else [])
    fixed = {} if fit_delay else {"delay_s": 0.0}

    def guess(t, y):
        amplitude = _plateau(y)
        start = [amplitude, math.log(2.0) / _half_time(t, y, amplitude)]
        return start + ([float(t.min())] if fit_delay else [])

    lower = [-np.inf, 0.0] + ([-np.inf] if fit_delay else [])
    upper = [np.inf, np.inf] + ([np.inf] if fit_delay else [])
    return _fit("S3.3", names, guess, lower, upper, fixed, time_s, values, errors, skip)


def fit_second_order(time_s, values, cd_initial_molar, beta, errors=None, fit_beta=False,
                     fit_delay=False, skip=""):
    """Fit Y∞ × normalised S3.2 to ``values`` (e.g. the yield) against ``time_s``.

    Parameters ``amplitude`` (final value Y∞, which S3.2 alone fixes at min(1, β); kept free
    because real syntheses stop short of full conversion), ``k2_l_per_mol_s`` (k2), with
    ``fit_beta`` also ``beta`` (the Se:Cd molar ratio, otherwise fixed at ``beta``), with
    ``fit_delay`` also ``delay_s``.  ``cd_initial_molar`` = c0·n_Cd,0 of S3.2; ``skip`` as
    for :func:`fit_buildup`.
    """
    if not cd_initial_molar > 0:
        raise ValueError(f"cd_initial_molar must be > 0, got {cd_initial_molar!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    names = ["amplitude", "k2_l_per_mol_s"] + (["beta"] if fit_beta else []) + (["delay_s"] if fit_delay else [])
    fixed = {"cd_initial_molar": float(cd_initial_molar)}
    if not fit_beta:
        fixed["beta"] = float(beta)
    if not fit_delay:
        fixed["delay_s"] = 0.0

    def guess(t, y):
        amplitude = _plateau(y)
        unit_rate = {"beta": beta, "k2_l_per_mol_s": 1.0, "cd_initial_molar": cd_initial_molar, "delay_s": 0.0}
        k2 = _second_order_time(0.5, unit_rate) / _half_time(t, y, amplitude)
        return [amplitude, k2] + ([beta] if fit_beta else []) + ([float(t.min())] if fit_delay else [])

    lower = [-np.inf, 0.0] + ([1e-3] if fit_beta else []) + ([-np.inf] if fit_delay else [])
    upper = [np.inf, np.inf] + ([1e3] if fit_beta else []) + ([np.inf] if fit_delay else [])
    return _fit("S3.2", names, guess, lower, upper, fixed, time_s, values, errors, skip)


def _plateau(y):
    """Final value estimate: mean of the last fifth of the points (at least 3)."""
    tail = y[-max(3, y.size // 5):]
    return float(np.mean(tail))


def _half_time(t, y, amplitude):
    """First time the data pass half the plateau (the span of t if they never do)."""
    order = np.argsort(t)
    t, y = t[order], y[order]
    above = np.nonzero(y * np.sign(amplitude) >= 0.5 * abs(amplitude))[0]
    span = float(t[-1] - t[0]) or 1.0
    half = float(t[above[0]]) if above.size else span
    return half if half > 0 else span / max(t.size, 1)


def time_to_fraction(fit: CurveFit, fraction=0.98):
    """(time_s, error_s) at which the fitted curve reaches ``fraction`` of its final value.

    t98 = t0 + ln(50)/k for S3.3.  The error propagates the fit covariance (delta method).
    Returns (nan, nan) for a failed fit.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
    if not fit.success:
        return math.nan, math.nan
    law = _LAWS[fit.law]

    def at(values):
        return law.time_to_fraction(fraction, fit._parameters(values))

    values = np.array(fit.values)
    time = at(values)
    gradient = np.empty(values.size)
    for index, value in enumerate(values):
        step = 1e-6 * max(abs(value), 1e-12)
        up, down = values.copy(), values.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (at(up) - at(down)) / (2.0 * step)
    known = np.isfinite(np.diag(fit.covariance))
    if np.any(gradient[~known] != 0):  # the time depends on a parameter the data leave free
        return float(time), math.inf
    part = gradient[known]
    return float(time), float(math.sqrt(max(part @ fit.covariance[np.ix_(known, known)] @ part, 0.0)))
