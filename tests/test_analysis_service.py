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
import time
from pathlib import Path

import numpy as np
import pytest

from ncsynth.runs import replay_run
from ncsynth.storage import open_catalog

NCSYNTH = [sys.executable, "-m", "ncsynth.cli"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
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


def _serve(configuration) -> subprocess.Popen:
    """``ncsynth analysis serve`` once it says it is subscribed."""
    process = subprocess.Popen([*NCSYNTH, "analysis", "serve", "--config", str(configuration)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "subscribed" in line, process.stderr.read() if process.poll() is not None else line
    return process


def _dry_run(configuration, frames: int) -> subprocess.Popen:
    return subprocess.Popen([*NCSYNTH, "dry-run", "--config", str(configuration), "--frames", str(frames),
                             "--json", "--no-progress"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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
        summary = _summary(_dry_run(configuration, 20))
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


def test_a_service_killed_mid_run_leaves_acquisition_untouched(configuration):
    """SIGKILL to the service during the run: the dry run goes on, succeeds and keeps every
    frame (the publisher never waits for its subscribers)."""
    service = _serve(configuration)
    acquiring = _dry_run(configuration, 60)
    journals = configuration.parent / "data" / "journal" / "active"
    deadline = time.monotonic() + 300
    while sum(1 for journal in journals.glob("*.jsonl") for _ in journal.open()) < 40:  # under way
        assert time.monotonic() < deadline and acquiring.poll() is None, "the run did not start"
        time.sleep(0.2)
    service.kill()
    service.wait()
    summary = _summary(acquiring)
    assert summary["exit_status"] == "success" and summary["frames"] >= 55
    with open_catalog(configuration.parent / "data") as catalog:
        assert len(catalog[summary["uid"]]["primary"]["saxs_image"].read()) == summary["frames"]
