"""SAXS frames: the detector geometry (pyFAI) and the frame synthesis the simulated IOC serves.

Real components: pyFAI's integrator, the seeded Poisson generator, a world with a frozen
reaction. The detector device meets the simulated IOC over Channel Access in
tests/test_area_detector.py (frames, documents, timing, mid-exposure sampling, faults).
"""

import numpy as np
import pytest

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.detector import FrameSynthesizer, SampleBackground, flask_state
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.thermal import FlaskThermalModel
from ncsynth.simulators.world import World

from frozen_reaction import FrozenReaction

EXPOSURE_S = 0.075


@pytest.fixture(scope="module")
def full_geometry():
    return DetectorGeometry()


@pytest.fixture
def world():
    clock = WorldClock(speed=None)
    world = World(clock)
    yield world
    clock.close()


def azimuthal_average(geometry, image, npt=400, q_range=(0.1, 5.0)):
    """(mean pixel q, solid-angle-corrected mean intensity) per q bin, via pyFAI."""
    integrator = geometry.to_integrator()
    method = ("no", "histogram", "cython")
    result = integrator.integrate1d(image, npt, unit="q_nm^-1", correctSolidAngle=True,
                                    radial_range=q_range, method=method)
    q_mean = integrator.integrate1d(np.array(geometry.q_map_nm, dtype=float), npt, unit="q_nm^-1",
                                    correctSolidAngle=False, radial_range=q_range, method=method)
    return q_mean.intensity, result.intensity


# -- geometry ----------------------------------------------------------------------------------
def test_geometry_matches_the_set_up_and_pyfai(full_geometry):
    g = full_geometry
    assert g.wavelength_nm == pytest.approx(0.0688801, rel=1e-5)  # 18 keV
    q_min, q_max = g.q_range_nm()
    assert q_min < 0.1 and q_max > 5.0  # the §S.1.4 range is on the detector
    # q by hand at one pixel centre, against pyFAI's map
    row, col = 400, 30
    r_m = np.hypot(row + 0.5 - g.beam_center_px[0], col + 0.5 - g.beam_center_px[1]) * g.pixel_size_m
    q_hand = 4 * np.pi / g.wavelength_nm * np.sin(np.arctan2(r_m, g.distance_m) / 2)
    assert g.q_map_nm[row, col] == pytest.approx(q_hand, rel=1e-6)
    assert g.solid_angle_sr.max() == pytest.approx(g.reference_solid_angle_sr, rel=1e-5)
    assert not g.q_map_nm.flags.writeable


def test_mask_covers_beam_stop_and_module_gaps(full_geometry):
    g = full_geometry
    rows, cols = np.indices(g.shape)
    r_m = np.hypot(rows + 0.5 - g.beam_center_px[0], cols + 0.5 - g.beam_center_px[1]) * g.pixel_size_m
    gaps = np.isin(rows, [239, 240]) | np.isin(cols, [239, 240])
    assert g.mask[r_m < g.beamstop_radius_m].all()
    assert np.array_equal(g.mask, (r_m < g.beamstop_radius_m) | gaps)
    assert g.q_map_nm[~g.mask].min() < 0.1  # q = 0.1 nm⁻¹ is just outside the beam stop


def test_scaled_geometry_keeps_q_range_and_serialises(full_geometry):
    small = full_geometry.small()
    assert small.shape == (120, 120)
    assert small.q_range_nm()[1] == pytest.approx(full_geometry.q_range_nm()[1], rel=0.02)
    assert DetectorGeometry.from_dict(small.to_dict()) == small
    with pytest.raises(ValueError, match="aspect ratio"):
        full_geometry.scaled((100, 120))
    with pytest.raises(ValueError, match="distance_m"):
        DetectorGeometry(distance_m=-1.0)


