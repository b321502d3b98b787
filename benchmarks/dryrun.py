"""Dry-run benchmark: world/wall speed of the whole ``ncsynth dry-run`` command, and its costs.

    python benchmarks/dryrun.py [--frames N] [--repeats K] [--baseline] [--variants]
                                [--profile] [-- extra dry-run options]

Each variant runs as its own process in a fresh data directory (the catalog's creation is
part of the command) and is measured from outside: wall time, CPU time (user + sys of the
command and every process it started: less noisy than wall on a shared machine), world
seconds of the protocol (the raw run's start to stop, world clock) and world/wall; with
``--repeats K`` (K > 1) also each variant's median and range (single runs on a shared 2-core
machine vary by a few %). Variants:

* ``now``: ``ncsynth dry-run`` as shipped (the catalog's Tiled app and the live analysis each
  in a process of its own, the kinetics stepped over adaptive windows);
* ``--baseline`` adds ``in-process``: the same code with the writer and the analysis kept in
  the dry run's process (``dry_run(processes=())``, the path before), measured in the same
  session; ``--variants`` adds ``analysis-proc`` and ``writer-proc`` (only one of them in a
  process of its own);
* ``--profile`` records the ``now`` variant with py-spy (``pip install py-spy``; GIL samples of
  every process) and prints the top costs per process and category.

Each run also prints how busy each of its processes was (CPU seconds over the run's wall
seconds, from psutil samples every 0.2 s): the process at ~1 core is the one the wall time
waits for (2026-12-07: the dry run's own 0.82-0.84 cores, the catalog writer 0.37-0.38, the
analysis 0.26-0.27; the in-process variant 0.99-1.01: a cheaper writer would save CPU, not this
wall time).

The summaries of all variants are compared: the fits and the simulated flask must be
identical (they are printed as a diff otherwise). Issue 18's goal: >= 300x on the 2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import sys
import ncsynth.dryrun
ncsynth.dryrun.DEFAULT_PROCESSES = {processes!r}
sys.argv = ["ncsynth", *{argv!r}]
from ncsynth.cli import run
run()
"""


