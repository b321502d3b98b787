"""Benchmark of the population-balance kinetics (seed 000 §S.6): speed and conservation.

Runs the full 2276 s hot-injection synthesis (last §S.6.6 snapshot) with the default
Table S6.1 set at the §S.6.5 grid (502 cells, the baseline) and on a 4x finer grid,
and prints wall time (best of several runs), internal sub-steps, the material-balance
error and the final observables, then the finer/baseline time ratio.

    python benchmarks/kinetics.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time

from ncsynth.simulators.kinetics import simulate_synthesis

DURATION_S = 2276.0
TARGET_BASELINE_S = 1.0


def timed_run(n_cells: int, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = simulate_synthesis(DURATION_S, n_cells=n_cells, sample_times_s=[DURATION_S])
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per grid (best is kept)")
    args = parser.parse_args()
    rows = {}
    for n_cells in (502, 4 * 502):
        rows[n_cells] = timed_run(n_cells, args.repeats)
        seconds, result = rows[n_cells]
        print(f"{n_cells:5d} cells: wall {seconds:7.3f} s  substeps {result.substeps:5d}  "
              f"material balance error {result.material_balance_error:+.1e}  "
              f"R = {result.mean_radius_nm[-1]:.3f} nm  sigma = {result.std_radius_nm[-1]:.4f} nm  "
              f"c = {result.concentration_molar[-1] * 1e6:.2f} uM  "
              f"yield = {result.yield_fraction[-1]:.4f}")
    baseline = rows[502][0]
    print(f"baseline (502 cells) {'meets' if baseline < TARGET_BASELINE_S else 'MISSES'} "
          f"the {TARGET_BASELINE_S:.0f} s target")
    print(f"ratio 2008/502 cells wall time: {rows[2008][0] / baseline:.2f}x")


if __name__ == "__main__":
    main()
