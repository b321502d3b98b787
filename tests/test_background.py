"""The shared pool of device worker threads (ncsynth.devices.background)."""

import logging
import threading
import time

from ncsynth.devices.background import WorkerPool


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
