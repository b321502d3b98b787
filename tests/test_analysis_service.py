"""The live analysis in another process over bluesky's 0MQ pieces, with real processes.

Real components: the ``bluesky-0MQ-proxy`` process, ``ncsynth analysis serve`` processes
(RemoteDispatcher), ``ncsynth dry-run`` processes publishing through bluesky's Publisher
(``[analysis] publish_address`` in their configuration file), the embedded catalog on disk.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ncsynth.analysis_catchup import FollowedRun
from ncsynth.runs import replay_run
from ncsynth.storage.journal import RunJournal
from ncsynth.storage import open_catalog

NCSYNTH = [sys.executable, "-m", "ncsynth.cli"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
#: Longest stop (SIGSTOP) of a dry run while a late service joins, wall s (see :func:`_serve`).
PAUSE_S = 4.0
FIT_COLUMNS = ("radius_nm", "sigma_nm", "concentration_molar", "chi2_reduced", "yield_fraction")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def proxy():
    """A ``bluesky-0MQ-proxy`` process: (its input, its output) as host:port."""
    ports = _free_port(), _free_port()
    process = subprocess.Popen([str(Path(sys.executable).with_name("bluesky-0MQ-proxy")), *map(str, ports)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    for port in ports:  # both sockets bound
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the proxy did not start"
                time.sleep(0.1)
    yield tuple(f"127.0.0.1:{port}" for port in ports)
    process.terminate()
    process.wait(10)


@pytest.fixture
def configuration(tmp_path, proxy):
    """A configuration file: data in tmp_path/data, the analysis published to the proxy."""
    path = tmp_path / "ncsynth.toml"
    path.write_text(f'[data]\ndir = "{tmp_path / "data"}"\n[analysis]\npublish_address = "{proxy[0]}"\n'
                    f'subscribe_address = "{proxy[1]}"\n')
    return path


def _serve(configuration, paused: subprocess.Popen | None = None) -> subprocess.Popen:
    """``ncsynth analysis serve`` once it says it is subscribed. ``paused``: a dry run stopped
    (SIGSTOP) while the service starts and continued (SIGCONT) once it is subscribed or after
    PAUSE_S, whichever comes first, which leaves the run more of its frames to take while the
    service joins. PAUSE_S stays below the detector's 10 s wall-clock wait for a frame's file
    write (a longer stop fails the frame in flight: seen beside two CPU hogs), and a stop that
    caught a catalog write holds the write lock the service's catch-up needs."""
    if paused is not None:
        paused.send_signal(signal.SIGSTOP)
    try:
        process = subprocess.Popen([*NCSYNTH, "analysis", "serve", "--config", str(configuration)], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(PAUSE_S if paused is not None else 300)
    finally:
        if paused is not None:
            paused.send_signal(signal.SIGCONT)
    reader.join(300)
    line = first_line[0] if first_line else ""
    assert "subscribed" in line, process.stderr.read() if process.poll() is not None else line
    return process


def _dry_run(configuration, frames: int, reaction_time_s: float | None = None) -> subprocess.Popen:
    """A dry run of ``frames`` frames (within the reaction's first 5 s for 40 or fewer). The
    default reaction (7200 s) adds 720 heater readings after them, the time a late service has
    to join the run (20 frames: 34.8 s wall, 21.8 s with --reaction-time 60, on the 2-core
    machine beside other jobs); ``reaction_time_s`` shortens it where nothing waits for it."""
    reaction = [] if reaction_time_s is None else ["--reaction-time", str(reaction_time_s)]
    # In a session of its own: the tests stop it (SIGSTOP) for a while, and a process group that
    # loses its last link to the rest of the session while one of its processes is stopped gets
    # SIGHUP from the kernel — the suite as a background job of a script that ends meanwhile
    # (a SIGHUP ended this run once, exit 129, "SIGHUP received: no plan running").
    return subprocess.Popen([*NCSYNTH, "dry-run", "--config", str(configuration), "--frames", str(frames),
                             *reaction, "--json", "--no-progress"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _summary(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _analysis(catalog, uid, timeout_s=180.0):
    """The raw run's complete analysis run, once the service has stored it."""
    deadline = time.monotonic() + timeout_s
    while (derived := catalog.analysis(uid)) is None:
        assert time.monotonic() < deadline, f"no analysis of run {uid[:8]} after {timeout_s} s"
        time.sleep(0.5)
    return derived


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return err


def test_the_service_stores_the_fits_the_analysis_makes_in_process(configuration):
    """A dry run publishing to the proxy analyses nothing itself; the service's analysis run,
    in the catalog and linked to the raw run, holds the fits an in-process analysis of the same
    stored run gives, digit for digit."""
    service = _serve(configuration)
    try:
        summary = _summary(_dry_run(configuration, 20, reaction_time_s=60))
        assert summary["exit_status"] == "success" and summary["frames"] >= 15
        assert summary["analysis_published_to"] == configuration.read_text().split('"')[3]
        assert summary["final_radius_nm"] is None  # not analysed in the acquiring process
        with open_catalog(configuration.parent / "data") as catalog:
            served = _analysis(catalog, summary["uid"])
            assert served.metadata["start"]["raw_uid"] == summary["uid"]
            fits = served["fits"].read()
            here = catalog[replay_run(catalog, summary["uid"])["analysis_uid"]]["fits"].read()
            assert len(fits["time_s"]) == summary["frames"]
            for column in FIT_COLUMNS:
                np.testing.assert_array_equal(np.asarray(fits[column]), np.asarray(here[column]), column)
    finally:
        _stop(service)


def _active_journals(configuration, *, analysis: bool) -> list:
    """Journals of runs being written in the data directory: the analysis runs' (their start
    names a ``raw_uid``) or, with ``analysis`` False, the acquired run's."""
    journals = []
    for journal in (configuration.parent / "data" / "journal" / "active").glob("*.jsonl"):
        with journal.open() as lines:
            start = lines.readline()
        if start and ("raw_uid" in start) == analysis:
            journals.append(journal)
    return journals


def _journaled_events(configuration) -> int:
    """Events in the journal of the raw run being acquired (0 before its start or after its end)."""
    for journal in _active_journals(configuration, analysis=False):
        return sum('"name": "event_page"' in line for line in journal.read_text().splitlines())
    return 0


def _await_while_acquiring(acquiring: subprocess.Popen, reached, what: str):
    """``reached()``'s first true value, polled while the run goes on (at most 300 s)."""
    deadline = time.monotonic() + 300
    while not (result := reached()):
        assert time.monotonic() < deadline and acquiring.poll() is None, what
        time.sleep(0.2)
    return result


def _await_events(configuration, acquiring: subprocess.Popen, count: int) -> None:
    _await_while_acquiring(acquiring, lambda: _journaled_events(configuration) >= count,
                           f"the run did not reach {count} events")


def _await_unfinished_analysis(configuration, acquiring: subprocess.Popen) -> list:
    """The journals of analysis runs being written, once there is one, while the run goes on."""
    return _await_while_acquiring(acquiring, lambda: _active_journals(configuration, analysis=True),
                                  "the service began no analysis run while the run went on")


def _assert_every_frame_analysed_once_as_in_process(catalog, summary) -> None:
    """The raw run has one analysis run, complete, with one fit per frame equal (1e-9) to
    the fits of an in-process analysis of the stored run."""
    uid = summary["uid"]
    served = _analysis(catalog, uid)
    assert len(catalog.analyses(uid)) == 1, [run.metadata.get("stop") for run in catalog.analyses(uid).values()]
    fits = served["fits"].read()
    frame_times = np.asarray(fits["frame_time"])
    assert len(frame_times) == summary["frames"] == len(np.unique(frame_times))
    here = catalog[replay_run(catalog, uid)["analysis_uid"]]["fits"].read()
    for column in ("time_s", "frame_time", *FIT_COLUMNS):
        np.testing.assert_allclose(np.asarray(fits[column]), np.asarray(here[column]), rtol=1e-9, atol=0,
                                   err_msg=column)


def test_a_service_started_after_the_run_began_catches_it_up_from_the_catalog(configuration):
    """The service starts when the run has taken frames: it analyses the run from the run's
    journal in the data directory, then live: every frame once, the in-process fits."""
    acquiring = _dry_run(configuration, 30)
    _await_events(configuration, acquiring, 12)
    service = _serve(configuration, paused=acquiring)
    try:
        summary = _summary(acquiring)
        assert summary["exit_status"] == "success" and summary["frames"] >= 25
        with open_catalog(configuration.parent / "data") as catalog:
            _assert_every_frame_analysed_once_as_in_process(catalog, summary)
    finally:
        err = _stop(service)
    assert f"run {summary['uid'][:8]} began before this service subscribed; catching it up" in err


def test_a_service_killed_mid_run_leaves_acquisition_untouched_and_its_restart_analyses_the_run_once(
        configuration):
    """SIGKILL to the service during the run: the dry run goes on, succeeds and keeps every
    frame (the publisher never waits for its subscribers). A service started again after the
    run's end replaces the unfinished analysis run of the killed one: one analysis run, every
    frame once, the in-process fits. (A restart during the run is the late start above.)"""
    service = _serve(configuration)
    acquiring = _dry_run(configuration, 40, reaction_time_s=60)  # stopped at the 30th event for the kill
    _await_events(configuration, acquiring, 30)
    # the service has begun its analysis run: beside three CPU-bound processes it was once
    # still short of the run's first frame when the acquisition took its 30th
    unfinished = _await_unfinished_analysis(configuration, acquiring)
    acquiring.send_signal(signal.SIGSTOP)  # the kill lands mid-run, however loaded the machine
    try:
        service.kill()
        service.wait()
    finally:
        acquiring.send_signal(signal.SIGCONT)
    assert len(unfinished) == 1 and unfinished[0].exists(), "the killed service left no unfinished analysis run"
    summary = _summary(acquiring)
    assert summary["exit_status"] == "success" and summary["frames"] >= 35
    with open_catalog(configuration.parent / "data") as catalog:
        assert len(catalog[summary["uid"]]["primary"]["saxs_image"].read()) == summary["frames"]
    restarted = _serve(configuration)
    try:
        with open_catalog(configuration.parent / "data") as catalog:
            _assert_every_frame_analysed_once_as_in_process(catalog, summary)
            assert unfinished[0].stem not in catalog.client  # replaced, not left beside the new one
        assert not unfinished[0].exists()  # Catalog.recover will not complete it half-way
    finally:
        _stop(restarted)


def test_a_followed_run_feeds_the_journal_and_the_live_documents_once_in_order(tmp_path):
    """A run's journal being written (real RunJournal on disk) and the published documents,
    overlapping both ways: each document reaches the analysis once, in emission order; a line
    still being written waits for its end."""
    from event_model import compose_run, pack_event_page

    run = compose_run()
    descriptor = run.compose_descriptor(name="primary", data_keys={"x": {"dtype": "number", "shape": [],
                                                                         "source": "test"}})
    events = [descriptor.compose_event(data={"x": i}, timestamps={"x": i}, seq_num=i + 1) for i in range(4)]
    stop = run.compose_stop()
    emitted = [("start", run.start_doc), ("descriptor", descriptor.descriptor_doc),
               *[("event", event) for event in events], ("stop", stop)]
    fed = []
    path = tmp_path / f"{run.start_doc['uid']}.jsonl"
    with RunJournal(path) as journal:
        for name, doc in emitted[:3]:
            journal(name if name != "event" else "event_page", doc if name != "event" else pack_event_page(doc))
        followed = FollowedRun(path, lambda name, doc: fed.append((name, doc)))
        followed.top_up(emitted[3])  # the journal holds start, descriptor, event 0; event 1 is live only
        journal("event_page", pack_event_page(events[1]))  # the journal catches up: not fed again
        journal("event_page", pack_event_page(events[2]))
        line = json.dumps({"name": "event_page", "doc": pack_event_page(events[3])}) + "\n"
        with open(path, "a") as file:  # event 3, half written
            file.write(line[:40])
        followed.top_up(None)
        assert len(fed) == 5  # events 0-2: not the half-written line
        with open(path, "a") as file:
            file.write(line[40:])
        journal("stop", stop)
        followed.top_up(emitted[-1])  # the stop, journaled and live
    assert [name for name, _ in fed] == ["start", "descriptor", "event_page", "event", "event_page",
                                        "event_page", "stop"]
    assert [doc["seq_num"] if name == "event" else doc["seq_num"][0] for name, doc in fed[2:6]] == [1, 2, 3, 4]
    assert followed.stopped and followed.documents == len(emitted)


def test_a_session_with_publish_address_publishes_and_the_service_analyses_its_run(configuration, proxy):
    """The interactive session (in this process, simulated beamline, jumping clock) with
    ``[analysis] publish_address`` analyses nothing itself: its documents reach the service,
    whose analysis run of the session's run holds the in-process fits."""
    from ncsynth.config import load_config
    from ncsynth.plans import Recipe
    from ncsynth.session import session_banner, session_namespace

    config = load_config(hardware="sim")
    config["data"]["dir"] = str(configuration.parent / "data")
    config["catalog"]["server_url"] = ""
    config["analysis"]["publish_address"] = proxy[0]
    service = _serve(configuration)
    try:
        ns = session_namespace(config, sim=True, speed=0, live_plots=False)
        try:
            assert f"live analysis: published to {proxy[0]}" in session_banner(ns)
            recipe = Recipe(operator="t", sample="published", reaction_time_s=8,
                            cd_initial_molar=round(ns["sim"].cd_initial_molar(), 6))
            (uid,) = ns["RE"](ns["hot_injection"](ns["heater"], ns["injector"], ns["detector"], recipe,
                                                  n_background=2, timer=ns["timer"],
                                                  schedule_s=[0.5 * i for i in range(1, 13)]))
            frames = len(ns["cat"][uid]["primary"]["saxs_image"].read())
            assert frames == 12
        finally:
            ns["close"]()
        with open_catalog(configuration.parent / "data") as catalog:
            # one analysis run (the session made none of its own), the in-process fits
            _assert_every_frame_analysed_once_as_in_process(catalog, {"uid": uid, "frames": frames})
    finally:
        _stop(service)
