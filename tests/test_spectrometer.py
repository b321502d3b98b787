"""UV-Vis spectrometer: the ophyd device on the simulated seabreeze-like backend.

Real components: the simulator with its seeded noise, a jump-mode world clock installed as
the active timebase (scans take their integration time on it, in no wall time), a real
RunEngine. Expected absorbances come from the sample put in the flow cell, and the noise
bound from error propagation of the simulator's documented counts model.
"""

import math
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from event_model import DocumentNames, schema_validators

from ncsynth import timebase
from ncsynth.devices.spectrometer import SpectrometerBackend, SpectrometerError, UVVisSpectrometer
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.spectrometer import SimulatedSpectrometer, deuterium_halogen_lamp

LAMP_PEAK_COUNTS_PER_S = 4.0e5
DARK_OFFSET, DARK_CURRENT_PER_S, READ_NOISE = 1000.0, 200.0, 8.0


def sample(wavelength_nm):
    """CdSe-437 magic-size clusters (narrow, A = 0.5) and 3.6 nm nanocrystals (first exciton
    572 nm, A = 0.3) — the two features of seed 002, Fig. 1."""
    wl = np.asarray(wavelength_nm, dtype=float)
    return (0.5 * np.exp(-0.5 * ((wl - 437.0) / 4.25) ** 2)
            + 0.3 * np.exp(-0.5 * ((wl - 572.0) / 25.0) ** 2))


@pytest.fixture
def clock():
    clock = WorldClock(speed=None)
    with timebase.use_clock(clock):
        yield clock
    clock.close()


@pytest.fixture
def sim(clock):
    return SimulatedSpectrometer(clock=clock, seed=11,
                                 lamp_peak_counts_per_s=LAMP_PEAK_COUNTS_PER_S,
                                 dark_offset_counts=DARK_OFFSET,
                                 dark_current_counts_per_s=DARK_CURRENT_PER_S,
                                 read_noise_counts=READ_NOISE)


@pytest.fixture
def spec(sim):
    return UVVisSpectrometer(sim, name="uv")


def calibrate(spec, sim, timeout=10):
    sim.block_lamp(True)
    spec.take_dark().wait(timeout)
    sim.block_lamp(False)
    spec.take_reference().wait(timeout)


def predicted_sigma(wavelength_nm, absorbance, t_s, averages):
    """σ of A per pixel from the counts model: Poisson signal and dark current, Gaussian read
    noise, rounding; S, D and R each the mean of ``averages`` scans, D shared by S−D and R−D."""
    lamp = LAMP_PEAK_COUNTS_PER_S * deuterium_halogen_lamp(wavelength_nm) * t_s
    s, r = lamp * 10.0 ** -absorbance, lamp
    floor = DARK_CURRENT_PER_S * t_s + READ_NOISE ** 2 + 1 / 12
    var_s, var_r, var_d = (s + floor) / averages, (r + floor) / averages, floor / averages
    var_ln = (var_s + var_d) / s ** 2 + (var_r + var_d) / r ** 2 - 2 * var_d / (s * r)
    return np.sqrt(var_ln) / math.log(10)


def test_backend_protocol_and_construction(sim):
    assert isinstance(sim, SpectrometerBackend)
    with pytest.raises(TypeError, match="SpectrometerBackend"):
        UVVisSpectrometer(object(), name="uv")


def test_absorbance_of_known_sample_recovered_within_noise(spec, sim, clock):
    spec.averages.put(16)
    calibrate(spec, sim)
    sim.set_absorbance(sample)
    t0 = clock.now()
    spec.trigger().wait(10)
    # 16 scans of 0.1 s on the world clock, timestamped at the start
    assert clock.now() - t0 == pytest.approx(1.6, abs=1e-4)  # epoch-s float rounding
    reading = spec.read()
    assert reading["uv_absorbance"]["timestamp"] == pytest.approx(t0, abs=1e-4)
    wl = spec.wavelength_nm.get()
    absorbance = reading["uv_absorbance"]["value"]
    band = (wl > 320) & (wl < 780)
    z = (absorbance[band] - sample(wl[band])) / predicted_sigma(wl[band], sample(wl[band]), 0.1, 16)
    assert np.all(np.isfinite(z))
    assert 0.85 < z.std() < 1.15             # scatter as the counts model predicts
    assert abs(z.mean()) < 5 / math.sqrt(z.size)  # no bias (dark, reference, log10 right)
    assert np.abs(z).max() < 6
    monitor = int(np.argmin(np.abs(wl - 437.0)))
    assert reading["uv_absorbance_at_monitor"]["value"] == absorbance[monitor]
    assert reading["uv_absorbance_at_monitor"]["value"] == pytest.approx(0.5, abs=0.01)
    assert reading["uv_saturated_pixels"]["value"] == 0
    assert reading["uv_clipped_pixels"]["value"] == 0
    # pixels outside the lamp's band (reference not above dark) are NaN
    assert np.all(np.isnan(absorbance[wl < 250])) and np.all(np.isnan(absorbance[wl > 840]))


