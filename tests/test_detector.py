"""SAXS detector: geometry, frame synthesis, the TCP simulator and the ophyd devices.

Real components throughout: a jump-mode world, the simulator behind the fault link on the
simulators' event loop, real sockets, real HDF5 files, a real RunEngine and the embedded Tiled
catalog for the round trips. The areaDetector class meets the simulated IOC over Channel Access
in tests/test_area_detector.py.
"""

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from event_model import DocumentNames, schema_validators

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.live import StreamFrames
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.devices.detector import FRAME_DATASET, DetectorError, SAXSDetector, SimulatedBackend
from ncsynth.runs import raw_documents
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.detector import DetectorInterface, FrameSynthesizer, SampleBackground, flask_state
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.thermal import FlaskThermalModel
from ncsynth.simulators.world import World
from ncsynth.storage import open_catalog
from sequence_plan import whole_sequence

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
    radius, numbers, temperature = flask_state(world)
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


def test_the_world_is_sampled_at_mid_exposure_however_soon_the_clock_may_jump(host):
    """The simulator samples the flask while a jumping clock stands at mid-exposure, and
    reserves an exposure's middle and end as it starts: with a clock that jumps after 1 µs
    of quiet, any gap (a hop between the event loop and a worker thread) would let it move
    on first, and the frame would show the flask of its end or of the next frame."""
    clock = WorldClock(speed=None, idle_s=1e-6)
    world = World(clock)
    sampled = []

    class Sampled(FrozenReaction):
        @property
        def number_density_per_m3(self):
            sampled.append(clock.now())
            return self.state.number_density_per_m3

    world.add("reaction", Sampled(ReactionState.growth_only_from_gaussian(
        mean_radius_nm=2.0, std_radius_nm=0.2, concentration_molar=2e-5)))
    backend = SimulatedBackend(host.serve(DetectorInterface(
        world, DetectorGeometry().small(), seed=7)).url, timeout_s=5.0)
    try:
        starts = [backend.acquire(EXPOSURE_S).t_start for _ in range(5)]
        t0 = clock.now() + 1.0
        schedule = [t0 + 0.1 * k for k in range(10)]  # 25 ms between an end and the next start
        starts += [frame.t_start for frame in backend.sequence(schedule, EXPOSURE_S)]
    finally:
        backend.close()
        clock.close()
    assert starts[5:] == schedule
    assert sampled == [t + EXPOSURE_S / 2 for t in starts]


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
@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """One embedded catalog for the round trips; detectors write under its ``frames/``."""
    with open_catalog(tmp_path_factory.mktemp("data")) as opened:
        yield opened


@pytest.fixture
def detector(small_sim, world, catalog, request):
    _, link = small_sim
    backend = SimulatedBackend(link.url, timeout_s=5.0)
    with timebase.use_clock(world.clock):
        yield SAXSDetector(backend, write_root=catalog.layout.frames / request.node.name, name="saxs")
    backend.close()


def _run(RE, catalog, plan, *subscribers):
    """Run ``plan`` into the catalog; return its documents (schema-validated) and the run client."""
    documents = []
    writer = catalog.writer()
    tokens = [RE.subscribe(writer), RE.subscribe(lambda name, doc: documents.append((name, doc)))]
    tokens += [RE.subscribe(subscriber) for subscriber in subscribers]
    try:
        (uid,) = RE(plan)
    finally:
        writer.close()
        for token in tokens:
            RE.unsubscribe(token)
    for name, doc in documents:
        schema_validators[DocumentNames(name)].validate(doc)
    return documents, catalog[uid]


def _of(documents, name):
    return [doc for n, doc in documents if n == name]


def _path(stream_resource) -> Path:
    parts = urlsplit(stream_resource["uri"])
    assert parts.scheme == "file" and parts.netloc == "localhost"
    return Path(parts.path)


