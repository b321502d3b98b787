"""What the pattern's noise does to a McSAS fit's values: a parametric bootstrap.

McSAS reports the spread of its repetitions (:mod:`ncsynth.analysis.mcsas`): how differently
the Monte Carlo solves this one pattern, not how differently it would solve another draw of
the pattern's noise.  For a volume fraction of 10⁻⁴ that spread can be 0.02 % while the noise
moves φ by several times as much (the flow reactor's default grid, docs/flow_reactor.md).

Parametric bootstrap (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, §6.5):
``refits`` patterns are drawn from the fit's model I_fit(q) plus Gaussian noise of the
pattern's σ(q), and each is fitted by a McSAS run of one repetition with the fit's options.
The spread of their total φ and volume-weighted mean radius is what the noise and the Monte
Carlo together do to those values.  :func:`with_noise` adds it to the repetitions' spread in
quadrature: each refit carries a whole repetition's Monte Carlo spread, more than the mean of
the fit's repetitions does, so the sum is conservative, never short.  It describes the noise
only: where McSAS does not describe the pattern (``McSASResult.describes_data``) the misfit
is a further error no resampling of the model shows.

Each refit is independent of the others (:func:`refit`, a module-level function of one
picklable job): a caller may spread them over a process pool's ``map``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncsynth import validation
from ncsynth.analysis.mcsas import McSASResult, fit_mcsas, mean_std

#: Refits per fit: the spread of 8 values is known to ~27 % (1/√(2·7)).
DEFAULT_REFITS = 8


@dataclass(frozen=True)
class NoiseSpread:
    """Total φ (absolute) and volume-weighted mean radius (nm) of each refit, and their
    sample standard deviations."""

    volume_fraction: np.ndarray
    volume_mean_nm: np.ndarray

    @property
    def volume_fraction_err(self) -> float:
        return mean_std(self.volume_fraction)[1]  # over the refits where it is defined

    @property
    def volume_mean_err_nm(self) -> float:
        return mean_std(self.volume_mean_nm)[1]


def refit_jobs(fit: McSASResult, sigma_cm, *, refits: int = DEFAULT_REFITS, seed=None,
               **options) -> list[tuple]:
    """The ``refits`` jobs of one fit, for :func:`refit`: the fit's model and q, the pattern's
    σ (cm⁻¹, at the fit's q), its radius range, one independent seed stream each (``seed``:
    anything ``numpy.random.SeedSequence`` takes) and the McSAS ``options`` of the fit
    (``repetitions`` is set to 1)."""
    sigma = np.asarray(sigma_cm, dtype=float)
    if sigma.shape != fit.q_nm.shape:
        raise ValueError(f"sigma_cm must hold the fit's {fit.q_nm.size} q points, got shape "
                         f"{sigma.shape}")
    refits = validation.integer("refits", refits, minimum=2)  # a spread needs two
    options = {**options, "repetitions": 1}
    return [(fit.q_nm, fit.model_cm, sigma, fit.radius_range_nm, stream, options)
            for stream in np.random.SeedSequence(seed).spawn(refits)]


def refit(job: tuple) -> tuple[float, float]:
    """(φ, volume-weighted mean radius in nm) of one McSAS run on the job's model plus a draw
    of Gaussian noise of its σ."""
    q, model, sigma, radius_range_nm, stream, options = job
    rng = np.random.default_rng(stream)
    pattern = model + sigma * rng.standard_normal(q.size)
    result = fit_mcsas(q, pattern, sigma, radius_range_nm, seed=int(rng.integers(2**63)), **options)
    return result.volume_fraction, result.moments().volume_mean_nm


def noise_spread(results) -> NoiseSpread:
    """The :class:`NoiseSpread` of one fit's :func:`refit` results."""
    values = np.array(list(results), dtype=float).reshape(-1, 2)
    return NoiseSpread(values[:, 0], values[:, 1])


def with_noise(repetitions_err: float, noise_err: float) -> float:
    """1σ of a McSAS value: its repetitions' spread ⊕ the bootstrap's spread (see module).
    A missing spread (NaN: one repetition) counts as none."""
    parts = [v for v in (repetitions_err, noise_err) if math.isfinite(v)]
    return math.hypot(*parts) if parts else math.nan

