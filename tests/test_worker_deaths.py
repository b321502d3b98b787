"""A worker process that dies is named with how it ended (its exit status, read from the
process), not "exit None" read before the kernel had it: the live analysis's process here, the
catalog writer's in test_dry_run (a real dry run whose writer is killed)."""

import os
import signal
import subprocess
import sys

import pytest

from ncsynth.analysis_worker import AnalysisProcess
from ncsynth.storage.writer_worker import CatalogWorkerError, WorkerLink
from ncsynth.worker_process import how_it_ended


def test_how_it_ended_reads_the_signal_the_exit_code_or_a_process_still_running():
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    assert how_it_ended(killed) == "was killed by SIGKILL"
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert how_it_ended(failed, wait_s=30) == "ended with exit 3"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert how_it_ended(running, wait_s=0.1) == "stopped answering (still running)"
    finally:
        running.kill()
        running.wait()


def test_a_live_analysis_process_killed_says_so_in_the_summary(tmp_path):
    """SIGKILL to the analysis's own process (the OOM killer's signal): its subscriber says how
    it ended, in its error and in the summary a dry run prints (before: "the analysis process
    ended (exit None)")."""
    analysis = AnalysisProcess(lambda name, doc: None, tmp_path)
    try:
        os.kill(analysis._process.pid, signal.SIGKILL)
        assert not analysis.flush(timeout_s=60)  # its replies ended: nothing more is analysed
        assert analysis.error == "the analysis process was killed by SIGKILL"
        assert analysis.summary()["analysis_error"] == analysis.error
    finally:
        analysis.close(timeout_s=10)
    # its pipes are closed (they were left open: ResourceWarnings in a later test of a worker)
    assert analysis._process.stdin.closed and analysis._process.stdout.closed


def test_a_catalog_writer_process_killed_is_named_and_its_pipes_closed(tmp_path):
    """The catalog writer's worker killed: a request says how it ended; close() leaves no pipe
    open (stdin stayed open when the last 'close' could not be written)."""
    link = WorkerLink(tmp_path)
    os.kill(link._process.pid, signal.SIGKILL)
    with pytest.raises(CatalogWorkerError, match="the catalog worker process was killed by SIGKILL"):
        link.request("flush")
    link.close(timeout_s=10)
    assert link._process.stdin.closed and link._process.stdout.closed
