"""SAXS detector: geometry, frame synthesis, the TCP simulator and the ophyd devices.

Real components throughout: a jump-mode world, the simulator behind the fault link on the
simulators' event loop, real sockets, real HDF5 files and a real RunEngine.
"""

import json
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from event_model import DocumentNames, schema_validators
from ophyd.sim import make_fake_device

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.devices.detector import (ASSET_SPEC, FRAME_DATASET, AreaDetectorSAXS, DetectorError,
                                      SAXSDetector, SimulatedBackend)
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.detector import DetectorInterface, FrameSynthesizer, SampleBackground
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.thermal import FlaskThermalModel
from ncsynth.simulators.world import World

EXPOSURE_S = 0.075


class FrozenReaction:
    """A ReactionState registered in the world without kinetics (its distribution stays put)."""

    slow = True

    def __init__(self, state: ReactionState):
        self.state = state

    def step(self, dt_s, world):
        pass

    @property
    def radius_nm(self):
        return self.state.radius_nm

    @property
    def number_density_per_m3(self):
        return self.state.number_density_per_m3


@pytest.fixture(scope="module")
def full_geometry():
    return DetectorGeometry()


@pytest.fixture
def world():
    clock = WorldClock(speed=None)
    world = World(clock)
    yield world
    clock.close()


@pytest.fixture
def host():
    with SimulatorHost() as host:
        yield host


@pytest.fixture
def small_sim(world, host):
    """(interface, link) of a 120×120 detector simulator in a jump-mode world."""
    interface = DetectorInterface(world, DetectorGeometry().small(), seed=7)
    return interface, host.serve(interface)


@pytest.fixture
def detector(small_sim, world, tmp_path):
    _, link = small_sim
    backend = SimulatedBackend(link.url, timeout_s=5.0)
    with timebase.use_clock(world.clock):
        yield SAXSDetector(backend, write_root=tmp_path, name="saxs")
    backend.close()


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
    interface = DetectorInterface(world, full_geometry, seed=1)
    radius, numbers, temperature = interface._flask_state()
    assert numbers.sum() == pytest.approx(2e-5, rel=1e-9)
    synth = interface.synthesizer
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
def test_info_acquire_and_refusals_over_tcp(small_sim, world):
    interface, link = small_sim
    backend = SimulatedBackend(link.url, timeout_s=5.0)
    try:
        info = backend.info()
        assert DetectorGeometry.from_dict(info["geometry"]) == interface.synthesizer.geometry
        t0 = world.clock.now()
        frame = backend.acquire(np.float64(0.5))
        assert frame.t_start == t0 and frame.exposure_s == 0.5
        assert world.clock.now() == pytest.approx(t0 + 0.5)  # exposure took world time
        assert frame.data.dtype == np.dtype("<u4") and frame.data.shape == (120, 120)
        assert np.array_equal(frame.data, interface.last_frame)
        with pytest.raises(DetectorError, match="increase by at least"):
            backend.sequence([t0 + 10, t0 + 10.01], 0.075)
        assert backend.acquire(0.075).frame_number == frame.frame_number + 1  # still connected
    finally:
        backend.close()


def test_server_refuses_bad_requests_on_the_wire(small_sim):
    _, link = small_sim
    host, port = link.url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        replies = sock.makefile("rb")

        def ask(line):
            sock.sendall(line.encode() + b"\n")
            return json.loads(replies.readline())

        assert ask("ACQUIRE -1") == {"type": "error", "message": "exposure_s must be positive and finite, got '-1'"}
        assert "unknown command 'BOGUS'" in ask("BOGUS 3")["message"]
        assert "JSON" in ask("SEQUENCE [1, 2")["message"]
        assert ask("abort") == {"type": "ok", "command": "ABORT"}
        assert ask("info?")["shape"] == [120, 120]


def test_damaged_frame_is_detected_and_the_next_one_arrives(small_sim):
    _, link = small_sim
    backend = SimulatedBackend(link.url, timeout_s=5.0)
    try:
        backend.acquire(0.075)
        link.corrupt_next_reply()
        with pytest.raises(DetectorError, match="damaged|garbled"):
            backend.acquire(0.075)
        assert backend.acquire(0.075).data.shape == (120, 120)
    finally:
        backend.close()


