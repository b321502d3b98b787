"""AreaDetectorSAXS over real Channel Access against the simulated areaDetector IOC.

Real components: the caproto IOC on the loopback (its own UDP search port, the client's
address list set to it), ophyd's caproto control layer, a jump-mode world clock followed by a
real RunEngine, real HDF5 files written by the IOC, the embedded catalog, the live analysis
reading the geometry from the PONI and mask files the simulated set-up writes.
"""

import json
import math
import socket
import threading
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import caproto as ca
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from event_model import DocumentNames, schema_validators
from ophyd import EpicsSignalRO

from ncsynth import timebase
from ncsynth.analysis.calibration_files import geometry_from_files, write_calibration
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.live import LiveAnalysis
from ncsynth.analysis.stream_frames import StreamFrames
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.devices.detector import FRAME_DATASET, DetectorError
from ncsynth.runs import raw_documents
from ncsynth.simulators.area_detector import (DEFAULT_PREFIX, INCIDENT_SUFFIX, TRANSMITTED_SUFFIX,
                                              SimulatedAreaDetector, serve_ioc)
from ncsynth.simulators.ca_loopback import epics_client_environment
from ncsynth.simulators.hdf5_plugin import c_format
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import World
from ncsynth.storage import open_catalog
from frozen_reaction import FrozenReaction
from sequence_plan import whole_sequence

EXPOSURE_S = 0.075
RADIUS_NM, SIGMA_NM, CONCENTRATION_MOLAR = 2.0, 0.2, 2e-5
GEOMETRY = DetectorGeometry()  # full 480x480: the coarse 120x120 bins bias R0 by 0.3 % (bin averaging)


def _distribution():
    """A Gaussian size distribution (radii nm, mol/L per cell) summing to CONCENTRATION_MOLAR."""
    radius = np.linspace(RADIUS_NM - 6 * SIGMA_NM, RADIUS_NM + 6 * SIGMA_NM, 241)
    weights = np.exp(-0.5 * ((radius - RADIUS_NM) / SIGMA_NM) ** 2)
    return radius, weights / weights.sum() * CONCENTRATION_MOLAR


