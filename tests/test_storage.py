"""ncsynth.storage: embedded catalog, journal, frames by reference, crash recovery.

Everything here is real: a bluesky RunEngine, ophyd.sim devices, a file-backed Tiled catalog,
HDF5 files written by a tiny detector defined below, subprocesses killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from event_model import ComposeStreamResource, StreamRange, unpack_event_page
from ophyd.sim import det, motor
from ophyd.status import StatusBase

from ncsynth.storage import RECOVERED_REASON, RunNotFound, open_catalog
from ncsynth.storage.journal import read_journal

FRAME_SHAPE = (4, 6)


def expected_frame(index: int) -> np.ndarray:
    """The frame FrameCamera writes as its ``index``-th frame (deterministic)."""
    return np.random.default_rng(index).integers(0, 1000, FRAME_SHAPE, dtype="<u4")


class FrameCamera:
    """A minimal bluesky detector that stores frames the way the SAXS detector must:

    stage() opens ``path`` (HDF5, SWMR) with dataset /entry/data/data (N, 4, 6) uint32 and
    emits one stream_resource; each trigger() appends a frame, flushes it to the file, then
    emits a stream_datum for index n (the RunEngine fills descriptor and seq_nums). The image
    is described as external ("STREAM:") and absent from read().
    """

    parent = None

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)
        self._asset_docs = []
        self._count = 0

    @property
    def data_key(self) -> str:
        return f"{self.name}_image"

    def stage(self):
        self._file = h5py.File(self.path, "w", libver="latest")
        self._dataset = self._file.create_dataset(
            "/entry/data/data", shape=(0, *FRAME_SHAPE), maxshape=(None, *FRAME_SHAPE),
            dtype="<u4", chunks=(1, *FRAME_SHAPE),
        )
        self._file.swmr_mode = True
        bundle = ComposeStreamResource()(
            mimetype="application/x-hdf5",
            uri=self.path.absolute().as_uri(),
            data_key=self.data_key,
            parameters={"dataset": "/entry/data/data", "chunk_shape": [1, *FRAME_SHAPE]},
        )
        self._compose_datum = bundle.compose_stream_datum
        self._asset_docs.append(("stream_resource", bundle.stream_resource_doc))
        self._count = 0
        return [self]

    def unstage(self):
        self._file.close()
        return [self]

    def trigger(self):
        n = self._count
        self._dataset.resize(n + 1, axis=0)
        self._dataset[n] = expected_frame(n)
        self._dataset.flush()  # on disk before the document that references it
        self._asset_docs.append(("stream_datum", self._compose_datum(indices=StreamRange(start=n, stop=n + 1))))
        self._count += 1
        status = StatusBase()
        status.set_finished()
        return status

    def describe(self):
        return {self.data_key: {"source": f"hdf5:{self.path}", "shape": list(FRAME_SHAPE), "dtype": "array",
                                "dtype_numpy": "<u4", "external": "STREAM:"}}

    def read(self):
        return {}

    def describe_configuration(self):
        return {}

    def read_configuration(self):
        return {}

    def collect_asset_docs(self):
        docs, self._asset_docs = self._asset_docs, []
        yield from docs


# A plan run in another process, to be read concurrently or killed with SIGKILL.
ACQUIRE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det
    from ncsynth.storage import open_catalog
    spec = importlib.util.spec_from_file_location("storage_tests", sys.argv[1])
    tests = importlib.util.module_from_spec(spec); spec.loader.exec_module(tests)
    data_dir, frames, num, delay = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    catalog = open_catalog(data_dir)
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(catalog.writer(flush_interval_s=0.2))
    camera = tests.FrameCamera("cam", frames)
    RE(bp.count([det, camera], num=num, delay=delay))
    """
)


def journal_events(docs) -> list[dict]:
    """Event documents of a journal (events are journaled as event_pages)."""
    return [event for name, doc in docs if name == "event_page" for event in unpack_event_page(doc)]