def test_software_trigger_writes_the_frame_before_its_stream_datum(detector, small_sim, world, catalog):
    interface, _ = small_sim
    starts, frames, on_disk = [], [], []

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

    def read_back(name, doc):  # a second reader, the moment the stream_datum is emitted
        if name == "stream_resource":
            on_disk.append(_path(doc))
        elif name == "stream_datum":
            with h5py.File(on_disk[0], "r", swmr=True) as f:
                on_disk.append(f[FRAME_DATASET][doc["indices"]["start"]])

    documents, run = _run(RunEngine({}), catalog, plan(), read_back)
    [resource] = _of(documents, "stream_resource")
    [descriptor] = _of(documents, "descriptor")
    datums, events = _of(documents, "stream_datum"), _of(documents, "event")
    key = descriptor["data_keys"]["saxs_image"]
    assert key["external"] == "STREAM:" and key["shape"] == [120, 120] and key["dtype_numpy"] == "<u4"
    assert descriptor["configuration"]["saxs"]["data"]["saxs_exposure_time"] == EXPOSURE_S
    assert resource["mimetype"] == "application/x-hdf5" and resource["data_key"] == "saxs_image"
    assert resource["uri"] == "file://localhost" + os.path.abspath(_path(resource))
    assert resource["parameters"] == {"dataset": FRAME_DATASET, "chunk_shape": [1, 120, 120]}
    # one stream_datum per frame, before its event, pointing at its index and seq_num
    assert [n for n, _ in documents if n in ("stream_datum", "event")] == ["stream_datum", "event"] * 3
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [(0, 1), (1, 2), (2, 3)]
    assert [(d["seq_nums"]["start"], d["seq_nums"]["stop"]) for d in datums] == \
        [(e["seq_num"], e["seq_num"] + 1) for e in events]
    for event, start in zip(events, starts):  # the frame's own start, not the time of read()
        assert "saxs_image" not in event["data"]
        assert event["data"]["saxs_frame_time"] == event["timestamps"]["saxs_frame_time"] == start
    for seen, frame in zip(on_disk[1:], frames):  # already in the file when announced
        np.testing.assert_array_equal(seen, frame)
    with h5py.File(_path(resource), "r") as f:
        assert list(f["/entry/data/t_start"][:]) == starts
    # the catalog round trip: (n, rows, cols), the same arrays
    stored = run.primary["saxs_image"].read()
    assert stored.shape == (3, 120, 120) and stored.dtype == np.uint32
    np.testing.assert_array_equal(stored, np.stack(frames))
    np.testing.assert_array_equal(run.primary.read()["saxs_frame_time"].values, starts)


def test_sequence_follows_the_detectors_timing(detector, world, catalog):
    start_times = world.clock.now() + 2.0 + np.cumsum(0.022 + 0.075 * 1.015 ** np.arange(20))
    detector.prepare_sequence(start_times)

    documents, run = _run(RunEngine({}), catalog, whole_sequence(detector))
    [resource] = _of(documents, "stream_resource")
    [datum] = _of(documents, "stream_datum")
    [page] = _of(documents, "event_page")
    assert (datum["indices"], datum["seq_nums"]) == ({"start": 0, "stop": 20}, {"start": 1, "stop": 21})
    assert page["seq_num"] == list(range(1, 21)) and "saxs_image" not in page["data"]
    stamps = np.array(page["data"]["saxs_frame_time"])
    # the frame start times, to the clock's resolution (epoch s as float64: ~0.2 µs); the
    # events' own "time" is the RunEngine's wall clock at collect()
    assert np.allclose(stamps, start_times, rtol=0, atol=1e-6), stamps - start_times
    assert page["timestamps"]["saxs_frame_time"] == page["data"]["saxs_frame_time"]
    with h5py.File(_path(resource), "r") as f:
        written = f[FRAME_DATASET][()]
        np.testing.assert_array_equal(f["/entry/data/t_start"][:], stamps)
    assert written.shape == (20, 120, 120)
    stored = run.primary["saxs_image"].read()
    assert stored.shape == (20, 120, 120)
    np.testing.assert_array_equal(stored, written)


