"""Per-frame size-model errors of the Gaussian fit (analysis.frame_model.size_model_systematic)
against the simulator's own flask: the population-balance model of seed 000 §S.6 (the pure
function, both the default parameters and the simulated beamline's), its true size
distribution scattered (S2.1) with a reduced 75 ms frame's noise, fitted frame by frame as the
live analysis does (Gaussian warm-started, then the skewed fit of the same pattern), the radius
and the concentration compared with the flask's number-weighted mean radius and number
concentration at that moment."""

import numpy as np
import pytest

from ncsynth.analysis.frame_model import size_model_systematic
from ncsynth.analysis.saxs import SphereFit, fit_pattern
from ncsynth.analysis.scattering import distribution_intensity
from ncsynth.analysis.skewed import SkewedFit, fit_skewed
from ncsynth.simulators.detector import MOLAR_PER_M3
from ncsynth.simulators.kinetics import simulate_synthesis
from ncsynth.simulators.kinetics_parameters import SIMULATED_FLASK

Q_NM = np.linspace(0.1, 5.0, 151)
FRAMES_S = np.geomspace(5.0, 1500.0, 40)
FLASKS = {"default": {},
          "beamline": {"growth_exponent": SIMULATED_FLASK.growth_exponent,
                       "adsorption_a_m_per_s": SIMULATED_FLASK.adsorption_a_m_per_s,
                       "k1_per_s": SIMULATED_FLASK.k1_per_s}}


def _pulls(parameters):
    """(frame times, [radius, concentration] pulls with statistical errors only, with the
    size-model error added in quadrature), one simulated flask, one noise realisation."""
    flask = simulate_synthesis(FRAMES_S[-1], sample_times_s=FRAMES_S, distribution_times_s=FRAMES_S,
                               **parameters)
    rng = np.random.default_rng(5)
    gaussian, skewed, rows = None, None, []
    for k, t in enumerate(FRAMES_S):
        intensity = distribution_intensity(Q_NM, flask.radius_nm,
                                           flask.distributions[float(t)] * MOLAR_PER_M3)
        noise = np.sqrt(6.6e-7 * (intensity + 0.09) / Q_NM)
        pattern = intensity + noise * rng.normal(size=Q_NM.size)
        fit = fit_pattern(Q_NM, pattern, noise, guess=gaussian)
        shaped = fit_skewed(Q_NM, pattern, noise, fit, guess=skewed)
        assert fit.success and shaped.success, (t, fit.reason, shaped.reason)
        gaussian, skewed = fit, shaped
        radius_syst, _, concentration_syst = size_model_systematic(fit, shaped)
        deviation = np.array([fit.radius_nm - flask.mean_radius_nm[k],
                              fit.concentration_molar - flask.concentration_molar[k]])
        statistical = np.array([fit.radius_err_nm, fit.concentration_err_molar])
        rows.append((deviation / statistical,
                     deviation / np.hypot(statistical, [radius_syst, concentration_syst])))
    return FRAMES_S, np.array(rows)


def _rms(values):
    return np.sqrt(np.mean(values**2, axis=0))


@pytest.mark.parametrize("name", FLASKS)
def test_the_size_model_error_covers_most_of_the_gaussian_bias_of_a_simulated_flask(name):
    """The flask's tail of small crystals scatters little: the Gaussian's R and c miss the
    number-weighted moments by 8-30 statistical errors (RMS) after 60 s. The skewed fit of the
    same frame moves them most of the way, and that shift as a systematic error brings the RMS
    pull below 3 (default flask: within 0.7-2 at all times). The rest is a tail that neither
    model sees (both fits then agree, and both sit above the number mean)."""
    t, pulls = _pulls(FLASKS[name])
    late = t >= 60.0
    statistical, total = pulls[late, 0], pulls[late, 1]
    assert np.all(_rms(statistical) > 7.0), _rms(statistical)
    assert np.all(_rms(total) < 3.0), _rms(total)
    assert np.all(_rms(total) < 0.25 * _rms(statistical)), (_rms(total), _rms(statistical))
    if name == "default":
        for window in (t < 60.0, late):
            assert np.all((0.7 < _rms(pulls[window, 1])) & (_rms(pulls[window, 1]) < 2.0)), \
                _rms(pulls[window, 1])


def test_the_size_model_error_is_the_shift_between_the_models_and_unknown_without_both():
    gaussian = SphereFit(2.0, 0.20, 3e-5, 0.01, 1e-3, 1e-3, 1e-7, 1e-4, 1.0, 151, True)
    skewed = SkewedFit(1.97, 0.23, -0.8, 3.2e-5, 0.01, 150.0, 151, True)
    assert size_model_systematic(gaussian, skewed) == pytest.approx((0.03, 0.03, 2e-6))
    assert np.all(np.isnan(size_model_systematic(gaussian, SkewedFit.failed("no fit"))))
    assert np.all(np.isnan(size_model_systematic(SphereFit.failed("no fit"), skewed)))
