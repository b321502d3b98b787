"""Shape-free Monte Carlo size distribution of spheres from one SAXS pattern (McSAS).

Seed 002 (Fig. 2) reads the relative volume fractions of magic-size clusters and nanocrystals
from "Monte Carlo fits" of in-situ SAXS patterns, i.e. McSAS: Bressler, Pauw & Thünemann,
J. Appl. Cryst. 48 (2015) 962, and Pauw et al., J. Appl. Cryst. 46 (2013) 365.

Model (absolute units, sphere form factor of ``ncsynth.analysis.scattering``, corrected S2.2)::

    I(q) = s · Σ_i V_i·F(q R_i)² + b,     s = φ_c · Δρ²

``n_contributions`` spheres with radii R_i each carry the same volume fraction φ_c (McSAS's
volume-weighted convention: a population of number density n_i scatters n_i·Δρ²·V_i²·F² =
φ_i·Δρ²·V_i·F²), so the total volume fraction is n_contributions·φ_c and contribution i stands
for φ_c/V_i particles per cm³.  Intensities in cm⁻¹, V in cm³ and Δρ in cm⁻² give φ absolutely.

Algorithm (McSAS): radii start uniform in ``radius_range_nm``; s ≥ 0 and b ≥ 0 come from a
1/σ²-weighted non-negative linear least-squares fit at every step; a proposal replaces the radius
of one random contribution by a new uniform one and is accepted when χ² decreases.  "Uniform"
here is over equally spaced radius nodes spanning the range, at least NODES_PER_RESOLUTION (100)
per resolution element π/q_max and at least MIN_NODES (2001): steps far below anything the data
resolve, so each node's V·F² row is tabulated once per fit, exactly, and shared by all
repetitions.  A repetition stops once χ²_red = χ²/(n_q − n_linear) ≤ ``convergence``
(n_linear = 2 with background, else 1) or after ``max_iterations`` proposals.  ``repetitions``
independent runs give the spread reported as uncertainty (sample standard deviation over
repetitions, as McSAS reports).  That spread measures the ambiguity of the Monte Carlo solution
for this one pattern, not the effect of its noise: near the resolution limit (tests: a 1 nm mode
at q_max = 5 nm⁻¹) the noise shifts a mode by several times that spread.

Speed: the running sum Σ_i V_i·F² is updated incrementally (O(n_q) per proposal) and proposals
are evaluated in batches against the current state; the first improving proposal of a batch is
accepted and the rest discarded, which is exactly the sequential algorithm (a rejected proposal
changes nothing).  The batch size follows the recent acceptance rate, so the late phase, where
most proposals fail, costs one vectorised step per ~1/acceptance-rate proposals.

Resolution (McSAS): radii below ~π/q_max or above ~π/q_min are not constrained by the data; a
range reaching beyond them warns, one lying wholly outside raises.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ncsynth.analysis.scattering import (CONTRAST_CDSE_PER_CM2, molar_to_per_cm3, sphere_form_factor,
                                         sphere_volume_cm3)

__all__ = ["McSASResult", "PopulationStats", "SizeHistogram", "fit_mcsas", "sphere_rows"]

DEFAULT_MAX_ITERATIONS = 100_000
#: Recompute the running sum from its rows after this many accepted moves (bounds rounding drift).
REFRESH_EVERY_ACCEPTED = 1000
MAX_BATCH = 512
#: Radius nodes per resolution element π/q_max, at least MIN_NODES, at most MAX_TABLE_VALUES / n_q.
NODES_PER_RESOLUTION = 100
MIN_NODES = 2001
MAX_TABLE_VALUES = 2**22
#: Memory of the acceptance-rate estimate that sizes the batches, in batches.
_RATE_DECAY = 0.9


def sphere_rows(q_nm, radius_nm):
    """(n_r, n_q) array of V·F(qR)² in cm³: one contribution's I(q) per unit φ·Δρ²."""
    radius = np.asarray(radius_nm, dtype=float)
    return sphere_form_factor(q_nm[None, :], radius[:, None], contrast_per_cm2=1.0) / \
        sphere_volume_cm3(radius)[:, None]