def test_sequence_collected_mid_way_keeps_stream_datums_and_events_aligned(detector, world, catalog):
    """The world clock is held and stepped by hand, so the first collect finds a known,
    frozen number of frames (>= 4) mid-sequence; the second collect takes the rest."""
    start_times = world.clock.now() + 1.0 + 0.1 * np.arange(12)
    detector.prepare_sequence(start_times)
    at_first_collect = []

    def plan():
        yield from bps.open_run()
        yield from bps.stage(detector)
        yield from bps.declare_stream(detector, name="primary", collect=True)
        world.clock.hold()
        try:
            yield from bps.kickoff(detector, wait=True)
            deadline = time.monotonic() + 30
            while detector.image.get() < 3 and time.monotonic() < deadline:
                world.clock.advance(0.01)
                time.sleep(0.002)
            time.sleep(0.2)  # a frame already sent is stored; no new one can start
            at_first_collect.append(detector.image.get() + 1)
            yield from bps.collect(detector, name="primary")
        finally:
            world.clock.release()
        yield from bps.complete(detector, wait=True)
        yield from bps.collect(detector, name="primary")
        yield from bps.unstage(detector)
        yield from bps.close_run()

    documents, run = _run(RunEngine({}), catalog, plan())
    [m] = at_first_collect
    assert 4 <= m < 12
    [resource] = _of(documents, "stream_resource")
    datums, pages = _of(documents, "stream_datum"), _of(documents, "event_page")
    assert [n for n, _ in documents if n in ("stream_datum", "event_page")] == \
        ["stream_datum", "event_page"] * 2
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [(0, m), (m, 12)]
    assert [(d["seq_nums"]["start"], d["seq_nums"]["stop"]) for d in datums] == [(1, m + 1), (m + 1, 13)]
    assert [p["seq_num"] for p in pages] == [list(range(1, m + 1)), list(range(m + 1, 13))]
    with h5py.File(_path(resource), "r") as f:
        written = f[FRAME_DATASET][()]
        stamps = f["/entry/data/t_start"][:]
    np.testing.assert_array_equal(np.concatenate([p["data"]["saxs_frame_time"] for p in pages]), stamps)
    np.testing.assert_array_equal(run.primary["saxs_image"].read(), written)
    np.testing.assert_array_equal(run.primary.read()["saxs_frame_time"].values, stamps)


def test_catalog_serves_exactly_the_frames_the_stream_datums_reference(detector, catalog):
    """One file per staging and stream; frames a file holds beyond its stream_datums (a kill
    between a frame's flush and its document) are not exposed; the catalog's own document
    export (replay without a journal) finds the same frames."""
    def plan():
        yield from bps.open_run()
        for stream, n in (("background", 2), ("primary", 3)):
            yield from bpp.stage_wrapper(bps.repeat(lambda: bps.trigger_and_read([detector], name=stream), n),
                                         [detector])
        yield from bps.close_run()

    documents, run = _run(RunEngine({}), catalog, plan())
    files = {doc["uid"]: _path(doc) for doc in _of(documents, "stream_resource")}
    assert len(files) == 2
    with h5py.File(list(files.values())[1], "a") as f:  # one frame more than announced
        frames = f[FRAME_DATASET]
        primary = frames[()]
        frames.resize(4, axis=0)
        frames[3] = 7
    background = run.background["saxs_image"].read()
    assert background.shape == (2, 120, 120) and background.any()
    np.testing.assert_array_equal(run.primary["saxs_image"].read(), primary)

    uid = run.metadata["start"]["uid"]
    journal = catalog.layout.complete_journals / f"{uid}.jsonl"
    journal.rename(journal.with_suffix(".moved"))
    exported = raw_documents(catalog, run)
    assert [n for n, _ in exported][:3] == ["start", "stream_resource", "stream_resource"]
    reader = StreamFrames()
    for name, doc in exported:
        getattr(reader, name, lambda doc: None)(doc)
    events = [doc for name, doc in exported if name == "event"]
    descriptors = {doc["uid"]: doc["name"] for name, doc in exported if name == "descriptor"}
    replayed = [reader.frame(e["descriptor"], "saxs_image", e["seq_num"]) for e in events
                if descriptors[e["descriptor"]] == "primary"]
    reader.close()
    np.testing.assert_array_equal(np.stack(replayed), primary)


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
