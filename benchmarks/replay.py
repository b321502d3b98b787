"""Wall time of ``ncsynth replay RUN`` with one process and with a pool, in the same run.

Replays a stored run twice through the real command (``--processes 1``: all in one process
but the catalog writer's; then ``--processes N``, default one per CPU: the frames' skewed fits
in a process of their own beside the reductions and Gaussian fits,
:mod:`~ncsynth.analysis.replay_pipeline`; from 3, the skewed fits' cold starts in a pool),
prints both wall times, the speed-up and whether the two results (final radius,
concentration, yield, frame counts, kinetics) are identical, then whether every value of
every frame's fit and pattern of both replays' analysis runs equals the live analysis's (the
run's first analysis), and, for scale, the time of ``import ncsynth.runs`` (what any replay
pays before its first frame). Produce a default run
once (``ncsynth dry-run --data-dir DIR``, 575 frames) and hold the heavy lock::

    flock /tmp/ncsynth-heavy.lock python benchmarks/replay.py --data-dir DIR [RUN]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


#: What the two replays must agree on (their analysis runs' uids and figures differ).
RESULTS = ("final_radius_nm", "concentration_molar", "yield_fraction", "frames_analysed",
           "frames_without_fit", "kinetics")


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="1", help="run reference (default: scan 1)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    command = [sys.executable, "-m", "ncsynth.cli", "replay", args.run, "--json", "--data-dir",
               args.data_dir]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"{os.cpu_count()} CPUs")
    imports, _ = timed([sys.executable, "-c", "import ncsynth.runs"])
    one, out_one = timed([*command, "--processes", "1"])
    many, out_many = timed([*command, "--processes", str(args.processes)])
    first, second = (json.loads(out.strip().splitlines()[-1]) for out in (out_one, out_many))
    print(f"import ncsynth.runs                    {imports:7.2f} s")
    print(f"replay, 1 process                      {one:7.2f} s  "
          f"({first['frames_analysed']} frames)")
    print(f"replay, {args.processes} processes                    {many:7.2f} s  "
          f"speed-up {one / many:.2f}x")
    kinetics = first.get("kinetics") or {}
    print("kinetics: " + ", ".join(f"{key} {kinetics.get(key)!r} +- {kinetics.get(error)!r}" for key, error in (
        ("t_concentration_s", "t_concentration_err_s"), ("t_yield_s", "t_yield_err_s"),
        ("nucleation_fraction", "nucleation_fraction_err"))))
    same = all(first.get(key) == second.get(key) for key in RESULTS)
    print(f"results identical ({', '.join(RESULTS)}; radius {first['final_radius_nm']!r}): {same}")
    print(f"every fit and pattern equal to the live analysis's: "
          f"{same_as_live(args.data_dir, [first['analysis_uid'], second['analysis_uid']])}")


def same_as_live(data_dir: str, replayed: list[str]) -> bool:
    """Whether each analysis run in ``replayed`` holds the very fits and patterns (every key,
    every frame, NaN equal to NaN) of its raw run's first analysis run."""
    import numpy as np

    from ncsynth.storage import open_catalog

    with open_catalog(data_dir, read_only=True) as catalog:
        runs = [catalog[uid] for uid in replayed]
        live = catalog.analyses(runs[0]).values()[0]
        for run in runs:
            for stream in ("fits", "patterns"):
                a, b = live[stream].read(), run[stream].read()
                if set(a) != set(b) or not all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]),
                                                              equal_nan=a[k].dtype.kind == "f")
                                               for k in a):
                    return False
    return True


if __name__ == "__main__":
    main()