@dataclass(frozen=True)
class SizeHistogram:
    """Radius histogram of a McSAS fit: means over repetitions and their standard deviations.

    ``volume_fraction``: φ of the contributions in each bin (dimensionless, absolute);
    ``number_molar``: their particle concentration (mol/L); ``observability_volume_fraction``:
    the φ a population at the bin centre needs for its I(q) to reach σ(q) at some q (McSAS's
    minimum observability: bars below it are not supported by the data).
    """

    edges_nm: np.ndarray
    volume_fraction: np.ndarray
    volume_fraction_err: np.ndarray
    number_molar: np.ndarray
    number_molar_err: np.ndarray
    observability_volume_fraction: np.ndarray

    @property
    def centers_nm(self):
        return 0.5 * (self.edges_nm[1:] + self.edges_nm[:-1])


@dataclass(frozen=True)
class PopulationStats:
    """Statistics of the contributions with r_min_nm ≤ R ≤ r_max_nm: mean ± std over repetitions.

    Volume-weighted (``volume_*``) and number-weighted (``number_*``) mean radius (nm) and
    variance (nm²); ``volume_fraction`` (absolute φ) and ``number_molar`` (mol/L) of the range.
    A mean or variance is NaN when no repetition has a contribution in the range.
    """

    r_min_nm: float
    r_max_nm: float
    volume_fraction: float
    volume_fraction_err: float
    number_molar: float
    number_molar_err: float
    volume_mean_nm: float
    volume_mean_err_nm: float
    volume_variance_nm2: float
    volume_variance_err_nm2: float
    number_mean_nm: float
    number_mean_err_nm: float
    number_variance_nm2: float
    number_variance_err_nm2: float


@dataclass(frozen=True)
class McSASResult:
    """Result of ``fit_mcsas``; per-repetition arrays have the repetitions along axis 0.

    ``radii_nm`` (repetitions, n_contributions): final contribution radii; each carries
    ``contribution_volume_fraction`` (per repetition).  ``background_cm``: fitted flat background
    (cm⁻¹); ``chi2_reduced``: final χ²_red; ``iterations``: proposals used; ``converged``:
    χ²_red ≤ the target.  ``model_cm``: fitted I(q) (cm⁻¹), mean over repetitions.  ``dof``:
    the χ²'s degrees of freedom (q points less the linear scale and background).
    """

    q_nm: np.ndarray
    radius_range_nm: tuple[float, float]
    radii_nm: np.ndarray
    contribution_volume_fraction: np.ndarray
    background_cm: np.ndarray
    chi2_reduced: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    model_cm: np.ndarray
    histogram: SizeHistogram
    dof: int

    @property
    def misfit_p_value(self) -> float:
        """χ² p-value of the worst repetition: the chance that a size distribution of spheres
        that describes the pattern leaves a χ² this large from the noise alone."""
        from scipy.stats import chi2 as chi2_distribution

        return float(chi2_distribution.sf(np.max(self.chi2_reduced) * self.dof, self.dof))

    @property
    def describes_data(self) -> bool:
        """False when :attr:`misfit_p_value` is below ``MISFIT_P_VALUE`` (the rule the kinetic
        laws and the frame fits follow): the fit stopped short of the pattern, and the spread
        of the repetitions (``volume_fraction_err`` and the moments' errors) understates the
        error of what it gives."""
        from ncsynth.analysis.kinetics import MISFIT_P_VALUE

        return self.misfit_p_value >= MISFIT_P_VALUE

    @property
    def volume_fraction(self):
        """Total φ over the radius range, mean over repetitions."""
        return float(np.mean(self._total_volume_fraction()))

    @property
    def volume_fraction_err(self):
        return float(_std(self._total_volume_fraction()))

    def _total_volume_fraction(self):
        return self.contribution_volume_fraction * self.radii_nm.shape[1]

    def moments(self, r_min_nm=None, r_max_nm=None) -> PopulationStats:
        """Population statistics of one mode, over r_min_nm ≤ R ≤ r_max_nm (default: whole range)."""
        lo = self.radius_range_nm[0] if r_min_nm is None else float(r_min_nm)
        hi = self.radius_range_nm[1] if r_max_nm is None else float(r_max_nm)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"need finite r_min_nm < r_max_nm, got {r_min_nm!r}, {r_max_nm!r}")
        radii = self.radii_nm
        inside = (radii >= lo) & (radii <= hi)
        volume = np.where(inside, self.contribution_volume_fraction[:, None], 0.0)
        number = volume / sphere_volume_cm3(radii)
        phi, per_cm3 = volume.sum(axis=1), number.sum(axis=1)
        v_mean, v_var = _weighted_moments(radii, volume)
        n_mean, n_var = _weighted_moments(radii, number)
        molar = per_cm3 / molar_to_per_cm3(1.0)
        return PopulationStats(lo, hi, *mean_std(phi), *mean_std(molar), *mean_std(v_mean), *mean_std(v_var),
                               *mean_std(n_mean), *mean_std(n_var))


