"""The N₁ largest crystals of a fitted distribution (analysis/number_split.py) against the
simulated flask's own split (flask_truth.split_largest) of the same distribution on a fine grid."""

import math

import numpy as np
import pytest
from scipy import stats

from ncsynth.analysis.number_split import split_gaussians, split_pearson3
from ncsynth.flask_truth import split_largest

RADII_NM = np.linspace(0.01, 8.0, 400_001)


def _grid_split(density, total, n_large):
    numbers = density * total / density.sum()
    r1, _, r2, _, _ = split_largest(RADII_NM, numbers, n_large)
    return r1, r2


@pytest.mark.parametrize("skewness", [-1.5, -0.6, 0.0, 0.4, 1.2])
@pytest.mark.parametrize("fraction", [0.15, 0.5, 0.85])
def test_pearson3_split_is_the_largest_crystals_of_that_distribution(skewness, fraction):
    total = 3e-6
    density = stats.pearson3(skewness, loc=3.0, scale=0.3).pdf(RADII_NM)
    expected = _grid_split(density, total, fraction * total)
    assert split_pearson3(total, 3.0, 0.3, skewness, fraction * total) == pytest.approx(expected, abs=1e-4)


def test_two_gaussians_split_is_the_largest_crystals_of_their_sum():
    components = [(1e-6, 3.0, 0.2), (2e-6, 2.5, 0.3)]
    density = sum(c * stats.norm.pdf(RADII_NM, r, s) for c, r, s in components)
    for n_large in (0.5e-6, 1e-6, 2.5e-6):
        expected = _grid_split(density, 3e-6, n_large)
        assert split_gaussians(components, n_large) == pytest.approx(expected, abs=1e-6)
    # well apart and N₁ the larger set's number: the split gives the two sets' means
    assert split_gaussians([(1e-6, 4.0, 0.1), (2e-6, 2.0, 0.1)], 1e-6) == pytest.approx((4.0, 2.0), abs=1e-6)


def test_no_split_without_crystals_on_both_sides():
    assert all(math.isnan(v) for v in split_gaussians([(1e-6, 3.0, 0.2)], 2e-6))
    assert all(math.isnan(v) for v in split_gaussians([(1e-6, 3.0, 0.2), (-1e-7, 2.0, 0.2)], 5e-7))
    assert all(math.isnan(v) for v in split_pearson3(1e-6, 3.0, 0.2, -0.5, 0.0))
    assert all(math.isnan(v) for v in split_pearson3(1e-6, 3.0, math.nan, -0.5, 5e-7))
