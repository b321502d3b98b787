"""Interrupt a command midway, as a terminal's Ctrl-C or hang-up or a service manager does."""

import os
import subprocess
import time


def journaled_events(proc, data_dir, at_least=30, timeout_s=240.0) -> int:
    """Events a running command (``proc``) has journaled in ``data_dir``, once there are
    ``at_least`` (or the process ended, or ``timeout_s`` passed)."""
    journals = data_dir / "journal" / "active"
    deadline = time.monotonic() + timeout_s
    events = 0
    while time.monotonic() < deadline and events < at_least and proc.poll() is None:
        time.sleep(0.1)
        for journal in journals.glob("*.jsonl") if journals.exists() else []:
            events = journal.read_text().count('"event')
    return events


def signalled_midway(argv, data_dir, sig, *, after_events: int, env) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``argv`` sent ``sig`` to its whole process group once it
    has journaled ``after_events`` events in ``data_dir``."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert journaled_events(proc, data_dir, at_least=after_events) >= after_events, \
            "the command did not get far enough to be interrupted"
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err
