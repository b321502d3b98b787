"""Errors told in one line (kernel: imports nothing from ncsynth)."""

from __future__ import annotations

import signal
import subprocess


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name if it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def how_it_ended(process: subprocess.Popen, wait_s: float = 1.0) -> str:
    """How a worker process whose pipe just broke ended, for "the ... process {how}": "was
    killed by SIGKILL", "ended with exit 1", or "stopped answering (still running)" if it has
    not ended within ``wait_s`` (its pipe closes as it dies, its exit status comes a moment later)."""
    try:
        code = process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return "stopped answering (still running)"
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit {code}"


class RefusedToStart(RuntimeError):
    """A plan refused to start because the set-up is not ready (a spent piston, ...): said in
    one line, before anything moved. The session prints it without a traceback."""
