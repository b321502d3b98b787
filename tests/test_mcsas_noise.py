"""The McSAS noise bootstrap (ncsynth.analysis.mcsas_noise) against the truth of the patterns.

A nanocrystal-like mode (R 1.1 nm, σ 0.1 nm, φ 2·10⁻⁴, q 0.3–5 nm⁻¹: the flow reactor's
outlet) is drawn with 12 independent draws of Poisson noise; each is fitted as the flow dry run
fits a point (100 contributions, 4 repetitions) and bootstrapped.  The spread of the 12 fitted
φ is what the noise really does; the 1σ must cover the known φ as an honest 1σ does.
"""
import math

import numpy as np
import pytest

from ncsynth.analysis.mcsas import fit_mcsas
from ncsynth.analysis.mcsas_noise import (DEFAULT_REFITS, noise_spread, refit, refit_jobs,
                                          with_noise)
from ncsynth.analysis.pool import search_pool
from test_mcsas import pattern

Q = np.geomspace(0.3, 5.0, 120)
MODE = (1.1, 0.1, 2e-4)
RADIUS_RANGE_NM = (0.65, 3.0)
OPTIONS = {"n_contributions": 100, "repetitions": 4, "max_iterations": 20_000, "n_bins": 30}
DRAWS = 12


@pytest.fixture(scope="module")
def draws():
    """Per noise draw: (φ, repetitions' spread, bootstrap spread, 1σ)."""
    rows = []
    for m in range(DRAWS):
        y, sigma, _ = pattern(Q, [MODE], seed=100 + m)
        fit = fit_mcsas(Q, y, sigma, RADIUS_RANGE_NM, seed=m, **OPTIONS)
        spread = noise_spread(map(refit, refit_jobs(fit, sigma, seed=m, **OPTIONS)))
        assert spread.volume_fraction.size == DEFAULT_REFITS
        rows.append((fit.volume_fraction, fit.volume_fraction_err, spread.volume_fraction_err,
                     with_noise(fit.volume_fraction_err, spread.volume_fraction_err)))
    return np.array(rows)


def test_the_bootstrap_sees_the_spread_the_noise_makes(draws):
    phi, repetitions, noise, _ = draws.T
    noise_makes = np.std(phi, ddof=1)  # over independent draws of the pattern's noise
    assert 0.6 * noise_makes < np.median(noise) < 2.0 * noise_makes
    assert np.median(repetitions) < noise_makes  # what McSAS's own ± misses


def test_the_one_sigma_covers_the_true_volume_fraction_as_a_one_sigma_should(draws):
    phi, repetitions, _, one_sigma = draws.T
    pulls = (phi - MODE[2]) / one_sigma
    assert np.max(np.abs(pulls)) < 3.5
    assert 0.5 < math.sqrt(np.mean(pulls**2)) < 1.6
    # the repetitions' spread alone, the ± printed before: some φ lie far outside it
    assert np.max(np.abs((phi - MODE[2]) / repetitions)) > 5


def test_refits_are_reproducible_and_the_same_in_a_pool():
    y, sigma, _ = pattern(Q, [MODE], seed=1)
    fit = fit_mcsas(Q, y, sigma, RADIUS_RANGE_NM, seed=2, **OPTIONS)
    jobs = refit_jobs(fit, sigma, refits=3, seed=(7, 1), **OPTIONS)
    here = list(map(refit, jobs))
    assert here == list(map(refit, refit_jobs(fit, sigma, refits=3, seed=(7, 1), **OPTIONS)))
    assert here != list(map(refit, refit_jobs(fit, sigma, refits=3, seed=(7, 2), **OPTIONS)))
    with search_pool(2, code="ncsynth.analysis.mcsas_noise") as mapper:
        assert list(mapper(refit, jobs)) == here


def test_bad_bootstrap_input_is_refused_naming_it():
    y, sigma, _ = pattern(Q, [MODE], seed=1)
    fit = fit_mcsas(Q, y, sigma, RADIUS_RANGE_NM, seed=2, repetitions=1, max_iterations=200)
    with pytest.raises(ValueError, match="sigma_cm must hold the fit's 120 q points"):
        refit_jobs(fit, sigma[:-1])
    with pytest.raises(ValueError, match="refits must be an integer >= 2"):
        refit_jobs(fit, sigma, refits=1)


def test_a_missing_spread_counts_as_none():
    assert with_noise(3.0, 4.0) == 5.0
    assert with_noise(math.nan, 4.0) == 4.0
    assert math.isnan(with_noise(math.nan, math.nan))
    assert math.isnan(noise_spread([(1.0, 2.0)]).volume_fraction_err)  # one refit: no spread