def test_boxcar_smooths_noise(spec, sim):
    calibrate(spec, sim)
    sim.set_absorbance(lambda wl: np.full_like(wl, 0.2))
    wl = spec.wavelength_nm.get()
    band = (wl > 550) & (wl < 750)
    scatter = {}
    for half_width in (0, 3):
        spec.boxcar.put(half_width)
        spec.trigger().wait(10)
        scatter[half_width] = np.std(spec.absorbance.get()[band])
    # a 7-pixel mean of independent pixels: 1/sqrt(7) = 0.38 of the scatter
    assert 0.3 < scatter[3] / scatter[0] < 0.46


def test_dark_and_reference_required_before_acquiring(spec, sim):
    with pytest.raises(SpectrometerError, match=r"take_dark\(\)"):
        spec.trigger()
    with pytest.raises(SpectrometerError, match=r"take_dark\(\)"):
        spec.take_reference()
    sim.block_lamp(True)
    spec.take_dark().wait(10)
    with pytest.raises(SpectrometerError, match=r"take_reference\(\)"):
        spec.trigger()
    assert sim.scans == 1  # only the dark was acquired
    # a reference with the lamp still blocked is refused
    with pytest.raises(SpectrometerError, match="not above the dark"):
        spec.take_reference().wait(10)
    assert spec.reference is None
    sim.block_lamp(False)
    spec.take_reference().wait(10)
    assert spec.reference.integration_time_s == 0.1 and spec.reference.averages == 1
    assert spec.read_configuration()["uv_reference_timestamp"]["value"] == spec.reference.timestamp
    # dark and reference taken at 0.1 s are refused at 0.2 s, before acquiring
    spec.integration_time_s.put(0.2)
    scans = sim.scans
    with pytest.raises(SpectrometerError, match=r"integration_time_s=0.1, now 0.2: call take_dark"):
        spec.trigger()
    assert sim.scans == scans
    # dark and reference cannot change inside a run
    spec.integration_time_s.put(0.1)
    spec.stage()
    try:
        with pytest.raises(SpectrometerError, match="staged"):
            spec.take_dark()
        spec.trigger().wait(10)
    finally:
        spec.unstage()


@pytest.mark.parametrize("value", [0.0005, 61.0, 0.0, -1.0, math.nan, "0.1", True])
def test_integration_time_validated_before_anything_is_sent(spec, sim, value):
    with pytest.raises(ValueError, match="integration_time_s"):
        spec.integration_time_s.put(value)
    assert spec.integration_time_s.get() == 0.1
    # forced past the check, the value is still refused before the backend hears of it
    spec.integration_time_s.put(value, force=True)
    with pytest.raises(ValueError, match="integration_time_s"):
        spec.take_dark()
    assert sim.scans == 0 and sim.integration_time_us == 1000  # untouched (its minimum)


@pytest.mark.parametrize("attr, value", [("averages", 0), ("averages", 2.0), ("boxcar", -1),
                                         ("boxcar", 1024), ("monitor_wavelength_nm", 900.0),
                                         ("min_reference_counts", -1.0)])
def test_other_settings_validated(spec, attr, value):
    with pytest.raises(ValueError, match=attr):
        getattr(spec, attr).put(value)


def test_saturation(spec, sim, clock):
    # 1 s through the blank cell: 4e5 counts/s at the lamp peak overflows 16 bits
    spec.integration_time_s.put(1.0)
    sim.block_lamp(True)
    spec.take_dark().wait(10)
    sim.block_lamp(False)
    with pytest.raises(SpectrometerError, match="saturates"):
        spec.take_reference().wait(10)
    # a sample overexposed (stray light) is flagged pixel by pixel
    spec.integration_time_s.put(0.1)
    calibrate(spec, sim)
    sim.saturate(True)
    spec.trigger().wait(10)
    wl = spec.wavelength_nm.get()
    expected_counts = (100 * LAMP_PEAK_COUNTS_PER_S * deuterium_halogen_lamp(wl) * 0.1
                       + DARK_CURRENT_PER_S * 0.1 + DARK_OFFSET)
    n_expected = int(np.sum(expected_counts >= 65535))
    saturated = spec.saturated_pixels.get()
    assert n_expected > 1000 and abs(saturated - n_expected) <= 3
    assert np.isnan(spec.absorbance.get()[expected_counts > 70000]).all()
    sim.saturate(False)
    spec.trigger().wait(10)
    assert spec.saturated_pixels.get() == 0


