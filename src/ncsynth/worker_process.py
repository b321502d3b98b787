"""The pipes of a worker process (the catalog writer's, the live analysis's) that may have died:
how it ended, and closing them without leaving a descriptor open (kernel: imports nothing
from ncsynth)."""

from __future__ import annotations

import signal
import subprocess


def how_it_ended(process: subprocess.Popen, wait_s: float = 1.0) -> str:
    """How a worker process whose pipe just broke ended, for "the ... process {how}": "was
    killed by SIGKILL", "ended with exit 1", or "stopped answering (still running)" if it has
    not ended within ``wait_s`` (its pipe closes as it dies, its exit status comes a moment later)."""
    try:
        code = process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return "stopped answering (still running)"
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit {code}"


def close_quietly(pipe) -> None:
    """Close a pipe to a worker that may have died: a broken pipe's last flush fails, the file
    is closed all the same (no descriptor left open)."""
    try:
        pipe.close()
    except OSError:
        pass
