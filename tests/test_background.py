"""The shared pool of device worker threads (ncsynth.devices.background)."""

import logging
import threading
import time

from ncsynth.devices import background
from ncsynth.devices.background import Timer, WorkerPool


def _run_and_wait(pool, function, name="task"):
    done = threading.Event()

    def task():
        try:
            function()
        finally:
            done.set()

    pool.run(task, name=name)
    assert done.wait(5)
    _wait_for(lambda: pool.idle == pool.size)  # the worker has gone back to the pool


def _wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_sequential_tasks_reuse_one_worker_named_after_each_task():
    pool = WorkerPool()
    names = []
    for k in range(20):
        _run_and_wait(pool, lambda k=k: names.append(threading.current_thread().name), f"job-{k}")
    assert names == [f"job-{k}" for k in range(20)]
    assert pool.size == 1


def test_concurrent_tasks_get_their_own_workers():
    pool = WorkerPool()
    release = threading.Event()
    started = threading.Barrier(4, timeout=5)  # would time out if two tasks shared a thread
    finished = []

    def blocking(k):
        started.wait()
        release.wait(5)
        finished.append(k)

    for k in range(3):
        pool.run(blocking, k, name=f"blocking-{k}")
    started.wait()
    release.set()
    _run_and_wait(pool, lambda: None)  # a fourth task once the three are done or running
    assert pool.size in (3, 4)
    _wait_for(lambda: len(finished) == 3)
    assert sorted(finished) == [0, 1, 2]


def test_a_failing_task_is_logged_and_its_worker_goes_on(caplog):
    pool = WorkerPool()
    with caplog.at_level(logging.ERROR, logger="ncsynth.devices.background"):
        _run_and_wait(pool, lambda: 1 / 0, "doomed")
        ran = []
        _run_and_wait(pool, lambda: ran.append(True))
    assert ran == [True] and pool.size == 1
    assert any("doomed" in r.getMessage() and r.exc_info[0] is ZeroDivisionError
               for r in caplog.records)


def test_a_timer_fires_after_its_interval_on_a_pooled_worker_and_a_cancelled_one_never():
    fired, cancelled = [], []
    timers = [Timer(0.05, lambda k=k: fired.append((k, time.monotonic(),
                                                    threading.current_thread().name)),
                    name=f"timeout-{k}") for k in range(3)]
    spare = Timer(0.05, lambda: cancelled.append(1))
    started = time.monotonic()
    for timer in timers:
        timer.start()
    spare.start()
    spare.cancel()
    _wait_for(lambda: len(fired) == 3)
    time.sleep(0.1)  # the cancelled one's interval is long past
    assert sorted(k for k, _, _ in fired) == [0, 1, 2]
    assert all(at - started >= 0.05 for _, at, _ in fired)
    assert {name for _, _, name in fired} == {"timeout-0", "timeout-1", "timeout-2"}
    assert cancelled == []
    # the shared pool's workers, reused: arming again, with them idle, starts no thread
    _wait_for(lambda: background._pool.idle == background._pool.size)
    workers = background._pool.size
    again = Timer(0.01, lambda: fired.append(("again", 0, threading.current_thread().name)))
    again.start()
    _wait_for(lambda: len(fired) == 4)
    assert background._pool.size == workers
