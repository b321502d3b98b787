"""Per-frame size-model errors of the Gaussian fit (analysis.frame_model.size_model_systematic)
against the simulator's own flask: the population-balance model of seed 000 §S.6 (the pure
function, both the default parameters and the simulated beamline's), its true size
distribution scattered (S2.1) with a reduced 75 ms frame's noise, fitted frame by frame as the
live analysis does (Gaussian warm-started, then the skewed fit of the same pattern), the radius
and the concentration compared with the flask's number-weighted mean radius and number
concentration at that moment."""

import math

import numpy as np
import pytest

from ncsynth.analysis.bimodal import BimodalFit
from ncsynth.analysis.frame_model import (SizeModelError, number_moments, preferred_model,
                                          resolved_fraction, size_model_systematic)
from ncsynth.analysis.saxs import SphereFit, fit_pattern
from ncsynth.analysis.scattering import distribution_intensity
from ncsynth.analysis.skewed import SkewedFit, fit_skewed
from ncsynth.plans.schedule import frame_schedule
from ncsynth.simulators.beamline import HOT_FLASK_VOLUME_ML
from ncsynth.simulators.detector import MOLAR_PER_M3
from ncsynth.simulators.kinetics import ReactionState, simulate_synthesis
from ncsynth.simulators.kinetics_parameters import FLASK_GRID, SIMULATED_FLASK, KineticParameters
from ncsynth.simulators.thermal_protocol import run_protocol
from ncsynth.simulators.world import SyringeCharge

Q_NM = np.linspace(0.1, 5.0, 151)
FRAMES_S = np.geomspace(5.0, 1500.0, 40)
FLASKS = {"default": {},
          "beamline": {"growth_exponent": SIMULATED_FLASK.growth_exponent,
                       "adsorption_a_m_per_s": SIMULATED_FLASK.adsorption_a_m_per_s,
                       "k1_per_s": SIMULATED_FLASK.k1_per_s}}


def _frames(parameters, seed=5):
    """(frame time, true mean radius nm, true concentration mol/L, pattern cm⁻¹, its σ) of each
    frame of one simulated flask, one noise realisation (``seed``)."""
    flask = simulate_synthesis(FRAMES_S[-1], sample_times_s=FRAMES_S, distribution_times_s=FRAMES_S,
                               **parameters)
    rng = np.random.default_rng(seed)
    for k, t in enumerate(FRAMES_S):
        intensity = distribution_intensity(Q_NM, flask.radius_nm,
                                           flask.distributions[float(t)] * MOLAR_PER_M3)
        noise = np.sqrt(6.6e-7 * (intensity + 0.09) / Q_NM)
        yield (t, flask.mean_radius_nm[k], flask.concentration_molar[k],
               intensity + noise * rng.normal(size=Q_NM.size), noise)


def _pulls(parameters, seed=5):
    """(frame times, [radius, concentration] pulls with statistical errors only, with the
    size-model error added in quadrature), one simulated flask, one noise realisation."""
    gaussian, skewed, rows = None, None, []
    for t, mean_radius_nm, concentration_molar, pattern, noise in _frames(parameters, seed):
        fit = fit_pattern(Q_NM, pattern, noise, guess=gaussian)
        shaped = fit_skewed(Q_NM, pattern, noise, fit, guess=skewed)
        assert fit.success and shaped.success, (t, fit.reason, shaped.reason)
        gaussian, skewed = fit, shaped
        radius_syst, _, concentration_syst = size_model_systematic(fit, shaped)
        deviation = np.array([fit.radius_nm - mean_radius_nm, fit.concentration_molar - concentration_molar])
        statistical = np.array([fit.radius_err_nm, fit.concentration_err_molar])
        rows.append((deviation / statistical,
                     deviation / np.hypot(statistical, [radius_syst, concentration_syst])))
    return FRAMES_S, np.array(rows)


