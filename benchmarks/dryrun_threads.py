"""Where a dry run's CPU goes, thread by thread: the CPU seconds (user + sys) of every thread of
the ``ncsynth dry-run`` process, its children's, and the jumping clock's jumps.

    flock /tmp/ncsynth-heavy.lock python benchmarks/dryrun_threads.py [-- extra dry-run options]

The dry run runs as the command does, in a child process, with a sampler thread that reads
``/proc/self/task/*/stat`` every 0.5 s (Linux) and names each thread by its Python name. It
complements ``benchmarks/dryrun.py --profile``: py-spy's ``--gil`` samples see only the thread
holding the GIL, and numpy, h5py and system calls release it (in one default run: 27 s
"holding the GIL" against 41 s of CPU in the dry run's process).

Prints world/wall, the process's and its children's CPU, the CPU per thread name (digits
folded: ``asyncio_#``), and the clock's jumps and refused quiet windows. The sampler wakes
twice a second: the clock sees that as work and restarts a quiet window (a few ms per second).

``OPENBLAS_NUM_THREADS=1`` is set before anything imports numpy, as ``ncsynth.cli`` does: a
wrapper that imports numpy first gets OpenBLAS threads that spin (measured: 60 s of CPU in four
threads without a Python name, the run twice as long).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dryrun import world_seconds  # noqa: E402

_CHILD = r"""
import collections, json, os, re, resource, sys, threading, time
os.environ["OPENBLAS_NUM_THREADS"] = "1"
from ncsynth.simulators import clock
clocks = []
_init = clock.WorldClock.__init__
def _tracked(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    clocks.append(self)
clock.WorldClock.__init__ = _tracked
seen = {}
def sample():
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        old = seen.get(tid)
        name = names.get(int(tid)) or (old[0] if old else "(no Python name)")
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
def sampler():
    while True:
        sample()
        time.sleep(0.5)
threading.Thread(target=sampler, daemon=True, name="bench-sampler").start()
def report():
    sample()
    per = collections.Counter()
    for name, cpu in seen.values():
        per[re.sub(r"\d+", "#", name)] += cpu
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    jumps = [(c.jumps_made, c.not_quiet, c.forced, c.let_go) for c in clocks if c.jumps]
    print("THREADS " + json.dumps({"threads": per.most_common(),
          "process_cpu_s": own.ru_utime + own.ru_stime, "process_sys_s": own.ru_stime,
          "children_cpu_s": children.ru_utime + children.ru_stime, "jumps": jumps}), flush=True)
_exit = os._exit
def _exit_reporting(code):
    report()
    _exit(code)
os._exit = _exit_reporting
sys.argv = ["ncsynth", *ARGV]
from ncsynth.cli import run
run()
"""


def main(extra: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="ncsynth-bench-threads-"))
    argv = ["dry-run", "--json", "--no-progress", "--data-dir", str(root / "data"), *extra]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD.replace("ARGV", repr(argv))],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    lines = done.stdout.splitlines()
    summary = next((json.loads(line) for line in reversed(lines) if line.startswith("{")), None)
    threads = next((json.loads(line[8:]) for line in lines if line.startswith("THREADS ")), None)
    if done.returncode != 0 or summary is None or threads is None:
        sys.exit(f"the dry run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    world = world_seconds(root / "data", summary["uid"])
    print(f"world {world:.1f} s, wall {wall:.1f} s: {world / wall:.1f}x; final radius "
          f"{summary.get('final_radius_nm')!r} nm")
    print(f"dry run's process {threads['process_cpu_s']:.1f} s CPU ({threads['process_sys_s']:.1f} s "
          f"sys); its children (catalog writer, live analysis) {threads['children_cpu_s']:.1f} s")
    for jumps, refused, forced, let_go in threads["jumps"]:
        print(f"jumping clock: {jumps} jumps, {refused} quiet windows refused (process working), "
              f"{forced} forced after patience_s, {let_go} reached deadlines let go after keep_s")
    print("CPU s per thread of the dry run's process:")
    for name, cpu in threads["threads"]:
        if cpu >= 0.1:
            print(f"  {cpu:7.1f}  {name}")


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a != "--"])