def test_nonpositive_ratio_clipped_to_nan_and_counted(spec, sim):
    calibrate(spec, sim)
    opaque = lambda wl: np.where((wl > 600) & (wl < 620), 8.0, 0.0)  # no light gets through
    sim.set_absorbance(opaque)
    spec.trigger().wait(10)
    wl, absorbance = spec.wavelength_nm.get(), spec.absorbance.get()
    in_band = (wl > 600) & (wl < 620)
    clipped = spec.clipped_pixels.get()
    # S − D is noise around 0 there: about half the pixels are nonpositive
    assert 0.25 * in_band.sum() < clipped < 0.75 * in_band.sum()
    assert np.isnan(absorbance[in_band]).sum() == clipped
    assert np.all(np.isfinite(absorbance[(wl > 320) & (wl < 780) & ~in_band]))


def test_backend_error_fails_status_and_device_stays_usable(spec, sim):
    calibrate(spec, sim)
    spec.integration_time_s.put(0.15)
    sim.block_lamp(True)
    sim.fail_next(OSError("[Errno 110] USB transfer timed out"))
    status = spec.take_dark()
    with pytest.raises(SpectrometerError,
                       match="dark acquisition failed: OSError: .*USB transfer timed out"):
        status.wait(10)
    assert isinstance(status.exception().__cause__, OSError)
    assert spec.dark.integration_time_s == 0.1  # the old dark is kept
    spec.take_dark().wait(10)
    sim.block_lamp(False)
    spec.take_reference().wait(10)
    sim.fail_next(OSError("device disconnected"))
    with pytest.raises(SpectrometerError, match="device disconnected"):
        spec.trigger().wait(10)
    spec.trigger().wait(10)
    assert sim.integration_time_us == 150_000
    assert np.nanmax(np.abs(spec.absorbance.get()[400:1500])) < 0.05  # a blank again


def test_stop_cancels_acquisition():
    sim = SimulatedSpectrometer(seed=3)  # wall-time scans: a stop lands mid-acquisition
    spec = UVVisSpectrometer(sim, name="uv")
    spec.integration_time_s.put(0.02)
    calibrate(spec, sim)
    spec.averages.put(200)  # 4 s
    status = spec.trigger()
    time.sleep(0.1)
    with pytest.raises(SpectrometerError, match="already running"):
        spec.trigger()
    t0 = time.monotonic()
    spec.stop()
    with pytest.raises(SpectrometerError, match="stopped"):
        status.wait(1)
    assert time.monotonic() - t0 < 3.0  # before the 4 s acquisition would have ended
    time.sleep(0.1)
    assert sim.scans < 20  # the acquisition ended, not only its Status
    spec.averages.put(2)
    spec.trigger().wait(5)
    assert np.isfinite(spec.absorbance_at_monitor.get())


def test_read_and_describe_agree(spec, sim):
    calibrate(spec, sim)
    spec.trigger().wait(10)
    for read, describe in ((spec.read(), spec.describe()),
                           (spec.read_configuration(), spec.describe_configuration())):
        assert read.keys() == describe.keys()
        for key, entry in describe.items():
            value = np.asarray(read[key]["value"])
            assert list(value.shape) == entry["shape"], key
            if entry["dtype"] == "string":
                assert isinstance(read[key]["value"], str)
            else:
                assert value.dtype.str == entry["dtype_numpy"], key
    description = spec.describe()
    assert description["uv_absorbance"]["shape"] == [2048]
    assert description["uv_absorbance"]["dtype"] == "array"
    assert description["uv_counts"]["units"] == "counts"
    assert spec.describe_configuration()["uv_wavelength_nm"]["units"] == "nm"
    assert spec.hints == {"fields": ["uv_absorbance_at_monitor"]}


def test_count_in_run_engine(spec, sim, clock):
    spec.averages.put(4)
    calibrate(spec, sim)
    sim.set_absorbance(sample)
    documents = []
    RE = RunEngine({})
    RE(count([spec], num=3), lambda name, doc: documents.append((name, doc)))
    for name, doc in documents:
        schema_validators[DocumentNames(name)].validate(doc)
    names = [name for name, _ in documents]
    assert names == ["start", "descriptor", "event", "event", "event", "stop"]
    descriptor = documents[1][1]
    data_keys = descriptor["data_keys"]
    events = [doc for name, doc in documents if name == "event"]
    for event in events:
        for key in ("uv_absorbance", "uv_counts"):
            assert list(np.shape(event["data"][key])) == data_keys[key]["shape"] == [2048]
        assert event["data"]["uv_absorbance_at_monitor"] == pytest.approx(0.5, abs=0.02)
    # events are stamped with the acquisition start: 4 × 0.1 s of world time apart or more
    starts = [event["timestamps"]["uv_absorbance"] for event in events]
    assert all(b - a >= 0.4 - 1e-4 for a, b in zip(starts, starts[1:]))
    config = descriptor["configuration"]["uv"]
    assert len(config["data"]["uv_wavelength_nm"]) == 2048
    assert config["data"]["uv_reference_timestamp"] == spec.reference.timestamp
    assert documents[-1][1]["exit_status"] == "success"
