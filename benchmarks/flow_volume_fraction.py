"""The flow dry run's McSAS volume fractions against the simulated outlet, point by point.

    flock /tmp/ncsynth-heavy.lock python benchmarks/flow_volume_fraction.py [--data-dir DIR]

Runs ``flow_dry_run`` on the default grid (28 points) and prints per point: φ, its 1σ as the
dry run prints it (McSAS's repetitions ⊕ the noise bootstrap, ``ncsynth.analysis.mcsas_noise``)
and its two parts, the outlet's φ of the species McSAS can represent (radius ≥ 0.65 nm) and
of all species, the pull against the 1σ and against the repetitions' spread alone (the ±
printed before the bootstrap), McSAS's final χ²_red and whether it describes the pattern
(``describes_data``: χ² p-value ≥ 1e-3); then, for the points McSAS describes and for those
it says it does not, the largest |pull| and the RMS pull (≈ 1 for an honest 1σ), and the
analysis's wall time.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

import ncsynth.flow_dryrun as flow
from ncsynth.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary one")
    args = parser.parse_args()
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="flow-phi-"))
    summary = flow.flow_dry_run(load_config(hardware="sim", data={"dir": str(root)}),
                                progress=False)
    print(f"{'T_nuc/T_gr °C':>13} {'φ':>11} {'± 1σ':>8} {'± rep':>8} {'± noise':>8} "
          f"{'outlet ≥0.65':>12} {'outlet all':>11} {'rel %':>7} {'pull':>6} {'pull rep':>8} "
          f"{'χ²_red':>6} describes")
    pulls, rep_pulls, offsets, described = [], [], [], []
    for point in summary["points"]:
        saxs = point["saxs"]
        phi, err = saxs["volume_fraction"], saxs["volume_fraction_err"]
        truth = saxs["truth_volume_fraction"]
        rep, noise = saxs["volume_fraction_repetitions_err"], saxs["volume_fraction_noise_err"]
        everything = flow.truth_volume_fraction(point["truth"], 0.0)
        pulls.append((phi - truth) / err)
        rep_pulls.append((phi - truth) / rep)
        offsets.append(100 * (phi / truth - 1))
        described.append(saxs["describes_data"])
        print(f"{point['nucleation_c']:>6.0f}/{point['growth_c']:<6.0f} {phi:11.5e} {err:8.1e} "
              f"{rep:8.1e} {noise:8.1e} {truth:12.5e} {everything:11.5e} {offsets[-1]:+7.3f} "
              f"{pulls[-1]:+6.1f} {rep_pulls[-1]:+8.1f} {saxs['chi2_reduced']:6.2f} "
              f"{'yes' if described[-1] else 'NO'}")
    print(f"φ − outlet: {min(offsets):+.3f} to {max(offsets):+.3f} %")
    for says, label in ((True, "describes"), (False, "does not describe")):
        chosen = np.array([pull for pull, d in zip(pulls, described) if d == says])
        rep_chosen = np.array([pull for pull, d in zip(rep_pulls, described) if d == says])
        if chosen.size:
            print(f"McSAS {label} the pattern: {chosen.size} points; against the 1σ max |pull| "
                  f"{np.abs(chosen).max():.1f}, RMS {math.sqrt(np.mean(chosen ** 2)):.2f}; against "
                  f"the repetitions' spread alone max {np.abs(rep_chosen).max():.1f}, RMS "
                  f"{math.sqrt(np.mean(rep_chosen ** 2)):.2f}")
    print(f"wall {summary['wall_s']:.1f} s (acquisition {summary['acquisition_wall_s']:.1f} s, "
          f"analysis {summary['analysis_wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