def _weighted_moments(radii, weights):
    """Per-repetition weighted mean and variance of the radii (NaN where the weights are all 0)."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (weights * radii).sum(axis=1) / total
        variance = (weights * (radii - mean[:, None]) ** 2).sum(axis=1) / total
    return mean, variance


def _std(values):
    """Sample standard deviation over repetitions, axis 0 (NaN for a single repetition)."""
    values = np.asarray(values)
    return np.std(values, axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1:], np.nan)


def mean_std(values):
    """(mean, sample std) of ``values`` where they are defined (finite): over McSAS's
    repetitions here, over the noise bootstrap's refits in :mod:`~ncsynth.analysis.mcsas_noise`."""
    defined = values[np.isfinite(values)]
    return (float(np.mean(defined)) if defined.size else math.nan), float(_std(defined))


class _Problem:
    """Weighted data of one pattern and the non-negative linear fit of (s, b) to a candidate sum."""

    def __init__(self, q, intensity, sigma, fit_background):
        self.q = q
        self.inv_sigma = 1.0 / sigma
        self.yw = intensity * self.inv_sigma
        self.fit_background = fit_background
        self.syy = float(self.yw @ self.yw)
        self.sbb = float(self.inv_sigma @ self.inv_sigma)
        self.sby = float(self.inv_sigma @ self.yw)
        self.dof = q.size - (2 if fit_background else 1)

    def solve(self, sums):
        """(s, b, χ²) arrays for candidate sums (k, n_q) of V·F² (cm³), with s ≥ 0 and b ≥ 0.

        The 2-parameter NNLS optimum is the unconstrained one when feasible, else the better of
        the two edges (b = 0 or s = 0), each clipped at 0.
        """
        aw = sums * self.inv_sigma
        saa = np.einsum("kq,kq->k", aw, aw)
        say = aw @ self.yw
        s_edge = np.where(saa > 0, np.maximum(say, 0.0) / np.where(saa > 0, saa, 1.0), 0.0)
        chi2_edge = self.syy - s_edge * say
        if not self.fit_background:
            return s_edge, np.zeros_like(s_edge), chi2_edge
        sab = aw @ self.inv_sigma
        det = saa * self.sbb - sab * sab
        with np.errstate(invalid="ignore", divide="ignore"):
            s_free = (say * self.sbb - self.sby * sab) / det
            b_free = (saa * self.sby - sab * say) / det
            chi2_free = self.syy - s_free * say - b_free * self.sby
        free = (det > 0) & (s_free >= 0) & (b_free >= 0)
        b_only = max(self.sby, 0.0) / self.sbb
        chi2_b_only = self.syy - b_only * self.sby
        s_only = ~free & (chi2_edge <= chi2_b_only)
        s = np.where(free, s_free, np.where(s_only, s_edge, 0.0))
        b = np.where(free, b_free, np.where(s_only, 0.0, b_only))
        chi2 = np.where(free, chi2_free, np.where(s_only, chi2_edge, chi2_b_only))
        return s, b, chi2