def start_acquisition(data_dir: Path, frames: Path, num: int, delay_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ACQUIRE_SCRIPT, __file__, str(data_dir), str(frames), str(num), str(delay_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_journal_events(active_dir: Path, count: int, proc: subprocess.Popen, timeout_s: float = 40.0) -> Path:
    """Poll the active journal of the subprocess's run until it holds ``count`` events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"acquisition process ended early: {proc.communicate()}"
        for path in active_dir.glob("*.jsonl"):
            if len(journal_events(read_journal(path))) >= count:
                return path
        time.sleep(0.05)
    raise AssertionError(f"the journal did not reach {count} events in {timeout_s} s")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    with open_catalog(tmp_path_factory.mktemp("data")) as opened:
        yield opened


@pytest.fixture
def RE():
    return RunEngine({}, context_managers=[])


def emitted(RE):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def test_run_goes_into_catalog_and_is_found_by_every_kind_of_reference(catalog, RE):
    docs = emitted(RE)
    writer = catalog.writer()
    RE.subscribe(writer)
    (uid,) = RE(bp.scan([det], motor, -1, 1, 7))
    (later_uid,) = RE(bp.count([det], 2))
    writer.close()

    run = catalog[uid]
    events = [doc for name, doc in docs if name == "event" and doc["descriptor"] in
              {d["uid"] for n, d in docs if n == "descriptor" and d["run_start"] == uid}]
    table = run.primary.read()
    np.testing.assert_array_equal(table["det"].values, [e["data"]["det"] for e in events])
    np.testing.assert_array_equal(table["motor"].values, [e["data"]["motor"] for e in events])
    assert run.metadata["stop"]["exit_status"] == "success"

    scan_id = run.metadata["start"]["scan_id"]
    assert catalog[uid[:8]].metadata["start"]["uid"] == uid
    assert catalog[scan_id].metadata["start"]["uid"] == uid
    assert catalog[-1].metadata["start"]["uid"] == later_uid
    assert catalog[-2].metadata["start"]["uid"] == uid

    # the journal of a run the catalog holds completely is archived
    assert (catalog.layout.complete_journals / f"{uid}.jsonl").exists()
    assert not list(catalog.layout.active_journals.glob("*.jsonl"))
    journaled = read_journal(catalog.layout.complete_journals / f"{uid}.jsonl")
    assert [e["data"] for e in journal_events(journaled)] == [e["data"] for e in events]
    assert [name for name, _ in journaled] == ["start", "descriptor"] + ["event_page"] * 7 + ["stop"]

    replayed = list(catalog.documents(uid))
    assert [name for name, _ in replayed] == ["start", "descriptor"] + ["event"] * 7 + ["stop"]
    assert [doc["data"]["det"] for name, doc in replayed if name == "event"] == [e["data"]["det"] for e in events]


def test_a_uid_that_starts_with_digits_is_found_by_its_prefix_from_the_command_line(catalog):
    from event_model import compose_run

    from ncsynth.cli import _run_ref

    uid = "83363388-5b4e-4d1a-9c55-0f4b2a1e7d10"  # ~2 % of random uids start with 8 digits
    bundle = compose_run(uid=uid, metadata={"scan_id": 7}, time=1.0)
    stream = bundle.compose_descriptor(name="primary", time=1.0, data_keys={
        "x": {"source": "test", "dtype": "number", "shape": []}})
    writer = catalog.writer()
    for name, doc in [("start", bundle.start_doc), ("descriptor", stream.descriptor_doc),
                      ("event", stream.compose_event(data={"x": 1.0}, timestamps={"x": 1.0},
                                                     time=1.0)),
                      ("stop", bundle.compose_stop(time=2.0))]:
        writer(name, doc)
    writer.close()
    assert _run_ref(catalog, "83363388") == "83363388"        # no scan id 83363388: a uid prefix
    assert catalog[_run_ref(catalog, "83363388")].metadata["start"]["uid"] == uid
    assert _run_ref(catalog, "7") == 7 and _run_ref(catalog, "-1") == -1
    assert catalog[_run_ref(catalog, "7")].metadata["start"]["uid"] == uid


def test_unknown_or_malformed_references_raise_clear_errors(catalog):
    with pytest.raises(RunNotFound, match="no run with uid 'fffffffff'"):
        catalog["fffffffff"]
    with pytest.raises(KeyError, match="no run with scan id 987654"):
        catalog[987654]
    with pytest.raises(RunNotFound, match="out of range"):
        catalog[-(len(catalog) + 1)]
    with pytest.raises(ValueError, match="too short"):
        catalog["ab"]
    with pytest.raises(ValueError, match="reference 0"):
        catalog[0]
    for bad in (1.5, True, None):
        with pytest.raises(TypeError, match="run reference"):
            catalog[bad]


def test_bad_options_are_refused_before_anything_starts(catalog, tmp_path):
    with pytest.raises(TypeError, match="data_dir"):
        open_catalog(42)
    with pytest.raises(TypeError, match="readable_storage"):
        open_catalog(tmp_path, readable_storage=str(tmp_path))
    with pytest.raises(ValueError, match="queue_size"):
        catalog.writer(queue_size=0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        catalog.writer(flush_interval_s=-1)


def test_frames_stored_in_hdf5_come_back_through_the_catalog(catalog, RE):
    docs = emitted(RE)
    camera = FrameCamera("cam", catalog.layout.frames / "round_trip.h5")
    writer = catalog.writer()
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, camera], 5))
    writer.close()

    frames = catalog[uid].primary["cam_image"].read()
    np.testing.assert_array_equal(frames, np.stack([expected_frame(i) for i in range(5)]))
    assert frames.dtype == np.uint32
    with h5py.File(camera.path, "r") as f:  # stored once, in the detector's file
        np.testing.assert_array_equal(f["/entry/data/data"][()], frames)
    stream_resources = [doc for name, doc in docs if name == "stream_resource"]
    assert len(stream_resources) == 1 and stream_resources[0]["uri"].endswith("round_trip.h5")
    assert [name for name, _ in catalog.documents(uid)].count("stream_datum") >= 1


def test_runengine_runs_ahead_of_a_slow_catalog_and_journal_is_already_complete(catalog, RE):
    # flush_interval_s=1e-3 commits every event on its own: ~30 ms each, far slower than the RE
    writer = catalog.writer(flush_interval_s=1e-3, wait_at_stop=False)
    RE.subscribe(writer)
    at_stop = {}

    def probe(name, doc):  # subscribed after the writer: runs on the RE thread right after it
        if name == "stop":
            at_stop["waiting"] = writer._queue.qsize()
            journal = catalog.layout.active_journals / f"{doc['run_start']}.jsonl"
            at_stop["journaled"] = len(journal_events(read_journal(journal)))

    RE.subscribe(probe)
    (uid,) = RE(bp.count([det], 60))
    assert at_stop["waiting"] > 0, "the RunEngine reached its stop only after the catalog caught up"
    assert at_stop["journaled"] == 60, "documents were not on disk as they were emitted"
    assert writer.flush(timeout_s=60)
    assert len(catalog[uid].primary.read()["det"]) == 60
    assert catalog[uid].metadata["stop"]["exit_status"] == "success"
    writer.close()


def test_full_queue_makes_the_runengine_wait_but_loses_nothing(catalog, RE):
    writer = catalog.writer(queue_size=4, flush_interval_s=1e-3)
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det], 40))
    writer.close()
    assert writer.queue_full_waits > 0
    assert writer.max_queue_depth <= 4
    assert len(catalog[uid].primary.read()["det"]) == 40


def test_another_process_reads_a_run_while_it_is_being_written(catalog):
    """A reader polls the frames of a run another process is writing: every read gives the
    frames registered when it looked the run up, never an error. (Tiled's client used to ask
    for "the whole array" with the shape it had fetched; a frame registered in between made
    the server answer HTTP 500, on the first or second read in 2 of 3 runs:
    ncsynth.storage.clients.)"""
    n = 200
    proc = start_acquisition(catalog.layout.root, catalog.layout.frames / "concurrent.h5", num=n, delay_s=0.05)
    try:
        uid = wait_for_journal_events(catalog.layout.active_journals, 5, proc).stem
        reads, scalars = [], 0
        while proc.poll() is None:
            try:
                stream = catalog[uid]["primary"]  # KeyError until its descriptor is in
                scalars = max(scalars, len(stream["det"].read()))
                frames = stream["cam_image"].read()
            except (KeyError, RunNotFound):  # the stream is not in the catalog yet
                continue
            if proc.poll() is None:
                reads.append(frames)
        assert proc.returncode == 0, proc.communicate()[1][-3000:]
    finally:
        proc.kill()
    mid_run = [len(frames) for frames in reads if 0 < len(frames) < n]
    assert mid_run and 0 < scalars, f"no read while the run was written: {[len(f) for f in reads]}"
    frame_shape = np.shape(expected_frame(0))
    for frames in reads:  # a read before the first frame was registered holds none
        expected = np.array([expected_frame(i) for i in range(len(frames))]).reshape(-1, *frame_shape)
        np.testing.assert_array_equal(frames, expected)
    run = catalog[uid]
    assert len(run.primary.read()["det"]) == n
    np.testing.assert_array_equal(run.primary["cam_image"].read(), [expected_frame(i) for i in range(n)])


def test_kill_9_mid_run_then_recover_keeps_every_event_and_frame(catalog):
    proc = start_acquisition(catalog.layout.root, catalog.layout.frames / "killed.h5", num=100_000, delay_s=0.02)
    try:
        journal = wait_for_journal_events(catalog.layout.active_journals, 15, proc)
        uid = journal.stem
        in_progress = catalog.recover()  # a live writer holds the journal: left alone
        assert (uid, "in-progress") in [(r.uid, r.status) for r in in_progress]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL

    journaled = read_journal(journal)
    events = journal_events(journaled)
    frames_referenced = sum(doc["indices"]["stop"] - doc["indices"]["start"]
                            for name, doc in journaled if name == "stream_datum")
    assert len(events) >= 15 and not any(name == "stop" for name, _ in journaled)

    # the kill may land between a frame's stream_datum and its event (bluesky emits them in
    # that order): the run then ends at the last event, and the stop says what was left out
    kept = min(len(events), frames_referenced)
    assert frames_referenced - kept in (0, 1)
    records = catalog.recover()
    assert [(r.uid, r.status, r.events, r.exit_status) for r in records] == [(uid, "aborted", kept, "abort")]
    run = catalog[uid]
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "abort" and stop["reason"].startswith(RECOVERED_REASON)
    assert ("journaled without their event left out" in stop["reason"]) == (frames_referenced > kept)
    assert stop["num_events"] == {"primary": kept}
    primary = run.primary.read()  # columns of one length: xarray refuses others
    np.testing.assert_array_equal(primary["det"].values, [e["data"]["det"] for e in events[:kept]])
    np.testing.assert_array_equal(primary["cam_image"].values, [expected_frame(i) for i in range(kept)])
    last = json.loads(journal.parent.parent.joinpath("complete", journal.name).read_text().splitlines()[-1])
    assert last["name"] == "stop" and last["doc"]["exit_status"] == "abort"

    assert catalog.recover() == []  # idempotent


def journal_cut_between_a_frame_and_its_event(catalog, frames: Path, num: int, *, torn: bool) -> Path:
    """A real run's journal (a RunEngine, FrameCamera's HDF5 file, the writer's RunJournal),
    cut as a kill -9 leaves it after the last frame's stream_datum: before its event
    (``torn=False``) or in the middle of the event's line (``torn=True``); put in
    journal/active of ``catalog`` with no run in the catalog. Returns the active journal."""
    from event_model import RunRouter

    from ncsynth.storage.journal import RunJournal

    written = frames.with_suffix(".jsonl")
    RE = RunEngine({}, context_managers=[])
    journals = []

    def journal_factory(name, start):
        journals.append(RunJournal(written))
        return [journals[-1]], []

    RE.subscribe(RunRouter([journal_factory]))
    RE(bp.count([det, FrameCamera("cam", frames)], num=num))
    journals[0].close()
    lines = written.read_bytes().splitlines(keepends=True)
    last_datum = max(i for i, line in enumerate(lines) if json.loads(line)["name"] == "stream_datum")
    assert json.loads(lines[last_datum + 1])["name"] == "event_page"
    kept = b"".join(lines[:last_datum + 1]) + (lines[last_datum + 1][:40] if torn else b"")
    active = catalog.layout.active_journals / f"{json.loads(lines[0])['doc']['uid']}.jsonl"
    active.write_bytes(kept)
    return active


@pytest.mark.parametrize("torn", [False, True], ids=["before-the-event", "event-torn"])
def test_a_kill_between_a_frame_and_its_event_recovers_a_run_whose_columns_match(catalog, torn):
    """bluesky emits a frame's stream_datum before its event: a process killed between the two
    left a journal with one frame more than events, and the recovered run could not be read
    (xarray: 'different left-most dimensions'). Recovery ends the stream at the last event,
    says in the stop what it left out and where that frame still is, and keeps the journal
    as found."""
    frames = catalog.layout.frames / f"cut-{torn}.h5"
    active = journal_cut_between_a_frame_and_its_event(catalog, frames, 4, torn=torn)
    uid = active.stem
    (record,) = catalog.recover()
    assert (record.uid, record.status, record.events, record.exit_status, record.ok) == (uid, "aborted", 3, "abort", True)
    run = catalog[uid]
    primary = run.primary.read()
    assert primary["det"].shape == (3,) and primary["cam_image"].shape == (3, *FRAME_SHAPE)
    np.testing.assert_array_equal(primary["cam_image"].values, [expected_frame(i) for i in range(3)])
    stop = run.metadata["stop"]
    assert stop["num_events"] == {"primary": 3}
    assert stop["reason"].startswith(RECOVERED_REASON)
    assert f"1 frame(s) of cam_image journaled without their event left out (still in {frames.as_uri()} rows 3..3)" \
        in stop["reason"], stop["reason"]
    with h5py.File(frames, "r") as f:  # the frame left out is still in the detector's file
        np.testing.assert_array_equal(f["/entry/data/data"][3], expected_frame(3))
    complete = read_journal(catalog.layout.complete_journals / active.name)
    assert [d["indices"] for n, d in complete if n == "stream_datum"][-1] == {"start": 2, "stop": 3}
    assert complete[-1] == ("stop", stop)
    assert (catalog.layout.damaged_journals / active.name).read_bytes().startswith(
        (catalog.layout.complete_journals / active.name).read_bytes()[:200])
    assert catalog.recover() == []


def test_the_writer_in_a_process_of_its_own_stores_the_same_run(catalog, RE, tmp_path):
    """worker="process": Tiled's app in a child process (the dry run's writer); the catalog
    holds what the in-process writer stores (events, frames by reference), the journal is
    archived, and the writer keeps the start and stop documents it stored."""
    camera = FrameCamera("cam", catalog.layout.frames / "worker.h5")
    runs = {}
    for worker in ("thread", "process"):
        camera.path = catalog.layout.frames / f"{worker}.h5"
        writer = catalog.writer(worker=worker, flush_interval_s=0.2)
        token = RE.subscribe(writer)
        (runs[worker],) = RE(bp.count([det, camera], num=6))
        RE.unsubscribe(token)
        writer.close()
        assert not writer.failed_runs
        assert writer.stored[runs[worker]]["stop"]["exit_status"] == "success"
        assert writer.started[runs[worker]]["uid"] == runs[worker]
    thread, process = (catalog[runs[w]] for w in ("thread", "process"))
    np.testing.assert_array_equal(process.primary.read()["det"].values, thread.primary.read()["det"].values)
    np.testing.assert_array_equal(process.primary["cam_image"].read(), [expected_frame(i) for i in range(6)])
    assert process.metadata["stop"]["num_events"] == {"primary": 6}
    assert (catalog.layout.complete_journals / f"{runs['process']}.jsonl").exists()


def test_a_writer_process_that_dies_fails_the_run_and_recover_completes_it(catalog, RE):
    """The worker process killed mid-run: the run is a failed run (logged, in failed_runs), the
    RunEngine goes on, the journal keeps every document in journal/active, and recover()
    puts the whole run into the catalog."""
    writer = catalog.writer(worker="process", flush_interval_s=0.1, stop_timeout_s=30)
    RE.subscribe(writer)
    killed = []

    def kill_the_worker(name, doc):
        if name == "event" and doc["seq_num"] == 3 and not killed:
            writer._link._process.kill()
            writer._link._process.wait()
            killed.append(True)

    RE.subscribe(kill_the_worker)
    (uid,) = RE(bp.count([det], num=8))
    writer.close()
    assert killed and uid in writer.failed_runs and uid not in writer.stored
    assert (catalog.layout.active_journals / f"{uid}.jsonl").exists()
    records = catalog.recover()
    assert [(r.uid, r.status, r.events) for r in records] == [(uid, "completed", 8)]
    assert len(catalog[uid].primary.read()["det"]) == 8


def test_the_writer_process_is_for_an_embedded_catalog(catalog):
    with pytest.raises(ValueError, match="worker"):
        catalog.writer(worker="fork")
    with pytest.raises(ValueError, match="close_streams: a writer process takes it"):
        catalog.writer(worker="process", close_streams=True)  # would be ignored by the worker
    from ncsynth.storage.writer import CatalogWriter

    with pytest.raises(ValueError, match="data_dir"):
        CatalogWriter(None, catalog.layout, worker="process")


def test_snapshots_of_killed_readers_are_removed_and_live_ones_kept(tmp_path):
    """A reader of read-only media killed with SIGKILL leaves its snapshot (its exit handler
    never runs); the next reader removes it, not one whose process still runs."""
    from ncsynth.storage.read_only import SNAPSHOT_PREFIX, remove_orphaned_snapshots

    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        killed.kill()
        killed.wait()
        orphan = tmp_path / f"{SNAPSHOT_PREFIX}{killed.pid}-abc"
        live = tmp_path / f"{SNAPSHOT_PREFIX}{reader.pid}-def"
        other = tmp_path / "ncsynth-something-else"
        for path in (orphan, live, other):
            path.mkdir()
            (path / "catalog.db").write_bytes(b"x")
        assert remove_orphaned_snapshots(tmp_path) == [orphan]
        assert not orphan.exists() and live.is_dir() and other.is_dir()
    finally:
        reader.kill()
        reader.wait()


def test_writer_holds_tells_a_live_journal_from_a_dead_or_archived_one(tmp_path):
    """The lock probe the analysis service and recovery rely on: held while a writer (here in
    another process, as the acquiring process is) has the journal open, free once it closed,
    False for a journal archived meanwhile; probing does not take the lock from the writer."""
    import subprocess
    import sys

    from ncsynth.storage.journal import RunJournal, writer_holds

    path = tmp_path / "run.jsonl"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ncsynth.storage.journal import RunJournal; "
         f"j = RunJournal({str(path)!r}); print('open', flush=True); sys.stdin.readline(); j.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        assert writer_holds(path) and writer_holds(path)  # the probe left the writer its lock
    finally:
        writer.communicate("\n", timeout=60)
    assert not writer_holds(path)
    journal = RunJournal(path)
    (tmp_path / "complete").mkdir()
    archived = journal.archive(tmp_path / "complete")
    assert not writer_holds(path) and not writer_holds(archived)


def test_a_runs_stop_asks_the_embedded_catalog_to_close_no_stream(catalog, RE):
    """Nothing can follow the embedded catalog's streams (its Tiled app has no streaming
    cache and no webhooks): the writer skips TiledWriter's DELETE /stream/close per node at
    each stop (13 requests, ~0.3 s, for a dry run's raw run), and the run is stored whole."""
    assert not catalog.streams_watched
    requests = []
    catalog.client.context.http_client.event_hooks["request"].append(
        lambda request: requests.append((request.method, request.url.path)))
    writer = catalog.writer()
    RE.subscribe(writer)
    camera = FrameCamera("cam", catalog.layout.frames / "closing.h5")
    (uid,) = RE(bp.count([det, camera], 5))
    writer.close()
    assert ("PATCH" in {method for method, _ in requests}), requests  # the stop was written
    assert not [path for _, path in requests if "/stream/close" in path]
    run = catalog[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert len(run.primary.read()["det"]) == 5
    np.testing.assert_array_equal(run.primary["cam_image"].read(), [expected_frame(i) for i in range(5)])


def test_the_in_process_client_reads_runs_uncompressed(catalog, RE):
    """Nothing crosses a network between the embedded catalog's client and its app: the app
    sends the run's table and frames as they are (compressing and decompressing them cost a
    notebook's read of a run about a third of its CPU, benchmarks/catalog_reads.py), while it
    still compresses for a client that asks (a remote one), and the values read are the run's."""
    writer = catalog.writer()
    RE.subscribe(writer)
    camera = FrameCamera("cam", catalog.layout.frames / "uncompressed.h5")
    (uid,) = RE(bp.count([det, camera], 5))
    writer.close()
    http = catalog.client.context.http_client
    encodings = []
    http.event_hooks["response"].append(
        lambda response: encodings.append(response.headers.get("content-encoding")))
    run = catalog[uid]
    assert len(run.primary.read()["det"]) == 5
    np.testing.assert_array_equal(run.primary["cam_image"].read(), [expected_frame(i) for i in range(5)])
    assert len(encodings) >= 3 and set(encodings) == {None}, encodings
    asked = http.get(f"/api/v1/search/{uid}/primary", headers={"accept-encoding": "gzip"})
    assert asked.status_code == 200 and asked.headers.get("content-encoding") == "gzip"