def test_background_only_before_injection_and_backdoor_distribution(small_sim):
    interface, link = small_sim
    backend = SimulatedBackend(link.url, timeout_s=5.0)
    try:
        backend.acquire(0.075)
        empty = interface.last_expected_counts.copy()
        interface.set_distribution([2.0], [1e-5])
        backend.acquire(0.075)
        loaded = interface.last_expected_counts
        valid = ~interface.synthesizer.geometry.mask
        assert (loaded[valid] > empty[valid]).all()
        synth = interface.synthesizer
        grid = synth.intensity_cm([], [], 25.0)
        assert np.allclose(empty, synth.expected_counts(grid, 0.075))
    finally:
        backend.close()


# -- the ophyd detector ------------------------------------------------------------------------------
def _documents(RE, plan):
    documents = []
    RE(plan, lambda name, doc: documents.append((name, doc)))
    for name, doc in documents:
        schema_validators[DocumentNames(name)].validate(doc)
    return documents


def _frame_from_file(resource, datum):
    path = Path(resource["root"]) / resource["resource_path"]
    with h5py.File(path, "r", swmr=True) as f:
        return f[FRAME_DATASET][datum["datum_kwargs"]["point_number"]]


def test_software_trigger_writes_hdf5_and_timestamps_frame_start(detector, small_sim, world):
    interface, _ = small_sim
    RE = RunEngine({})
    starts, frames = [], []

    def plan():
        yield from bps.open_run()
        yield from bps.stage(detector)
        for _ in range(3):
            world.clock.advance(1.0)
            starts.append(world.clock.now())
            yield from bps.trigger_and_read([detector])
            frames.append(interface.last_frame.copy())
        yield from bps.unstage(detector)
        yield from bps.close_run()

    documents = _documents(RE, plan())
    [resource] = [d for n, d in documents if n == "resource"]
    datums = {d["datum_id"]: d for n, d in documents if n == "datum"}
    events = [d for n, d in documents if n == "event"]
    [descriptor] = [d for n, d in documents if n == "descriptor"]
    key = descriptor["data_keys"]["saxs_image"]
    assert key["external"] == "FILESTORE:" and key["shape"] == [120, 120] and key["dtype_numpy"] == "<u4"
    assert resource["spec"] == ASSET_SPEC and resource["resource_kwargs"] == {"frame_per_point": 1}
    assert descriptor["configuration"]["saxs"]["data"]["saxs_exposure_time"] == EXPOSURE_S
    assert len(events) == 3
    for event, start, frame in zip(events, starts, frames):
        assert event["timestamps"]["saxs_image"] == start
        datum = datums[event["data"]["saxs_image"]]
        assert np.array_equal(_frame_from_file(resource, datum), frame)
    with h5py.File(Path(resource["root"]) / resource["resource_path"], "r") as f:
        assert list(f["/entry/data/t_start"][:]) == starts


def test_flyer_sequence_follows_detector_timing(detector, world):
    RE = RunEngine({})
    start_times = world.clock.now() + 2.0 + np.cumsum(0.022 + 0.075 * 1.015 ** np.arange(20))
    detector.prepare_sequence(start_times)

    def plan():
        yield from bps.open_run()
        yield from bps.stage(detector)
        yield from bps.kickoff(detector, wait=True)
        yield from bps.complete(detector, wait=True)
        yield from bps.collect(detector)
        yield from bps.unstage(detector)
        yield from bps.close_run()

    documents = _documents(RE, plan())
    [resource] = [d for n, d in documents if n == "resource"]
    datums = [d for n, d in documents if n == "datum"]
    pages = [d for n, d in documents if n == "event_page"]
    stamps = np.concatenate([page["timestamps"]["saxs_image"] for page in pages])
    assert len(stamps) == 20
    # the frame start times, to the clock's resolution (epoch s as float64: ~0.2 µs); the
    # events' own "time" is the RunEngine's wall clock at collect()
    assert np.allclose(stamps, start_times, rtol=0, atol=1e-6), stamps - start_times
    assert [d["datum_kwargs"]["point_number"] for d in datums] == list(range(20))
    with h5py.File(Path(resource["root"]) / resource["resource_path"], "r") as f:
        assert f[FRAME_DATASET].shape == (20, 120, 120)
        assert np.array_equal(f["/entry/data/t_start"][:], stamps)


