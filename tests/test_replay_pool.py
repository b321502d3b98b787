"""The skewed fit's cold starts in a pool of processes give the very numbers of one process.

A frame's fits warm-start from the previous frame's, so a replay goes frame by frame; the
two cold starts of a skewed fit are independent and run at once in a pool
(:mod:`ncsynth.analysis.pool`). Nothing may change a digit: live and replay are compared
with ==.
"""

import math

import numpy as np
import pytest

from ncsynth.analysis.pool import search_pool
from ncsynth.analysis.saxs import fit_pattern
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.analysis.skewed import fit_skewed

Q_NM = np.linspace(0.1, 5.0, 300)


def skewed_pattern(seed: int):
    """Two Gaussian sets summed (a skewed size distribution), Poisson noise."""
    rng = np.random.default_rng(seed)
    intensity = sphere_intensity(Q_NM, 2.0, 0.12, 1e-5) + sphere_intensity(Q_NM, 1.6, 0.2, 4e-6) \
        + 0.01
    scale = 1e5 / intensity.max()
    return rng.poisson(intensity * scale) / scale, np.sqrt(intensity * scale) / scale


@pytest.fixture(scope="module")
def pool_map():
    with search_pool(2) as mapper:
        yield mapper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cold_starts_in_a_pool_give_the_same_fit_to_the_last_digit(pool_map, seed):
    y, s = skewed_pattern(seed)
    gaussian = fit_pattern(Q_NM, y, s)
    assert gaussian.success
    alone = fit_skewed(Q_NM, y, s, gaussian)  # no guess: both cold starts
    pooled = fit_skewed(Q_NM, y, s, gaussian, mapper=pool_map)
    assert alone.success and math.isfinite(alone.skewness)
    assert pooled == alone


def test_one_process_is_the_builtin_map_and_a_bad_count_is_refused():
    with search_pool(1) as mapper:
        assert mapper is map
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        with search_pool(0):
            pass
