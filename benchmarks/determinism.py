"""Two full dry runs with the same seed, the second beside two CPU hogs, give identical fits
(issue 15: the jumping world clock moves on what it observes of the process, not on how fast
the machine is).

Each ``ncsynth dry-run --json --seed S`` runs as a process of its own in a fresh data directory
(the shipped command: writer and analysis in processes of their own); during the second, two
``python -c 'while 1: pass'`` processes keep both cores busy. Compared: every numeric column
of the analysis run's ``fits`` table (relative 1e-9, NaN equal to NaN), the frames' world start
times (s after the first, exactly), the heater readings of the primary stream (exactly) and
the summary's numbers (relative 1e-9). Prints the largest relative difference per column, the
wall time of each run and exits 1 on a difference.

    OPENBLAS_NUM_THREADS=1 python benchmarks/determinism.py [--seed 7] [-- extra dry-run options]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ncsynth.storage import open_catalog

HOG = [sys.executable, "-c", "while 1: pass"]
RTOL = 1e-9
#: Fit columns in epoch seconds: a jumping world clock starts at the wall time of its creation,
#: so these are compared as times after the run's first frame.
EPOCH_COLUMNS = ("frame_time",)


def dry_run(root: Path, seed: int, extra: list[str]) -> tuple[dict, float]:
    """One ``ncsynth dry-run`` process; its JSON summary and wall time (s)."""
    command = [sys.executable, "-m", "ncsynth.cli", "dry-run", "--json", "--no-progress",
               "--data-dir", str(root), "--seed", str(seed), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"the dry run in {root} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1]), wall


def stored(root: Path, uid: str) -> dict[str, np.ndarray]:
    """The run's numeric fit columns, frame start times and heater readings; times in epoch
    seconds (the frames', :data:`EPOCH_COLUMNS`) as seconds after the run's first frame."""
    with open_catalog(root) as catalog:
        primary = catalog[uid]["primary"]
        frame_times = np.asarray(primary["saxs_frame_time"].read(), dtype=float)
        columns = {"frame_time_s": frame_times - frame_times[0],
                   "heater_temperature": np.asarray(primary["heater_temperature"].read(), dtype=float)}
        fits = catalog.analysis(uid)["fits"].read()
        for key in fits:
            values = np.asarray(fits[key])
            if values.dtype.kind in "fiub":
                columns[f"fits.{key}"] = values.astype(float) - (frame_times[0] if key in EPOCH_COLUMNS else 0)
    return columns


def largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference of two arrays (inf if shapes or NaN positions differ)."""
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    finite = ~np.isnan(a)
    if not finite.any():
        return 0.0
    a, b = a[finite], b[finite]
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), np.finfo(float).tiny)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("extra", nargs="*", help="further dry-run options (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ncsynth-determinism-") as tmp:
        quiet, quiet_wall = dry_run(Path(tmp) / "quiet", args.seed, args.extra)
        hogs = [subprocess.Popen(HOG) for _ in range(2)]
        try:
            loaded, loaded_wall = dry_run(Path(tmp) / "loaded", args.seed, args.extra)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        a, b = stored(Path(tmp) / "quiet", quiet["uid"]), stored(Path(tmp) / "loaded", loaded["uid"])
    print(f"seed {args.seed}: quiet run {quiet_wall:.1f} s wall, beside two CPU hogs "
          f"{loaded_wall:.1f} s wall; frames {quiet.get('frames')} / {loaded.get('frames')}, "
          f"analysed {quiet.get('frames_analysed')} / {loaded.get('frames_analysed')}")
    failed = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            failed.append(f"{key}: only in one run")
            continue
        exact = not key.startswith("fits.")
        diff = 0.0 if np.array_equal(a[key], b[key], equal_nan=True) else largest_difference(a[key], b[key])
        print(f"  {key:<40} n={a[key].size:<5} max relative difference {diff:.3g}")
        if diff > (0 if exact else RTOL):
            failed.append(f"{key}: {diff:.3g}")
    for key, value in quiet.items():  # the summary's numbers but its wall-clock ones
        if isinstance(value, float) and isinstance(loaded.get(key), float) and "wall" not in key:
            diff = largest_difference(np.array([value]), np.array([loaded[key]]))
            if diff > RTOL:
                failed.append(f"summary {key}: {value!r} vs {loaded[key]!r}")
    print("identical (fits to 1e-9, frame times and heater readings exactly)" if not failed
          else "DIFFERENT: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