def test_the_skewed_fit_of_a_frame_is_the_same_from_the_last_frames_fit_and_from_cold():
    """The live analysis warm-starts each frame's skewed fit from the last frame's; the answer
    must be the pattern's, not the path's. On the default flask (γ ~ −2, held at the bound
    −1.8 from 50 s on) the model's cusps (tests/test_skewed_fit.py) stopped warm and cold
    searches in different places: χ² up to 4.7 apart (224 s), R by up to 0.0044 nm (167 s),
    and which frames differed changed with the CPU's vector instructions."""
    gaussian = skewed = None
    for t, _, _, pattern, noise in _frames(FLASKS["default"]):
        gaussian = fit_pattern(Q_NM, pattern, noise, guess=gaussian)
        warm = fit_skewed(Q_NM, pattern, noise, gaussian, guess=skewed)
        cold = fit_skewed(Q_NM, pattern, noise, gaussian)
        assert warm.success and cold.success, (t, warm.reason, cold.reason)
        assert abs(warm.chi2 - cold.chi2) < 0.05, (t, warm.chi2, cold.chi2)
        assert abs(warm.radius_nm - cold.radius_nm) < 0.1 * gaussian.radius_err_nm, (t, warm, cold)
        skewed = warm


def _rms(values):
    return np.sqrt(np.mean(values**2, axis=0))


@pytest.mark.parametrize("name", FLASKS)
def test_the_size_model_error_covers_most_of_the_gaussian_bias_of_a_simulated_flask(name):
    """The flask's tail of small crystals scatters little: the Gaussian's R and c miss the
    number-weighted moments by 8-30 statistical errors (RMS) after 60 s. The skewed fit of the
    same frame moves them most of the way, and that shift as a systematic error brings the RMS
    pull below 3 (default flask: within 0.7-2 before and after 60 s, pooled over three noise
    realisations: one realisation's 17 frames before 60 s gave 0.65-1.99 over seeds 5-9). The
    rest is a tail that neither model sees (both fits then agree, and both sit above the number
    mean)."""
    t, pulls = _pulls(FLASKS[name])
    late = t >= 60.0
    statistical, total = pulls[late, 0], pulls[late, 1]
    assert np.all(_rms(statistical) > 7.0), _rms(statistical)
    assert np.all(_rms(total) < 3.0), _rms(total)
    assert np.all(_rms(total) < 0.25 * _rms(statistical)), (_rms(total), _rms(statistical))
    if name == "default":
        pooled = np.concatenate([pulls] + [_pulls(FLASKS[name], seed)[1] for seed in (6, 7)])
        times = np.tile(t, 3)
        for window in (times < 60.0, times >= 60.0):
            assert np.all((0.7 < _rms(pooled[window, 1])) & (_rms(pooled[window, 1]) < 2.0)), \
                _rms(pooled[window, 1])


def test_the_size_model_error_is_the_shift_between_the_models_and_unknown_without_both():
    gaussian = SphereFit(2.0, 0.20, 3e-5, 0.01, 1e-3, 1e-3, 1e-7, 1e-4, 1.0, 151, True)
    skewed = SkewedFit(1.97, 0.23, -0.8, 3.2e-5, 0.01, 150.0, 151, True)
    assert size_model_systematic(gaussian, skewed) == pytest.approx((0.03, 0.03, 2e-6))
    assert np.all(np.isnan(size_model_systematic(gaussian, SkewedFit.failed("no fit"))))
    assert np.all(np.isnan(size_model_systematic(SphereFit.failed("no fit"), skewed)))
    # a width given as an upper limit: the pattern says nothing of the shape (issue 13)
    unresolved = SphereFit(0.9, 1e-4, 1e-6, 0.01, 0.2, math.nan, 1e-6, 1e-4, 1.0, 151, True,
                           sigma_upper_nm=0.3)
    far = SkewedFit(0.4, 0.3, -1.8, 5e-6, 0.01, 150.0, 151, True)
    assert size_model_systematic(unresolved, far) == (0.0, 0.0, 0.0)


def _thermal_flask(frames_s, parameters, step_s=0.5):
    """(mean radius nm, number concentration mol/L, radius cells nm, crystals per m³ per cell)
    at each of ``frames_s`` (s after the injection) of the simulated flask on §S.1.2's thermal
    protocol (its liquid temperature: 230 °C after the injection, then oscillating ±6.5 °C about
    260 °C, which nucleates a second burst 200-450 s after the injection), stepped as the world
    steps it (:func:`~ncsynth.simulators.flask_protocol.run_synthesis`)."""
    trace = run_protocol(float(frames_s[-1]) + 1.0)
    after = trace.time_s >= 0

    def liquid_c(t_s):
        return float(np.interp(t_s, trace.time_s[after], trace.liquid_c[after]))

    state = ReactionState(parameters, FLASK_GRID)
    volume_ml, charge = HOT_FLASK_VOLUME_ML, SyringeCharge()
    state.add_precursor(charge.cd_molar * charge.volume_ml / (volume_ml + charge.volume_ml),
                        dilution=volume_ml / (volume_ml + charge.volume_ml))
    t, rows = 0.0, []
    for frame in frames_s:
        while t < frame:
            dt = min(step_s, frame - t)
            state.step(dt, liquid_c(t + dt / 2))
            t += dt
        rows.append((state.mean_radius_nm, state.concentration_molar, np.array(state.radius_nm),
                     np.array(state.number_density_per_m3)))
    return rows


