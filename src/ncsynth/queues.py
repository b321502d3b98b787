"""Small helpers for the bounded queues between the RunEngine and its worker threads."""

from __future__ import annotations

import queue
import time


def wait_drained(q: queue.Queue, timeout_s: float | None = None) -> bool:
    """Wait until every item put on ``q`` so far is processed (``task_done``); False on timeout."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with q.all_tasks_done:
        while q.unfinished_tasks:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            q.all_tasks_done.wait(remaining)
    return True
