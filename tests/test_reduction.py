"""2-D → 1-D reduction: absolute scale against the detector simulator, Poisson errors,
background subtraction and the water calibration.

Frames come from the real frame synthesizer of ``ncsynth.simulators.detector`` (its counts
model Φ·T·t·d·ΔΩ·I), reduced with the real pyFAI integrator.
"""

import numpy as np
import pytest

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.reduction import (WATER_CM, Pattern, Reducer, average, calibration_from_beam,
                                        default_n_bins, subtract)
from ncsynth.analysis.water_standard import scale_from_patterns
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.simulators.detector import FrameSynthesizer, SampleBackground

EXPOSURE_S = 0.075


@pytest.fixture(scope="module")
def full():
    geometry = DetectorGeometry()
    synth = FrameSynthesizer(geometry, seed=5)
    return synth, Reducer(geometry, calibration=calibration_from_beam(synth.flux_ph_per_s, synth.transmission,
                                                                      geometry),
                          path_length_cm=synth.thickness_cm)


@pytest.fixture(scope="module")
def small():
    geometry = DetectorGeometry().small()
    synth = FrameSynthesizer(geometry, seed=9)
    return synth, Reducer(geometry, calibration=calibration_from_beam(synth.flux_ph_per_s, synth.transmission,
                                                                      geometry),
                          path_length_cm=synth.thickness_cm)


def test_calibration_factor_is_what_the_simulator_counts_with(full):
    """K·t·d (reduction) = counts_scale·ΔΩ_ref (simulator): the same photons per unit I."""
    synth, reducer = full
    geometry = synth.geometry
    assert reducer.calibration * EXPOSURE_S * reducer.path_length_cm == pytest.approx(
        synth.counts_scale(EXPOSURE_S) * geometry.reference_solid_angle_sr, rel=1e-12)
    assert reducer.calibration == pytest.approx(1e13 * 0.25 * (0.354e-3 / 1.0) ** 2, rel=1e-12)


@pytest.mark.parametrize("glass", [False, True])
def test_noise_free_frame_reduces_to_its_intensity_in_cm(full, glass):
    """I(q) = spheres (R0 2 nm, σ 0.2 nm, 20 µM) + hot-solvent background (+ the glass q⁻⁴ term).

    A bin averages I over its pixels; against I at the bin's mean q that is exact to 1 % for a
    smooth I(q), while the steep q⁻⁴ term makes the lowest bins read high (Jensen), by < 1 %
    from 0.15 nm⁻¹ on. Background subtraction removes that bias with the background."""
    synth, reducer = full
    background = SampleBackground() if glass else SampleBackground(porod_cm_nm4=0.0)
    truth = lambda q: sphere_intensity(q, 2.0, 0.2, 2e-5) + background.intensity_cm(q, 260.0)  # noqa: E731
    expected = synth.expected_counts(truth(synth.q_grid_nm), EXPOSURE_S)
    pattern = reducer.reduce(expected, EXPOSURE_S)
    assert pattern.q_nm.min() >= 0.1 and pattern.q_nm.max() <= 5.0
    assert pattern.q_nm.size == default_n_bins(synth.geometry) and np.all(np.isfinite(pattern.intensity_cm))
    relative = pattern.intensity_cm / truth(pattern.q_nm) - 1
    checked = pattern.q_nm >= (0.15 if glass else 0.0)
    assert np.abs(relative[checked]).max() < 0.01
    assert np.median(np.abs(relative)) < 1e-3
    if glass:
        background_only = reducer.reduce(synth.expected_counts(
            background.intensity_cm(synth.q_grid_nm, 260.0), EXPOSURE_S), EXPOSURE_S)
        net = subtract(pattern, background_only).intensity_cm
        particles = sphere_intensity(pattern.q_nm, 2.0, 0.2, 2e-5)
        assert np.abs(net / particles - 1).max() < 0.01
    # the same frame at twice the exposure is the same I(q): exposure is normalised
    doubled = reducer.reduce(2 * expected, 2 * EXPOSURE_S)
    assert np.allclose(doubled.intensity_cm, pattern.intensity_cm, rtol=1e-6)


def test_poisson_sigma_matches_scatter_over_repeats(small):
    synth, reducer = small
    intensity = synth.intensity_cm([2.0], [1e-5], 25.0)
    expected = synth.expected_counts(intensity, 2e-4)  # a few counts per pixel
    patterns = [reducer.reduce(synth.noisy(expected), 2e-4) for _ in range(300)]
    values = np.array([p.intensity_cm for p in patterns])
    scatter = values.std(axis=0, ddof=1)
    reported = np.array([p.sigma_cm for p in patterns]).mean(axis=0)
    ratio = reported / scatter
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # the mean of the noisy frames is the noise-free pattern within its standard error
    clean = reducer.reduce(expected, 2e-4).intensity_cm
    z = (values.mean(axis=0) - clean) / (scatter / np.sqrt(len(patterns)))
    assert np.abs(z).max() < 4.5