def test_tiled_writer_normalises_the_assets(detector, world):
    """TiledWriter's RunNormalizer turns our Resource/Datum into readable StreamResource/StreamDatum."""
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer

    RE = RunEngine({})
    normalized = []
    normalizer = RunNormalizer()
    normalizer.subscribe(lambda name, doc: normalized.append((name, doc)))
    RE.subscribe(normalizer)
    RE(bpp.stage_wrapper(bpp.run_wrapper(bps.repeat(lambda: bps.trigger_and_read([detector]), 2)),
                         [detector]))
    [stream_resource] = [d for n, d in normalized if n == "stream_resource"]
    stream_datums = [d for n, d in normalized if n == "stream_datum"]
    assert stream_resource["mimetype"] == "application/x-hdf5"
    assert stream_resource["parameters"]["dataset"] == FRAME_DATASET
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in stream_datums] == [(0, 1), (1, 2)]
    path = stream_resource["uri"].removeprefix("file://localhost").removeprefix("file://")
    with h5py.File(path, "r") as f:
        assert np.array_equal(f[FRAME_DATASET][1], detector.last_frame.data)


def test_stop_aborts_a_sequence_and_fails_complete(host, tmp_path):
    """Real-time clock: a sequence of far-away frames is ended by stop()."""
    clock = WorldClock(speed=1.0)
    world = World(clock)
    interface = DetectorInterface(world, DetectorGeometry().small(), seed=1)
    link = host.serve(interface)
    backend = SimulatedBackend(link.url, timeout_s=2.0)
    with timebase.use_clock(clock):
        det = SAXSDetector(backend, write_root=tmp_path, name="saxs")
        det.stage()
        det.prepare_sequence(clock.now() + np.array([0.0, 100.0, 200.0]), exposure_s=0.01)
        det.kickoff().wait(5)
        with pytest.raises(DetectorError, match="busy|sequence is running"):
            det.trigger()
        det.stop()
        with pytest.raises(DetectorError, match="1 of 3|0 of 3"):
            det.complete().wait(5)
        det.unstage()
    backend.close()


def test_device_rejects_bad_sequence_and_exposure(detector, world):
    with pytest.raises(ValueError, match="start_times"):
        detector.prepare_sequence([[1.0, 2.0]])
    with pytest.raises(ValueError, match="increase by at least"):
        detector.prepare_sequence([1.0, 1.01])
    with pytest.raises(DetectorError, match="prepare_sequence"):
        detector.kickoff()
    detector.exposure_time.put(-1.0)
    with pytest.raises(ValueError, match="exposure_s"):
        detector.trigger()
    with pytest.raises(ValueError, match="socket://"):
        SimulatedBackend("/dev/ttyUSB0")


def test_area_detector_class_with_fake_epics():
    FakeSAXS = make_fake_device(AreaDetectorSAXS)
    det = FakeSAXS("BL02:SAXS:", name="saxs", write_path_template="/data/%Y/%m/%d/", root="/data")
    assert det.cam.prefix == "BL02:SAXS:cam1:" and det.hdf5.prefix == "BL02:SAXS:HDF1:"
    assert det.stage_sigs["cam.num_images"] == 1
    assert det.stage_sigs["cam.image_mode"] == 1  # Multiple (SingleTrigger)
    assert det.hdf5.stage_sigs["file_write_mode"] == "Stream"
    det.exposure_time.put(0.075)
    assert det.cam.acquire_time.get() == 0.075
    assert str(det.hdf5.reg_root) == "/data"