def _window_pulls(parameters, seed=5):
    """RMS and std of the pulls (radius, concentration) of the live analysis' fits (statistical
    errors and the SizeModelError in quadrature) against the flask's number-weighted mean radius
    and number concentration in the windows 1-5 s, 5-60 s, 60-1500 s, on the default schedule's
    frames, and the spread the statistical errors alone predict for them (RMS of statistical /
    total error): three arrays (window, quantity)."""
    frames = frame_schedule() + 0.0375
    frames = frames[(frames >= 1.0) & (frames < 1500.0)]
    rng = np.random.default_rng(seed)
    gaussian = skewed = two = None
    errors, pulls = SizeModelError(), []
    for t, (radius, concentration, cells_nm, numbers) in zip(frames, _thermal_flask(frames, parameters)):
        intensity = distribution_intensity(Q_NM, cells_nm, numbers * MOLAR_PER_M3)
        noise = np.sqrt(6.6e-7 * (intensity + 0.09) / Q_NM)
        pattern = intensity + noise * rng.normal(size=Q_NM.size)
        fit = fit_pattern(Q_NM, pattern, noise, guess=gaussian)
        shaped = fit_skewed(Q_NM, pattern, noise, fit, guess=skewed)
        model, pair = preferred_model(Q_NM, pattern, noise, fit, shaped, guess=two)
        gaussian, skewed, two = fit if fit.success else gaussian, shaped if shaped.success else skewed, pair or two
        radius_syst, _, concentration_syst = errors.add(
            size_model_systematic(fit, shaped, pair if model.populations == 2 else None),
            resolved_fraction(fit, shaped))
        total = np.hypot([fit.radius_err_nm, fit.concentration_err_molar], [radius_syst, concentration_syst])
        pulls.append(np.concatenate([[fit.radius_nm - radius, fit.concentration_molar - concentration] / total,
                                     [fit.radius_err_nm, fit.concentration_err_molar] / total]))
    pulls = np.array(pulls)
    rms, std, statistical = [], [], []
    for low, high in ((1.0, 5.0), (5.0, 60.0), (60.0, 1500.0)):
        inside = (frames >= low) & (frames < high) & np.all(np.isfinite(pulls), axis=1)
        assert inside.sum() > 30
        rms.append(_rms(pulls[inside, :2]))
        std.append(pulls[inside, :2].std(axis=0))
        statistical.append(_rms(pulls[inside, 2:]))
    return np.array(rms), np.array(std), np.array(statistical)


@pytest.mark.parametrize("name, parameters", [("dry run's flask", SIMULATED_FLASK),
                                              ("Table S6.1", KineticParameters())])
def test_errors_are_honest_in_every_window_of_a_thermal_flask(name, parameters):
    """Issue 13: radius and concentration pulls against the flask in the windows 1-5 s, 5-60 s
    and after 60 s, RMS within 0.7-1.4 (one noise realisation of the default schedule's 450
    frames up to 1500 s). Before: the radius errors of faint frames 7x apart depending on whether
    the width search reached its bound, and one frame's size-model shift as its error (a frame
    whose skewed fit fell onto the Gaussian quoted the second burst's 1-4 % bias as 0.01 %):
    RMS 0.65 (1-5 s, Table S6.1) and 3.5 (after 60 s, the dry run's flask). What is left: the
    first 30-60 s of the second burst, whose new crystals neither model sees (pulls 3-9 there;
    radius RMS after 60 s 1.33 here, 1.51 and 1.33 with noise seeds 6 and 7). The spread about the
    mean within 0.7-1.3 before 60 s; it was 1.49-1.56 (5-60 s) while frames with an unresolved
    width quoted the skewed fit's wandering as their size-model error and held R at zero width,
    then 0.57-0.74 while the skewed fit's shift counted in full where the pattern barely resolves
    a skewness (Δχ² of a few, 5-60 s): ~2x the Gaussian's actual bias. With the resolved part of
    the shift and its RMS over the recent frames (noise seeds 5-7, both flasks): 5-60 s spread
    0.75-1.04 (radius), 0.77-1.00 (concentration), 1.00-1.10 of what the statistical part
    predicts; RMS 0.88-1.14. After 60 s the spread stays below (radius 0.53-0.94, concentration
    0.56-0.70): the pulls there are a drifting bias more than noise (RMS 0.90-1.51)."""
    rms, std, statistical = _window_pulls(parameters)
    assert np.all((0.7 < rms) & (rms < 1.4)), rms
    assert np.all((0.7 < std[:2]) & (std[:2] < 1.3)), std
    assert np.all((0.7 < std[:2] / statistical[:2]) & (std[:2] / statistical[:2] < 1.3)), (std, statistical)