# -- frame synthesis ----------------------------------------------------------------------------
def test_noise_free_frame_reproduces_world_intensity_in_absolute_units(full_geometry, world):
    """Azimuthal average (pyFAI) of the expectation = I(q) × counts factor to 1 %, 0.1-5 nm⁻¹.

    The world path: a real ReactionState distribution (1/m³ per cell) and the flask at
    260 °C, against the independent Gaussian model of analysis.scattering.
    """
    world.add("flask", FlaskThermalModel()).set_temperature(260.0)
    world.add("reaction", FrozenReaction(ReactionState.growth_only_from_gaussian(
        mean_radius_nm=2.0, std_radius_nm=0.2, concentration_molar=2e-5)))
    synth = FrameSynthesizer(full_geometry, seed=1)
    radius, numbers, temperature = flask_state(world)
    assert numbers.sum() == pytest.approx(2e-5, rel=1e-9)
    _, expected = synth.synthesize(radius, numbers, temperature, EXPOSURE_S)

    q, average = azimuthal_average(full_geometry, expected)
    measured_cm = average / (synth.counts_scale(EXPOSURE_S) * full_geometry.reference_solid_angle_sr)
    truth_cm = (sphere_intensity(q, 2.0, 0.2, 2e-5)
                + SampleBackground().intensity_cm(q, temperature))
    relative = measured_cm / truth_cm - 1
    # the lowest bin averages the steep q⁻⁴ glass term over a few pixels (2 % Jensen bias)
    assert np.abs(relative).max() < 0.03
    assert np.abs(relative[q > 0.12]).max() < 0.01
    assert np.median(np.abs(relative)) < 0.002
    # against I(q) sampled at pyFAI's own pixel q and binned the same way: no binning bias
    pixel_q = full_geometry.to_integrator().array_from_unit(full_geometry.shape, "center", "q_nm^-1")
    pixel_truth = (sphere_intensity(pixel_q.ravel(), 2.0, 0.2, 2e-5).reshape(pixel_q.shape)
                   + SampleBackground().intensity_cm(pixel_q, temperature))
    _, binned_truth = azimuthal_average(full_geometry, pixel_truth * full_geometry.solid_angle_sr
                                        / full_geometry.reference_solid_angle_sr)
    assert np.abs(measured_cm / binned_truth - 1).max() < 0.002
    assert (expected[full_geometry.mask] == 0).all()


def test_poisson_statistics_of_seeded_frames():
    geometry = DetectorGeometry().small()
    synth = FrameSynthesizer(geometry, seed=11)
    intensity = synth.intensity_cm([2.0], [1e-5], 25.0)
    expected = synth.expected_counts(intensity, 1e-4)  # low counts: Poisson, not Gaussian
    valid = ~geometry.mask
    frames = np.stack([synth.noisy(expected) for _ in range(300)]).astype(float)
    mean, var = frames.mean(0)[valid], frames.var(0, ddof=1)[valid]
    lam = expected[valid]
    assert 0.5 < np.median(lam) < 50
    z = (mean - lam) / np.sqrt(lam / frames.shape[0])
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)
    assert np.mean(var) / np.mean(lam) == pytest.approx(1.0, abs=0.02)
    assert (frames[:, ~valid] == 0).all()
    again = FrameSynthesizer(geometry, seed=11)
    assert np.array_equal(again.noisy(expected), FrameSynthesizer(geometry, seed=11).noisy(expected))
    assert not np.array_equal(again.noisy(expected), again.noisy(expected))


def test_background_rises_with_temperature_and_low_q():
    background = SampleBackground()
    q = np.array([0.1, 1.0, 4.0])
    cold, hot = background.intensity_cm(q, 25.0), background.intensity_cm(q, 260.0)
    assert (hot > cold).all() and cold[0] > 10 * cold[1]
    assert cold[2] == pytest.approx(background.flat_cm_at_25c, rel=0.01)


def test_synthesizer_rejects_bad_input():
    geometry = DetectorGeometry().small()
    with pytest.raises(ValueError, match="transmission"):
        FrameSynthesizer(geometry, transmission=1.5)
    synth = FrameSynthesizer(geometry)
    with pytest.raises(ValueError, match="exposure_s"):
        synth.counts_scale(0.0)
    with pytest.raises(ValueError, match="intensity_on_grid_cm"):
        synth.expected_counts(np.ones(3), 0.1)


# -- the TCP simulator -------------------------------------------------------------------------------
