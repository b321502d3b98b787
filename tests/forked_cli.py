"""``ncsynth`` commands as real processes of their own, forked from a process that imported the
command line's heavy libraries once (issue 18).

Each command of a test that starts ``python -m ncsynth.cli`` pays its imports (Tiled's server
app and client, bluesky-tiled-plugins, pyFAI, matplotlib): 5.5 s of the 6-10 s of CPU an
``export``, ``report``, ``validate`` or ``replay`` of a 20-frame run takes on the 2-core
machine. Here a helper process imports them once (per pytest process) and forks a child per
command: the child is a process of its own (memory, file descriptors, exit status, a crash is
its own), runs the console script's :func:`ncsynth.cli.run` with the command's arguments and
environment, its standard output and error in files the caller reads after it ended, its
standard input /dev/null, and ends through the interpreter's exit as the script does.

Before the first fork the helper also opens and closes a throwaway embedded catalog: the
modules Tiled imports only when it builds its in-process app, and the API routers every app of
a process shares (:mod:`ncsynth.storage.shared_router`), are then made once, not in each
command (~0.7 of the ~1 CPU-s a catalog's first opening takes here). Closed, it leaves no
thread running to be copied into the children.

What it cannot show is what importing prints: the test of a quiet command's stderr
(test_quiet_commands) and of a command's start-up time keep ``python -m ncsynth.cli``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading

#: The helper process: imports, then one JSON request a line on stdin (args, env, cwd, output
#: files); answers {"pid": ...} once the child is forked and {"status": ...} once it ended.
_HELPER = r"""
import json, os, sys
import bluesky_tiled_plugins.exporters, h5py, hdf5plugin, matplotlib.pyplot
import tiled.catalog, tiled.client, tiled.server.app
import ncsynth.cli, ncsynth.runs, ncsynth.storage.catalog
import contextlib, io, tempfile, threading, warnings
with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings(), \
        contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore")
    with ncsynth.storage.catalog.open_catalog(os.path.join(scratch, "data")) as catalog:
        catalog.client
assert threading.active_count() == 1, "a thread left running would be copied half into each fork"
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        for fd, path, flags in [(0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)]:
            os.dup2(os.open(path, flags), fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [ncsynth.cli.__file__, *request["args"]]
        ncsynth.cli.run()
        sys.exit(0)
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"status": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
"""

_lock = threading.Lock()
_helper: tuple[subprocess.Popen, queue.Queue] | None = None


def _started(env: dict) -> tuple[subprocess.Popen, queue.Queue]:
    """The helper process and the queue of its answers (a thread reads them as they come)."""
    global _helper
    if _helper is None or _helper[0].poll() is not None:
        process = subprocess.Popen([sys.executable, "-c", _HELPER], env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        answers: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [answers.put(json.loads(line)) for line in process.stdout],
                         daemon=True).start()
        assert answers.get(timeout=300) == {"ready": True}, "the command helper did not start"
        atexit.register(_stop, process)
        _helper = process, answers
    return _helper


def _stop(process: subprocess.Popen) -> None:
    """End the helper (its loop ends with its input) and wait for it: its CPU time, and its
    commands', is then counted in this process's children's."""
    process.stdin.close()
    process.wait(60)


def ncsynth(args, *, env: dict, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m ncsynth.cli *args`` with ``env``, as a forked process (see the module's
    docstring): its exit status, stdout and stderr (text) as :func:`subprocess.run` gives
    them; :class:`subprocess.TimeoutExpired` (the command killed) after ``timeout`` s."""
    args = [str(arg) for arg in args]
    with _lock, tempfile.TemporaryDirectory(prefix="ncsynth-cli-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for path in (out, err):
            open(path, "w").close()
        process, answers = _started(env)
        process.stdin.write(json.dumps({"args": args, "env": env, "cwd": os.getcwd(),
                                        "stdout": out, "stderr": err}) + "\n")
        process.stdin.flush()
        pid = answers.get(timeout=60)["pid"]
        try:
            status = answers.get(timeout=timeout)["status"]
        except queue.Empty:
            os.kill(pid, signal.SIGKILL)
            answers.get(timeout=60)
            raise subprocess.TimeoutExpired(["ncsynth", *args], timeout) from None
        with open(out) as stdout, open(err) as stderr:
            return subprocess.CompletedProcess(["ncsynth", *args], status, stdout.read(), stderr.read())