def test_the_size_model_error_is_the_rms_shift_of_the_recent_frames():
    errors = SizeModelError()
    shifts = [(0.03, 0.01, 1e-6)] * 4 + [(0.0001, 0.0, 1e-9)]      # the fifth fell onto the Gaussian
    assert [errors.add(s) for s in shifts][-1] == pytest.approx(
        np.sqrt((4 * np.square([0.03, 0.01, 1e-6]) + np.square([0.0001, 0.0, 1e-9])) / 5))
    new = errors.add((0.2, 0.0, 0.0))                                  # a new bias counts at once
    assert new[0] == pytest.approx(np.sqrt((3 * 0.03**2 + 0.0001**2 + 0.2**2) / 5))
    assert np.all(np.isnan(errors.add((math.nan,) * 3)))                # unknown stays unknown
    later = [errors.add((0.001, 0.001, 1e-9)) for _ in range(SizeModelError.FRAMES)]
    assert later[0][0] > 0.05 and later[-1] == pytest.approx((0.001, 0.001, 1e-9))
    # only the part of each shift that is bias counts (resolved_fraction)
    assert [errors.add((0.004, 0.0, 0.0), 0.5) for _ in range(SizeModelError.FRAMES)][-1] \
        == pytest.approx((0.002, 0.0, 0.0))


def test_only_the_part_of_a_shift_the_pattern_resolves_is_bias():
    # the Gaussian is the skewed model at γ = 0: with Δχ² = 4 (a 2σ skewness) a quarter of the
    # shift's square is its noise; a skewed fit better by 1 or less resolves no shape at all
    gaussian = SphereFit(2.0, 0.20, 3e-5, 0.01, 1e-3, 1e-3, 1e-7, 1e-4, 1.0, 151, True)   # χ² = 147
    for gain, fraction in ((400.0, math.sqrt(1 - 1 / 400)), (4.0, math.sqrt(0.75)), (1.0, 0.0),
                           (0.0, 0.0), (-3.0, 0.0)):
        skewed = SkewedFit(1.97, 0.23, -0.8, 3.2e-5, 0.01, 147.0 - gain, 151, True)
        assert resolved_fraction(gaussian, skewed) == pytest.approx(fraction)
    assert resolved_fraction(gaussian, SkewedFit.failed("no fit")) == 1.0


def test_two_preferred_populations_give_the_shift_to_their_number_moments():
    gaussian = SphereFit(2.0, 0.10, 2.3e-5, 0.01, 1e-3, 1e-3, 1e-7, 1e-4, 5.0, 151, True)
    skewed = SkewedFit(1.99, 0.12, -1.8, 2.35e-5, 0.01, 400.0, 151, True)
    nan = math.nan
    two = BimodalFit(2.02, 0.05, 2.2e-5, 1.5, 0.25, 3.0e-6, 0.01, *(nan,) * 7, chi2_reduced=1.1,
                     n_points=151, success=True)
    mean, std, total = number_moments(two)
    assert total == pytest.approx(2.5e-5)
    assert mean == pytest.approx((2.2 * 2.02 + 0.3 * 1.5) / 2.5)
    assert std == pytest.approx(math.sqrt((2.2 * (0.05**2 + 2.02**2) + 0.3 * (0.25**2 + 1.5**2)) / 2.5
                                          - mean**2))
    shifts = size_model_systematic(gaussian, skewed, two)
    assert shifts == pytest.approx((2.0 - mean, std - 0.10, 2e-6))
    assert size_model_systematic(gaussian, skewed) == pytest.approx((0.01, 0.02, 5e-7))