def test_subtraction_and_averaging_propagate_errors(small):
    synth, reducer = small
    sample_i = synth.intensity_cm([2.5], [1e-5], 200.0)
    background_i = synth.intensity_cm([], [], 200.0)
    sample_e = synth.expected_counts(sample_i, 1e-3)
    background_e = synth.expected_counts(background_i, 1e-3)
    sample = reducer.reduce(synth.noisy(sample_e), 1e-3)
    backgrounds = [reducer.reduce(synth.noisy(background_e), 1e-3) for _ in range(4)]
    mean_background = average(backgrounds)
    assert np.allclose(mean_background.sigma_cm, np.sqrt(sum(b.sigma_cm ** 2 for b in backgrounds)) / 4)
    net = subtract(sample, mean_background)
    assert np.array_equal(net.sigma_cm, np.hypot(sample.sigma_cm, mean_background.sigma_cm))
    assert np.array_equal(net.intensity_cm, sample.intensity_cm - mean_background.intensity_cm)
    # statistically: the net pattern scatters around the noise-free net pattern as its σ says
    clean = subtract(reducer.reduce(sample_e, 1e-3), reducer.reduce(background_e, 1e-3))
    pulls = (net.intensity_cm - clean.intensity_cm) / net.sigma_cm
    assert abs(pulls.mean()) < 0.5 and pulls.std() == pytest.approx(1.0, abs=0.3)


def test_water_calibration_recovers_the_beam_calibration(full):
    """A water standard (0.0165 cm⁻¹) in a glass cell, minus the empty cell, each per transmitted
    photon, gives ΔΩ_ref and so K (tests/test_water_calibration.py: from the files)."""
    synth, reducer = full
    glass = SampleBackground(flat_cm_at_25c=0.0, porod_cm_nm4=2e-4)
    empty_i = glass.intensity_cm(synth.q_grid_nm, 25.0)
    water_e = synth.expected_counts(empty_i + WATER_CM, 10.0)
    empty_e = synth.expected_counts(empty_i, 20.0)
    photons = synth.flux_ph_per_s * synth.transmission
    water = reducer.integrate(synth.noisy(water_e)).scaled(1 / (10.0 * photons))
    empty = reducer.integrate(synth.noisy(empty_e)).scaled(1 / (20.0 * photons))
    scale = scale_from_patterns(water, empty, 0.4)
    k = calibration_from_beam(synth.flux_ph_per_s, synth.transmission, synth.geometry, scale.solid_angle_sr)
    assert k == pytest.approx(reducer.calibration, rel=2e-3)
    assert abs(scale.solid_angle_sr / synth.geometry.reference_solid_angle_sr - 1) < 4 * scale.relative_error
    without_empty = scale_from_patterns(water, None, 0.4, q_range_nm=(2.0, 4.0))
    assert without_empty.solid_angle_sr > scale.solid_angle_sr  # the glass adds counts when not subtracted


def test_bad_input_is_refused_with_clear_errors(small):
    synth, reducer = small
    geometry = synth.geometry
    with pytest.raises(ValueError, match="frame must have the detector shape"):
        reducer.reduce(np.zeros((10, 10)), EXPOSURE_S)
    with pytest.raises(ValueError, match="exposure_s"):
        reducer.reduce(np.zeros(geometry.shape), 0.0)
    with pytest.raises(ValueError, match="negative or non-finite"):
        reducer.reduce(np.full(geometry.shape, -1.0), EXPOSURE_S)
    with pytest.raises(ValueError, match="calibration"):
        Reducer(geometry, calibration=-1.0)
    with pytest.raises(ValueError, match="q_range_nm"):
        Reducer(geometry, calibration=1.0, q_range_nm=(5.0, 0.1))
    with pytest.raises(ValueError, match="n_bins"):
        Reducer(geometry, calibration=1.0, n_bins=1)
    other = Pattern(reducer.q_nm * 1.01, reducer.q_nm, reducer.q_nm)
    with pytest.raises(ValueError, match="same q bins"):
        subtract(Pattern(reducer.q_nm, reducer.q_nm, reducer.q_nm), other)
    with pytest.raises(ValueError, match="at least one"):
        average([])
    with pytest.raises(ValueError, match="transmission"):
        calibration_from_beam(1e13, 0.0, geometry)


def test_all_zero_frame_reduces_without_error(small):
    """pyFAI's Poisson model floors a pixel's variance at 1 count, so empty bins keep a σ."""
    synth, reducer = small
    pattern = reducer.reduce(np.zeros(synth.geometry.shape, dtype=np.uint32), EXPOSURE_S)
    assert np.all(pattern.intensity_cm == 0)
    assert np.all(pattern.sigma_cm > 0) and np.all(np.isfinite(pattern.sigma_cm))