@pytest.fixture(scope="module")
def beamline(tmp_path_factory):
    """(ioc, clock, calibration directory): the IOC in a jump-mode world, the client pointed at it."""
    clock = WorldClock(speed=None)
    world = World(clock)
    ioc = SimulatedAreaDetector(world, GEOMETRY, seed=11)
    with SimulatorHost() as host, pytest.MonkeyPatch.context() as env, timebase.use_clock(clock):
        host.run(ioc.start())
        for key, value in epics_client_environment(ioc.address).items():
            env.setenv(key, value)
        yield ioc, clock, host, tmp_path_factory.mktemp("calibration")
        host.run(ioc.stop())
    clock.close()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The embedded catalog; the IOC writes the frames under its ``frames/`` (which it serves)."""
    with open_catalog(tmp_path_factory.mktemp("data")) as opened:
        yield opened


@pytest.fixture(scope="module")
def detector(beamline, catalog):
    ioc, _, _, calibration_dir = beamline
    poni, mask = write_calibration(GEOMETRY, calibration_dir)
    det = AreaDetectorSAXS(DEFAULT_PREFIX, name="saxs", timeout_s=5.0,
                           write_path_template=str(catalog.layout.frames) + "/%Y/%m/%d/",
                           monitors=(DEFAULT_PREFIX + INCIDENT_SUFFIX, DEFAULT_PREFIX + TRANSMITTED_SUFFIX))
    det.geometry_json.put(geometry_from_files(poni, mask).to_json())
    det.thickness_cm.put(0.4)
    det.exposure_time.put(EXPOSURE_S)
    return det


def _engine(clock):
    RE = RunEngine({})
    clock.follow(RE)  # the dry run's wiring: the world's clock never jumps while the plan works
    return RE


def test_c_format_fills_templates_as_the_file_plugins_do():
    assert c_format("%s%s_%3.3d.h5", "/data/", "run", 7) == "/data/run_007.h5"
    assert c_format("%s%s.h5", "/data/", "abc", 3) == "/data/abc.h5"


def test_no_channel_access_client_can_share_the_search_port(beamline):
    """caproto binds its clients' search sockets to port 0 with SO_REUSEADDR; had the IOC bound
    its own so too, Linux could hand a client the IOC's port, and the IOC, bound to the more
    specific 127.0.0.1, would take the search replies meant for that client (fresh-clone CI: a
    dry run's detector "could not connect within 10.0-second timeout"). Neither a client's
    socket nor a second IOC's can bind it, and the IOC still answers searches."""
    ioc, *_ = beamline
    host, port = ioc.address
    for address in ("", host):
        with ca.bcast_socket() as client_like:
            with pytest.raises(OSError, match="in use"):
                client_like.bind((address, port))
    with closing(WorldClock(speed=None)) as clock, SimulatorHost() as other:
        with pytest.raises(OSError, match="in use"):
            other.run(SimulatedAreaDetector(World(clock)).start(host, port))
    assert EpicsSignalRO(DEFAULT_PREFIX + "cam1:ArrayCounter_RBV", name="counter").get(timeout=5) >= 0


def test_clients_reach_the_ioc_when_its_search_ports_number_is_taken_for_tcp():
    """caproto's server tries its search port's number for its TCP port first and takes a
    random one when that is held (by any process's socket: a client's ephemeral port); the
    circuits then go to ``circuit_address``, not to ``address`` (a CI run of
    tests/test_ioc_teardown.py looked for them at the search port's number and found none)."""
    from caproto.threading.pyepics_compat import PV

    for _ in range(20):  # a port number free for UDP that this test can hold for TCP
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            holder.bind(("127.0.0.1", port))
            break
        except OSError:
            holder.close()
    else:
        pytest.fail("no port number free for both UDP and TCP in 20 tries")
    prefix = "TAKEN:SAXS:"
    with closing(holder), closing(WorldClock(speed=None)) as clock, SimulatorHost() as host, \
            pytest.MonkeyPatch.context() as env, timebase.use_clock(clock):
        ioc = SimulatedAreaDetector(World(clock), GEOMETRY, prefix=prefix, seed=3)
        assert host.run(ioc.start("127.0.0.1", port)) == port
        try:
            assert ioc.address == ("127.0.0.1", port) and ioc.circuit_address[1] != port
            for key, value in epics_client_environment(ioc.address).items():
                env.setenv(key, value)
            counter = EpicsSignalRO(prefix + "cam1:ArrayCounter_RBV", name="counter")
            assert counter.get(timeout=10) == 0
            assert (ioc.circuit_address, 0) in PV.default_context().circuit_managers
        finally:
            host.run(ioc.stop())


def test_a_monitor_update_reaches_the_client_without_waiting_for_an_acknowledgement(beamline):
    """Two updates posted back to back, the second while the first is not yet acknowledged (the
    client's TCP acknowledges late), both reach the client's callback before a jumping clock
    moves on. caproto's circuits sent with Nagle's algorithm on: the second update waited for
    that acknowledgement, up to 40 ms, in no thread, and the world moved on meanwhile (in a
    steered dry run a frame's read-out found the world at the next frame's start in 98 of 109
    frames; with this socket option, in none)."""
    ioc, clock, host, _ = beamline
    pv = ioc.pvs[DEFAULT_PREFIX + INCIDENT_SUFFIX]
    original = pv.value
    received, arrived = [], threading.Condition()
    flux = EpicsSignalRO(DEFAULT_PREFIX + INCIDENT_SUFFIX, name="flux")
    flux.wait_for_connection(timeout=5)

    def on_update(value, **_):
        with arrived:
            received.append((value, clock.now()))
            arrived.notify_all()

    stop = threading.Event()

    def tick():  # a deadline ahead at any time, for the clock to jump to
        while not stop.is_set():
            clock.sleep(1.0, stop)

    ticker = threading.Thread(target=tick)
    flux.subscribe(on_update, run=False)
    # caproto adds the monitor in the background: once an update posted now arrives, it is live
    # (beside two CPU hogs the loop's first update came before it once, and was never sent)
    for ready in 5e8 + np.arange(20):
        host.run(pv.write(ready))
        with arrived:
            if arrived.wait_for(lambda: ready in dict(received), 1.0):
                break
    else:
        pytest.fail("the monitor never delivered an update")
    ticker.start()
    posted = []
    try:
        for first in 1e9 + np.arange(0, 80, 2):
            now = clock.now()
            posted += [(first, now), (first + 1, now)]
            host.run(_write_both(pv, first, first + 1))
            with arrived:
                assert arrived.wait_for(lambda: first + 1 in dict(received), 5), f"{first + 1} never arrived"
            clock.sleep(0.25)  # the world moves on once the process is quiet
    finally:
        stop.set()
        ticker.join()
        flux.unsubscribe_all()
        host.run(pv.write(original))
    assert [update for update in received if 1e9 <= update[0] < 2e9] == posted
    assert posted[-1][1] - posted[0][1] >= 39 * 0.25  # the clock jumped between the updates


async def _write_both(pv, first, second):
    await pv.write(first)
    await pv.write(second)


def test_software_triggered_frames_are_analysed_as_the_flask_holds(beamline, detector, catalog):
    """Background frames, then frames of a known distribution: the live analysis, reading the
    PONI/mask geometry and the monitors' calibration from the descriptor, finds it."""
    ioc, clock, _, _ = beamline
    radius, numbers = _distribution()
    timer = DeadlineTimer(name="timer")

    @bpp.run_decorator(md={"recipe": {"cd_initial_molar": 0.027}, "piston": "A"})
    def plan():  # one staging (one file) per stream, as ncsynth.plans do
        ioc.set_distribution([], [])  # solvent and glass only
        yield from bpp.stage_wrapper(bps.repeat(
            lambda: bps.trigger_and_read([detector], name="background"), 3), [detector])
        ioc.set_distribution(radius, numbers)
        t0 = timebase.now()
        yield from bps.stage(detector)
        for k in range(4):
            yield from bps.mv(timer, t0 + 2.0 * (k + 1))
            yield from bps.trigger_and_read([detector], name="primary")
        yield from bps.unstage(detector)

    documents, derived = [], []
    live = LiveAnalysis(lambda name, doc: derived.append((name, doc)))
    writer = catalog.writer()
    RE = _engine(clock)
    for subscriber in (writer, live, lambda name, doc: documents.append((name, doc))):
        RE.subscribe(subscriber)
    (uid,) = RE(plan())
    assert live.flush(timeout_s=60)
    writer.close()
    live.close()
    frames = catalog[uid].primary["saxs_image"].read()

    configuration = next(doc for name, doc in documents if name == "descriptor")["configuration"]["saxs"]["data"]
    assert configuration["saxs_flux_ph_per_s"] == ioc.incident_flux
    assert configuration["saxs_transmission"] == pytest.approx(ioc.transmitted_flux / ioc.incident_flux)
    assert json.loads(configuration["saxs_geometry_json"])["mask_file"].endswith("saxs_mask.edf")
    [resource] = [doc for name, doc in documents if name == "stream_resource"][:1]
    assert resource["parameters"]["dataset"] == FRAME_DATASET
    assert frames.shape == (4, *GEOMETRY.shape)  # the catalog serves the IOC's file
    np.testing.assert_array_equal(frames[-1], ioc.last_frame)
    fits = [doc["data"] for name, doc in derived if name == "event" and "radius_nm" in doc["data"]]
    assert len(fits) == 4
    for fit in fits:
        assert fit["success"], fit["reason"]
        assert abs(fit["radius_nm"] - RADIUS_NM) < 3.5 * fit["radius_err_nm"]
        assert abs(fit["concentration_molar"] - CONCENTRATION_MOLAR) < 3.5 * fit["concentration_err_molar"]


def test_every_frame_carries_the_beam_monitors_of_its_own_exposure(beamline, detector):
    """The beam decays between frames (back door): each event has the monitors' values of its
    own frame, as the IOC wrote them beside the frame, not those read when staging."""
    ioc, clock, _, _ = beamline
    fluxes = [1e13, 0.8e13, 0.5e13]
    documents = []

    def plan():
        for flux in fluxes:
            ioc.synthesizer.flux_ph_per_s = flux
            yield from bps.trigger_and_read([detector])

    RE = _engine(clock)
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    try:
        RE(bpp.stage_wrapper(bpp.run_wrapper(plan()), [detector]))
    finally:
        ioc.synthesizer.flux_ph_per_s = 1e13
    events = [doc["data"] for name, doc in documents if name == "event"]
    assert [data["saxs_incident_flux"] for data in events] == fluxes
    assert [data["saxs_transmitted_flux"] for data in events] == [0.25 * flux for flux in fluxes]
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as written:
        assert list(written["/entry/instrument/NDAttributes/IncidentFlux"][:]) == fluxes


def test_the_plugin_writes_compressed_frames_with_the_detector_description(beamline, detector):
    """The device asks the HDF5 plugin for BSLZ4 (its default, bitshuffle + LZ4, as Eiger
    detectors write): the IOC's file holds the frame bit for bit through that filter, beside the
    NXdetector of the set-up's geometry."""
    ioc, clock, _, _ = beamline
    documents = []
    RE = _engine(clock)
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    RE(bpp.stage_wrapper(bpp.run_wrapper(bps.trigger_and_read([detector])), [detector]))
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(_path(resource), "r") as written:
        assert set(written[FRAME_DATASET]._filters) == {"32008"}  # the bitshuffle filter
        np.testing.assert_array_equal(written[FRAME_DATASET][0], ioc.last_frame)
        nx = written["/entry/instrument/detector"]
        assert (nx["distance"][()], nx["beam_center_y"][()], nx["beam_center_x"][()]) == \
            (GEOMETRY.distance_m, *GEOMETRY.beam_center_px)
        np.testing.assert_array_equal(nx["mask"][()].astype(bool), GEOMETRY.mask)


def test_detector_timed_sequence_keeps_the_schedule_in_world_time(beamline, detector, tmp_path):
    ioc, clock, _, _ = beamline
    start_times = clock.now() + 5.0 + np.cumsum(0.022 + EXPOSURE_S * 1.015 ** np.arange(12))
    detector.prepare_sequence(start_times)
    documents = []
    RE = _engine(clock)
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    RE(whole_sequence(detector))
    [page] = [doc for name, doc in documents if name == "event_page"]
    np.testing.assert_array_equal(page["data"]["saxs_frame_time"], start_times)  # a jumping clock: exact
    assert page["data"]["saxs_incident_flux"] == [ioc.incident_flux] * 12  # the monitors, per frame
    [datum] = [doc for name, doc in documents if name == "stream_datum"]
    assert datum["indices"] == {"start": 0, "stop": 12}
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as written:
        np.testing.assert_array_equal(written["/entry/instrument/NDAttributes/NDArrayTimeStamp"][:],
                                      start_times)
        assert written[FRAME_DATASET].shape == (12, *GEOMETRY.shape)
        assert np.all(written["/entry/instrument/NDAttributes/IncidentFlux"][:] == ioc.incident_flux)


def test_a_capture_that_never_completes_fails_the_frame_naming_the_device(beamline, detector):
    ioc, clock, _, _ = beamline
    ioc.stall_writes = True
    detector.timeout_s = 0.5
    with pytest.raises(DetectorError, match="stage the detector"):
        detector.trigger()
    try:
        detector.stage()
        with pytest.raises(DetectorError, match=r"saxs: frame 0 was not written to HDF5 within"):
            detector.trigger().wait(30)
        assert list(detector.collect_asset_docs()) == []
        detector.prepare_sequence(clock.now() + np.array([100.0, 200.0]))
        detector.kickoff().wait(5)
        detector.stop()
        with pytest.raises(DetectorError, match="0 of 2"):
            detector.complete().wait(5)
    finally:
        ioc.stall_writes = False
        detector.timeout_s = 5.0
        detector.unstage()


def test_bad_configuration_is_refused_before_anything_moves(tmp_path):
    with pytest.raises(ValueError, match="monitors must be two PV names"):
        AreaDetectorSAXS("X:", name="x", write_path_template="/data", monitors=("only-one",))
    with pytest.raises(ValueError, match="compression must be one of None, zlib, Blosc, BSLZ4, LZ4, got 'JPEG'"):
        AreaDetectorSAXS("X:", name="x", write_path_template="/data", compression="JPEG")
    bad = tmp_path / "mask.npy"
    np.save(bad, np.zeros((3, 3)))
    poni, _ = write_calibration(GEOMETRY, tmp_path)
    with pytest.raises(ValueError, match=r"mask file .*mask.npy: shape \(3, 3\), the detector has \(480, 480\)"):
        geometry_from_files(poni, bad)
    (tmp_path / "tilted.poni").write_text(poni.read_text().replace("Rot1: 0", "Rot1: 0.01"))
    with pytest.raises(ValueError, match="tilted detector"):
        geometry_from_files(tmp_path / "tilted.poni")
    assert math.isfinite(geometry_from_files(poni).distance_m)


def test_a_hutch_configuration_points_at_the_simulated_ioc_with_its_files(beamline, catalog):
    """The configuration's [detector] section, filled with the simulated IOC's prefix, monitor
    PVs and calibration files, builds the device the hutch uses; a frame reads back calibrated."""
    from ncsynth.config import default_config
    from ncsynth.instruments import area_detector

    ioc, clock, _, calibration_dir = beamline
    poni, mask = write_calibration(GEOMETRY, calibration_dir / "hutch")
    section = {**default_config()["detector"], "prefix": DEFAULT_PREFIX, "poni": str(poni),
               "mask": str(mask), "incident_monitor_pv": DEFAULT_PREFIX + INCIDENT_SUFFIX,
               "transmitted_monitor_pv": DEFAULT_PREFIX + TRANSMITTED_SUFFIX}
    det = area_detector(section, catalog.layout.frames / "hutch")
    det.exposure_time.put(EXPOSURE_S)
    det.stage()
    try:
        det.trigger().wait(30)
        configuration = det.read_configuration()
    finally:
        det.unstage()
    assert configuration["saxs_transmission"]["value"] == pytest.approx(0.25)
    assert configuration["saxs_thickness_cm"]["value"] == 0.4
    assert DetectorGeometry.from_dict(json.loads(configuration["saxs_geometry_json"]["value"])) == \
        geometry_from_files(poni, mask)
    with pytest.raises(ValueError, match="both incident_monitor_pv and transmitted_monitor_pv"):
        area_detector({**section, "transmitted_monitor_pv": ""}, catalog.layout.frames)


def test_an_ioc_gone_mid_run_fails_the_frame_and_keeps_the_frames_written(tmp_path):
    clock = WorldClock(speed=None)
    ioc = SimulatedAreaDetector(World(clock), GEOMETRY.small(), prefix="GONE:", seed=2)
    with SimulatorHost() as host, pytest.MonkeyPatch.context() as env, timebase.use_clock(clock):
        host.run(ioc.start())
        for key, value in epics_client_environment(ioc.address).items():
            env.setenv(key, value)
        det = AreaDetectorSAXS("GONE:", name="gone", write_path_template=str(tmp_path), timeout_s=1.0)
        det.exposure_time.put(EXPOSURE_S)
        det.stage()
        det.trigger().wait(30)
        path = ioc.value("HDF1:FullFileName_RBV")
        host.run(ioc.stop())
        # refused at once if the client has seen the circuit close, else the frame is late
        # and the IOC does not answer the write-status read: either way the IOC is named
        with pytest.raises(DetectorError, match="gone: (cannot start an exposure: .*GONE:cam1:|frame 1 "
                                                "was not written to HDF5 within .* s: the IOC does "
                                                "not answer .*GONE:HDF1:)"):
            det.trigger().wait(30)
    clock.close()
    with h5py.File(path, "r") as kept:
        assert kept[FRAME_DATASET].shape == (1, *GEOMETRY.small().shape)


# -- what the frames and their documents guarantee (moved from the retired TCP detector's tests) --
def _path(stream_resource) -> Path:
    parts = urlsplit(stream_resource["uri"])
    assert parts.scheme == "file" and parts.netloc == "localhost"
    return Path(parts.path)


def _run(RE, catalog, plan, *subscribers):
    """Run ``plan`` into the catalog; its documents (schema-validated) and the run client."""
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


def test_a_frame_is_in_its_file_before_its_stream_datum_and_starts_when_triggered(beamline, detector, catalog):
    """Each stream_datum follows its frame's flush (a second reader finds it in the IOC's file
    the moment the document is emitted) and precedes its event; each event carries its frame's
    own start, not the time of read()."""
    ioc, clock, _, _ = beamline
    starts, frames, on_disk = [], [], []

    def plan():
        yield from bps.open_run()
        yield from bps.stage(detector)
        for _ in range(3):
            clock.advance(1.0)
            starts.append(clock.now())
            yield from bps.trigger_and_read([detector])
            frames.append(ioc.last_frame.copy())
        yield from bps.unstage(detector)
        yield from bps.close_run()

    def read_back(name, doc):
        if name == "stream_resource":
            on_disk.append(_path(doc))
        elif name == "stream_datum":
            with h5py.File(on_disk[0], "r", swmr=True) as f:
                on_disk.append(f[FRAME_DATASET][doc["indices"]["start"]])

    documents, run = _run(_engine(clock), catalog, plan(), read_back)
    [descriptor] = [doc for name, doc in documents if name == "descriptor"]
    datums = [doc for name, doc in documents if name == "stream_datum"]
    events = [doc for name, doc in documents if name == "event"]
    key = descriptor["data_keys"]["saxs_image"]
    assert key["external"] == "STREAM:" and key["shape"] == list(GEOMETRY.shape) and key["dtype_numpy"] == "<u4"
    assert [n for n, _ in documents if n in ("stream_datum", "event")] == ["stream_datum", "event"] * 3
    assert [(d["seq_nums"]["start"], d["seq_nums"]["stop"]) for d in datums] == \
        [(e["seq_num"], e["seq_num"] + 1) for e in events]
    for event, start in zip(events, starts):
        assert "saxs_image" not in event["data"]
        assert event["data"]["saxs_frame_time"] == event["timestamps"]["saxs_frame_time"] == start
    for seen, frame in zip(on_disk[1:], frames):
        np.testing.assert_array_equal(seen, frame)
    np.testing.assert_array_equal(run.primary["saxs_image"].read(), np.stack(frames))


def test_the_catalog_serves_exactly_the_frames_the_stream_datums_reference(beamline, detector, catalog):
    """One file per staging and stream; a frame a file holds beyond its stream_datums (a kill
    between a frame's flush and its document) is not exposed; the catalog's own document
    export (replay without a journal) finds the same frames."""
    ioc, clock, _, _ = beamline

    def plan():
        yield from bps.open_run()
        for stream, n in (("background", 2), ("primary", 3)):
            yield from bpp.stage_wrapper(bps.repeat(lambda: bps.trigger_and_read([detector], name=stream), n),
                                         [detector])
        yield from bps.close_run()

    documents, run = _run(_engine(clock), catalog, plan())
    files = [_path(doc) for name, doc in documents if name == "stream_resource"]
    assert len(files) == 2
    with h5py.File(files[1], "a") as f:  # one frame more than announced
        frames = f[FRAME_DATASET]
        primary = frames[()]
        frames.resize(4, axis=0)
        frames[3] = 7
    assert run.background["saxs_image"].read().shape == (2, *GEOMETRY.shape)
    np.testing.assert_array_equal(run.primary["saxs_image"].read(), primary)
    uid = run.metadata["start"]["uid"]
    journal = catalog.layout.complete_journals / f"{uid}.jsonl"
    journal.rename(journal.with_suffix(".moved"))
    exported = raw_documents(catalog, run)
    reader = StreamFrames()
    for name, doc in exported:
        getattr(reader, name, lambda doc: None)(doc)
    descriptors = {doc["uid"]: doc["name"] for name, doc in exported if name == "descriptor"}
    replayed = [reader.frame(doc["descriptor"], "saxs_image", doc["seq_num"]) for name, doc in exported
                if name == "event" and descriptors[doc["descriptor"]] == "primary"]
    reader.close()
    np.testing.assert_array_equal(np.stack(replayed), primary)


def test_the_device_refuses_a_bad_sequence_or_exposure(detector):
    with pytest.raises(ValueError, match="start_times"):
        detector.prepare_sequence([[1.0, 2.0]])
    with pytest.raises(ValueError, match="increase by at least"):
        detector.prepare_sequence([1.0, 1.01])
    fresh = AreaDetectorSAXS(DEFAULT_PREFIX, name="fresh", write_path_template="/data")
    with pytest.raises(DetectorError, match="prepare_sequence"):
        fresh.kickoff()
    with pytest.raises(ValueError, match="exposure_s"):
        detector.prepare_sequence([1.0, 2.0], exposure_s=-1.0)


def test_the_world_is_sampled_at_mid_exposure_however_soon_the_clock_may_jump(tmp_path):
    """The IOC samples the flask while a jumping clock stands at mid-exposure, and reserves an
    exposure's middle and end as it starts: with a clock that jumps after 1 µs of quiet, any
    gap (a hop between the event loop and a worker thread, a Channel Access round trip) would
    let it move on first, and the frame would show the flask of its end or of the next frame."""
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
    with SimulatorHost() as host, timebase.use_clock(clock):
        ioc, release_clients = serve_ioc(host, world, geometry=GEOMETRY.small(), seed=7)
        det = AreaDetectorSAXS(ioc.prefix, name="mid", write_path_template=str(tmp_path), timeout_s=5.0)
        det.exposure_time.put(EXPOSURE_S)
        documents = []
        RE = _engine(clock)
        RE.subscribe(lambda name, doc: documents.append((name, doc)))
        RE(bpp.stage_wrapper(bpp.run_wrapper(bps.repeat(lambda: bps.trigger_and_read([det]), 5)), [det]))
        schedule = clock.now() + 1.0 + 0.1 * np.arange(10)  # 25 ms between an end and the next start
        det.prepare_sequence(schedule)
        RE(whole_sequence(det))
        release_clients()
    clock.close()
    starts = [doc["data"]["mid_frame_time"] for name, doc in documents if name == "event"]
    [page] = [doc for name, doc in documents if name == "event_page"]
    starts += page["data"]["mid_frame_time"]
    assert starts[5:] == list(schedule)
    assert sampled == [t + EXPOSURE_S / 2 for t in starts]


def test_the_next_exposure_starts_while_the_plugin_still_writes_the_last_frame(tmp_path):
    """As areaDetector's HDF5 plugin, the simulated one writes in its own thread: in real time,
    with a compression slower than the dead time between frames (zlib at level 9, ~0.1-0.3 s a
    full frame here), a detector-timed sequence starts its next exposures while earlier frames
    are still being written (the cam's ArrayCounter ahead of the plugin's NumCaptured when an
    exposure starts), and still every frame reaches the file, each collected only once written,
    with the beam monitors of its own exposure (the beam decays at every start: each event's
    values are those the IOC attached to that frame in the file, not a later frame's)."""
    clock = WorldClock(speed=1.0)
    with SimulatorHost() as host, timebase.use_clock(clock):
        ioc, release_clients = serve_ioc(host, World(clock), geometry=GEOMETRY, seed=5)
        det = AreaDetectorSAXS(ioc.prefix, name="slow", write_path_template=str(tmp_path),
                               timeout_s=60.0, compression="zlib",
                               monitors=(ioc.prefix + INCIDENT_SUFFIX, ioc.prefix + TRANSMITTED_SUFFIX))
        det.hdf5.stage_sigs["zlevel"] = 9
        det.exposure_time.put(EXPOSURE_S)
        at_starts = []  # (frames the cam has counted, frames the plugin has written) at each start

        def started(value, **kwargs):
            if value == 1:
                at_starts.append((ioc.value("cam1:ArrayCounter_RBV"), ioc.value("HDF1:NumCaptured_RBV")))
                ioc.synthesizer.flux_ph_per_s *= 0.9

        det.cam.acquire.subscribe(started, run=False)
        documents = []
        RE = RunEngine({})
        RE.subscribe(lambda name, doc: documents.append((name, doc)))
        schedule = clock.now() + 2.0 + 0.1 * np.arange(8)  # 25 ms between an end and the next start
        det.prepare_sequence(schedule)
        base = ioc.value("cam1:ArrayCounter_RBV")  # frames the cam counted before the sequence
        RE(whole_sequence(det))
        det.cam.acquire.clear_sub(started)
        release_clients()
    clock.close()
    assert any(counted - base > written for counted, written in at_starts[1:]), at_starts
    [page] = [doc for name, doc in documents if name == "event_page"]
    assert len(page["data"]["slow_frame_time"]) == 8
    assert all(start >= due for start, due in zip(page["data"]["slow_frame_time"], schedule))
    [datum] = [doc for name, doc in documents if name == "stream_datum"]
    assert datum["indices"] == {"start": 0, "stop": 8}
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(_path(resource), "r") as written:
        assert set(written[FRAME_DATASET]._filters) == {"gzip"}
        frames = written[FRAME_DATASET][:]
        attached = list(written["/entry/instrument/NDAttributes/IncidentFlux"][:])
    assert page["data"]["slow_incident_flux"] == attached and len(set(attached)) > 1
    assert frames.shape == (8, *GEOMETRY.shape)
    np.testing.assert_array_equal(frames[-1], ioc.last_frame)
    assert all(frame.sum() > 0 for frame in frames)