#: variants run through ``dry_run(processes=...)`` ("now" is the ``ncsynth dry-run`` command)
VARIANTS = {"in-process": (), "analysis-proc": ("analysis",), "writer-proc": ("writer",)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_variant(name: str, frames: int, extra: list[str], workdir: Path, profile: bool = False):
    """One measured dry run; (summary, wall_s, cpu_s, world_s, profile_path or None)."""
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    argv = ["dry-run", "--json", "--no-progress", "--data-dir", str(root), "--frames", str(frames),
            *extra]
    if name in VARIANTS:  # the same command, with DEFAULT_PROCESSES set first
        command = [sys.executable, "-c", _CHILD.format(processes=VARIANTS[name], argv=argv)]
    else:
        command = [sys.executable, "-m", "ncsynth.cli", *argv]
    raw = None
    if profile:
        raw = workdir / f"{name}.pyspy.txt"
        command = ["py-spy", "record", "--gil", "--subprocesses", "--rate", "50", "--format", "raw",
                   "-o", str(raw), "--", *command]
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    used = _watch_cpu(process)
    stdout, stderr = process.communicate()
    wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        sys.exit(f"{name}: the dry run failed (exit {process.returncode}):\n{stderr[-3000:]}")
    summary = json.loads(lines[-1])
    busy = {role: seconds / wall for role, seconds in used.items()}
    return summary, wall, cpu, world_seconds(root, summary["uid"]), raw, busy


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    return ("catalog writer" if "writer_worker" in text else "analysis" if "analysis_worker" in text
            else "py-spy" if "py-spy" in text else "dry run")


def _watch_cpu(process: subprocess.Popen, period_s: float = 0.2) -> dict[str, float]:
    """CPU seconds of ``process`` and each process it starts, by role, until it ends (the last
    sample of each: a process's last 0.2 s may be missed)."""
    import psutil

    last: dict[int, tuple[str, float]] = {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for member in family:
            try:
                with member.oneshot():
                    times = member.cpu_times()
                    role = last[member.pid][0] if member.pid in last else _role(member.cmdline())
            except psutil.Error:
                continue
            last[member.pid] = (role, times.user + times.system)
        time.sleep(period_s)
    used: dict[str, float] = collections.Counter()
    for role, seconds in last.values():
        used[role] += seconds
    return dict(used)


def world_seconds(root: Path, uid: str) -> float:
    """World seconds of the protocol, from the raw run's journal (no catalog needed): its start
    document (the world clock starts at the wall time it is created, just before) to the last
    reading's timestamp (device timestamps are the world clock's; the documents' own "time" is
    the RunEngine's wall clock)."""
    start, last = None, 0.0
    for line in (root / "journal" / "complete" / f"{uid}.jsonl").read_text().splitlines():
        entry = json.loads(line)
        name, doc = entry["name"], entry["doc"]
        if name == "start":
            start = float(doc["time"])
        elif name == "event":
            last = max([last, *doc["timestamps"].values()])
        elif name == "event_page":
            last = max([last, *(t for times in doc["timestamps"].values() for t in times)])
    return last - start


_CATEGORIES = [
    ("imports", ("_find_and_load",)),
    ("catalog (Tiled app, SQL)", ("starlette", "httpx", "tiled/", "anyio", "sqlalchemy",
                                  "bluesky_tiled_plugins", "aiosqlite", "fastapi", "pydantic")),
    ("analysis: skewed fit", ("analysis/skewed.py",)),
    ("analysis: two populations", ("analysis/bimodal.py", "analysis/frame_model.py")),
    ("analysis: other", ("analysis/",)),
    ("kinetics", ("simulators/kinetics",)),
    ("thermal/world", ("simulators/thermal.py", "simulators/world.py")),
    ("Modbus (pymodbus, minimalmodbus)", ("pymodbus", "minimalmodbus")),
    ("detector", ("detector.py",)),
    ("RunEngine, event-model", ("bluesky/", "event_model")),
    ("ophyd", ("ophyd/",)),
]


def top_costs(raw: Path, limit: int = 12) -> str:
    """GIL seconds per process and category of a py-spy raw profile."""
    per = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        process = ("catalog writer" if "writer_worker" in stack else
                   "analysis" if "analysis_worker" in stack else "dry run")
        category = next((label for label, keys in _CATEGORIES if any(k in stack for k in keys)),
                        "other")
        per[process][category] += n
    out = []
    for process, counts in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(counts.values())
        out.append(f"  {process}: {total / 50:.1f} s holding the GIL")
        for category, n in counts.most_common(limit):
            out.append(f"      {category:34s} {n / 50:6.1f} s  {100 * n / total:4.0f} %")
    return "\n".join(out)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def differences(a: dict, b: dict) -> list[str]:
    skip = {"uid", "wall_s", "data_dir", "figures"}
    fa, fb = _flat(a), _flat(b)
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(set(fa) | set(fb))
            if k.split(".")[-1] not in skip and fa.get(k) != fb.get(k)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=575)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", action="store_true",
                        help="also run the in-process writer and analysis (the path before)")
    parser.add_argument("--variants", action="store_true",
                        help="also run the writer alone and the analysis alone in a process")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of the 'now' variant")
    parser.add_argument("extra", nargs="*", help="further dry-run options (after --)")
    args = parser.parse_args(argv)
    if args.profile and shutil.which("py-spy") is None:
        sys.exit("--profile needs py-spy (pip install py-spy)")
    variants = ((["in-process"] if args.baseline else [])
                + (["analysis-proc", "writer-proc"] if args.variants else []) + ["now"])
    workdir = Path(tempfile.mkdtemp(prefix="ncsynth-bench-dryrun-"))
    print(f"dry run, {args.frames} frames, {os.cpu_count()} cores; each variant "
          f"{args.repeats}x in a fresh data directory")
    print(f"{'variant':12s} {'world s':>9s} {'wall s':>8s} {'CPU s':>8s} {'world/wall':>11s}")
    summaries, profiles, walls = {}, {}, collections.defaultdict(list)
    try:
        for _ in range(args.repeats):
            for name in variants:
                summary, wall, cpu, world, raw, busy = run_variant(
                    name, args.frames, args.extra, workdir, profile=args.profile and name == "now")
                summaries.setdefault(name, summary)
                if raw is not None:
                    profiles[name] = raw
                print(f"{name:12s} {world:9.1f} {wall:8.1f} {cpu:8.1f} {world / wall:10.1f}x   busy "
                      + ", ".join(f"{role} {cores:.2f}" for role, cores in sorted(busy.items())),
                      flush=True)
                walls[name].append((world, wall))
        if args.repeats > 1:  # single runs vary by a few % on a shared machine: the median
            for name, runs in walls.items():
                world, wall = (statistics.median(column) for column in zip(*runs))
                print(f"{name:12s} median of {len(runs)}: {wall:.1f} s wall, {world / wall:.1f}x "
                      f"(range {min(w / t for w, t in runs):.1f}-{max(w / t for w, t in runs):.1f}x)")
        for name in summaries:
            if name == "now":
                continue
            diff = differences(summaries[name], summaries["now"])
            print(f"summaries of '{name}' and 'now' identical (fits, kinetics, simulated flask)"
                  if not diff else f"summaries of '{name}' and 'now' DIFFER:\n  " + "\n  ".join(diff))
        for name, raw in profiles.items():
            print(f"top costs of '{name}' (py-spy --gil, all processes; time under the GIL "
                  f"includes waits for a core on a loaded machine):")
            print(top_costs(raw))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