def _radius_nodes(radius_range_nm, q_max_nm, n_q):
    """Equally spaced radii (nm) the contributions are drawn from (see the module docstring)."""
    lo, hi = radius_range_nm
    wanted = math.ceil(NODES_PER_RESOLUTION * (hi - lo) * q_max_nm / math.pi) + 1
    cap = max(MIN_NODES, MAX_TABLE_VALUES // n_q)
    return np.linspace(lo, hi, min(max(MIN_NODES, wanted), cap))


def _repetition(problem, table, n_contributions, target_chi2, max_iterations, rng):
    """One McSAS run on the tabulated rows: (node indices, s, b, χ², proposals used, Σ V·F²)."""
    n_nodes = table.shape[0]
    state = rng.integers(n_nodes, size=n_contributions)
    total = table[state].sum(axis=0)
    s, b, chi2 = (float(v[0]) for v in problem.solve(total[None]))
    used, accepted = 0, 0
    recent_used, recent_accepted = 1.0, 1.0
    while chi2 > target_chi2 and used < max_iterations:
        batch = min(MAX_BATCH, max_iterations - used, max(1, int(recent_used / recent_accepted)))
        index = rng.integers(n_contributions, size=batch)
        proposed = rng.integers(n_nodes, size=batch)
        s_k, b_k, chi2_k = problem.solve(total - table[state[index]] + table[proposed])
        better = np.flatnonzero(chi2_k < chi2)
        recent_used *= _RATE_DECAY
        recent_accepted *= _RATE_DECAY
        if better.size == 0:
            used += batch
            recent_used += batch
            continue
        k = int(better[0])
        used += k + 1
        recent_used += k + 1
        recent_accepted += 1
        j = index[k]
        total += table[proposed[k]] - table[state[j]]
        state[j] = proposed[k]
        s, b, chi2 = float(s_k[k]), float(b_k[k]), float(chi2_k[k])
        accepted += 1
        if accepted % REFRESH_EVERY_ACCEPTED == 0:
            total = table[state].sum(axis=0)
            s, b, chi2 = (float(v[0]) for v in problem.solve(total[None]))
    return state, s, b, chi2, used, total


def fit_mcsas(q_nm, intensity_cm, sigma_cm, radius_range_nm, n_contributions=300, repetitions=10,
              convergence=1.0, max_iterations=DEFAULT_MAX_ITERATIONS, seed=None, n_bins=50,
              bin_spacing="lin", contrast_per_cm2=CONTRAST_CDSE_PER_CM2, fit_background=True) -> McSASResult:
    """McSAS fit of spheres to I(q) (cm⁻¹, absolute) with uncertainties σ (cm⁻¹) at q (nm⁻¹).

    ``radius_range_nm``: (min, max) radius in nm sampled by the contributions and spanned by the
    histogram (``n_bins`` bins, ``bin_spacing`` "lin" or "log").  ``convergence``: target
    reduced χ².  ``max_iterations``: proposals per repetition.  ``seed``: anything
    ``numpy.random.SeedSequence`` takes; each repetition gets an independent child stream.
    ``contrast_per_cm2``: Δρ (cm⁻²) that turns the fitted scale into volume fractions.
    """
    q, intensity, sigma = _check_data(q_nm, intensity_cm, sigma_cm, fit_background)
    lo, hi = _check_range(radius_range_nm, q)
    for name, value in (("n_contributions", n_contributions), ("repetitions", repetitions),
                        ("max_iterations", max_iterations), ("n_bins", n_bins)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(convergence, (int, float)) and math.isfinite(convergence) and convergence > 0):
        raise ValueError(f"convergence must be a finite reduced chi-squared > 0, got {convergence!r}")
    if not (math.isfinite(contrast_per_cm2) and contrast_per_cm2 != 0):
        raise ValueError(f"contrast_per_cm2 must be finite and nonzero, got {contrast_per_cm2!r}")
    if bin_spacing not in ("lin", "log"):
        raise ValueError(f"bin_spacing must be 'lin' or 'log', got {bin_spacing!r}")

    problem = _Problem(q, intensity, sigma, fit_background)
    streams = np.random.SeedSequence(seed).spawn(repetitions)
    nodes = _radius_nodes((lo, hi), float(q.max()), q.size)
    table = sphere_rows(q, nodes)
    runs = [_repetition(problem, table, n_contributions, convergence * problem.dof, max_iterations,
                        np.random.default_rng(stream)) for stream in streams]
    radii = nodes[np.array([run[0] for run in runs])]
    scale = np.array([run[1] for run in runs])
    background = np.array([run[2] for run in runs])
    chi2_reduced = np.array([run[3] for run in runs]) / problem.dof
    model = scale[:, None] * np.array([run[5] for run in runs]) + background[:, None]
    phi_c = scale / contrast_per_cm2**2
    edges = (np.linspace if bin_spacing == "lin" else np.geomspace)(lo, hi, n_bins + 1)
    return McSASResult(
        q_nm=q, radius_range_nm=(lo, hi), radii_nm=radii, contribution_volume_fraction=phi_c,
        background_cm=background, chi2_reduced=chi2_reduced,
        iterations=np.array([run[4] for run in runs]), converged=chi2_reduced <= convergence,
        model_cm=model.mean(axis=0),
        histogram=_histogram(radii, phi_c, edges, problem, contrast_per_cm2), dof=problem.dof)


def _histogram(radii, phi_c, edges, problem, contrast_per_cm2):
    counts = np.array([np.histogram(r, edges)[0] for r in radii])
    inverse_volume = np.array([np.histogram(r, edges, weights=1.0 / sphere_volume_cm3(r))[0] for r in radii])
    volume = counts * phi_c[:, None]
    number = inverse_volume * phi_c[:, None] / molar_to_per_cm3(1.0)
    centers = 0.5 * (edges[1:] + edges[:-1])
    with np.errstate(divide="ignore"):
        observability = np.min(1.0 / (problem.inv_sigma * contrast_per_cm2**2 * sphere_rows(problem.q, centers)),
                               axis=1)
    return SizeHistogram(edges, volume.mean(axis=0), _std(volume), number.mean(axis=0), _std(number),
                         observability)


def _check_data(q_nm, intensity_cm, sigma_cm, fit_background):
    arrays = []
    for name, values in (("q_nm", q_nm), ("intensity_cm", intensity_cm), ("sigma_cm", sigma_cm)):
        array = np.asarray(values, dtype=float)
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(array))} non-finite values")
        arrays.append(array)
    q, intensity, sigma = arrays
    if not (q.size == intensity.size == sigma.size):
        raise ValueError("q_nm, intensity_cm and sigma_cm must have the same length, got "
                         f"{q.size}, {intensity.size} and {sigma.size}")
    if np.any(q <= 0):
        raise ValueError(f"q_nm must be > 0, got min {q.min()!r}")
    if np.any(sigma <= 0):
        raise ValueError(f"sigma_cm must be > 0, got min {sigma.min()!r}")
    needed = 3 if fit_background else 2
    if q.size < needed:
        raise ValueError(f"need at least {needed} points, got {q.size}")
    return q, intensity, sigma


def _check_range(radius_range_nm, q):
    try:
        lo, hi = (float(v) for v in radius_range_nm)
    except (TypeError, ValueError):
        raise ValueError(f"radius_range_nm must be a (min, max) pair in nm, got {radius_range_nm!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"radius_range_nm must have 0 < min < max (finite), got {radius_range_nm!r}")
    r_small, r_large = math.pi / float(q.max()), math.pi / float(q.min())
    if hi <= r_small or lo >= r_large:
        raise ValueError(f"radius_range_nm {radius_range_nm!r} lies outside the range the data resolve, "
                         f"π/q_max = {r_small:.3g} nm to π/q_min = {r_large:.3g} nm")
    if lo < r_small or hi > r_large:
        warnings.warn(f"radius_range_nm {radius_range_nm!r} reaches beyond the resolved range π/q_max = "
                      f"{r_small:.3g} nm to π/q_min = {r_large:.3g} nm; contributions there are not "
                      "constrained by the data", UserWarning, stacklevel=3)
    return lo, hi
