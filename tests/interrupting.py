"""Interrupt a command midway, as a terminal's Ctrl-C or hang-up or a service manager does,
and see which of its processes are left."""

import contextlib
import os
import subprocess
import time
from pathlib import Path


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


def live_children(pid: int) -> set[int]:
    """Children of ``pid`` that have not exited (Linux /proc; zombies count as exited)."""
    children = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children.update(int(c) for c in path.read_text().split())
    alive = set()
    for child in children:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.add(child)
    return alive
