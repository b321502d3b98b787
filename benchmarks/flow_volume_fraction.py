"""The flow dry run's McSAS volume fractions against the simulated outlet, point by point.

    flock /tmp/ncsynth-heavy.lock python benchmarks/flow_volume_fraction.py [--bootstrap K]
                                                                            [--data-dir DIR]

Runs ``flow_dry_run`` on the default grid (28 points) and, beside each point's McSAS fit as the
dry run makes it (``MCSAS_OPTIONS``), refits K parametric-bootstrap patterns (the fit's model
plus Gaussian noise of the pattern's σ) to see what the data's noise does to φ. Prints per
point: φ, the printed ± (spread of McSAS's repetitions), the bootstrap spread, the outlet's φ
of the species McSAS can represent (radius ≥ 0.65 nm) and of all species, the pull against
the printed ± and against both in quadrature, McSAS's final χ²_red and whether it describes
the pattern (``describes_data``: χ² p-value ≥ 1e-3); then the extremes, and the largest pull
of the points McSAS describes and of those it says it does not.
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
    parser.add_argument("--bootstrap", type=int, default=8, help="refits per point (default 8)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary one")
    args = parser.parse_args()
    spreads: list[float] = []
    fit_mcsas = flow.fit_mcsas

    def with_bootstrap(q, intensity, sigma, radius_range_nm, seed=None, **options):
        """The dry run's own McSAS fit, then the bootstrap refits of its model beside it."""
        fit = fit_mcsas(q, intensity, sigma, radius_range_nm, seed=seed, **options)
        rng = np.random.default_rng(1)
        phis = [fit_mcsas(q, fit.model_cm + sigma * rng.standard_normal(q.size), sigma,
                          radius_range_nm, seed=100 + k, **options).volume_fraction
                for k in range(args.bootstrap)]
        spreads.append(float(np.std(phis, ddof=1)) if len(phis) > 1 else math.nan)
        return fit

    flow.fit_mcsas = with_bootstrap
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="flow-phi-"))
    summary = flow.flow_dry_run(load_config(hardware="sim", data={"dir": str(root)}), progress=False)
    print(f"{'T_nuc/T_gr °C':>13} {'φ':>11} {'± rep':>8} {'± boot':>8} {'outlet ≥0.65':>12} "
          f"{'outlet all':>11} {'rel %':>7} {'pull':>6} {'pull⊕':>6} {'χ²_red':>6} describes")
    pulls, combined, offsets, described = [], [], [], []
    for point, boot in zip(summary["points"], spreads):
        saxs = point["saxs"]
        phi, rep, truth = saxs["volume_fraction"], saxs["volume_fraction_err"], saxs["truth_volume_fraction"]
        everything = flow.truth_volume_fraction(point["truth"], 0.0)
        pulls.append((phi - truth) / rep)
        combined.append((phi - truth) / math.hypot(rep, boot))
        offsets.append(100 * (phi / truth - 1))
        described.append(saxs["describes_data"])
        print(f"{point['nucleation_c']:>6.0f}/{point['growth_c']:<6.0f} {phi:11.5e} {rep:8.1e} {boot:8.1e} "
              f"{truth:12.5e} {everything:11.5e} {offsets[-1]:+7.3f} {pulls[-1]:+6.1f} "
              f"{combined[-1]:+6.1f} {saxs['chi2_reduced']:6.2f} {'yes' if described[-1] else 'NO'}")
    print(f"φ − outlet: {min(offsets):+.3f} to {max(offsets):+.3f} %; max |pull| {np.abs(pulls).max():.1f} "
          f"against the printed ±, {np.abs(combined).max():.1f} with the bootstrap spread beside it")
    for says, label in ((True, "describes"), (False, "does not describe")):
        chosen = [abs(pull) for pull, d in zip(pulls, described) if d == says]
        print(f"McSAS {label} the pattern: {len(chosen)} points, max |pull| "
              f"{max(chosen) if chosen else math.nan:.1f} against the printed ±")


if __name__ == "__main__":
    main()
