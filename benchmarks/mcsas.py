"""Seconds per McSAS fit: ncsynth.analysis.mcsas.fit_mcsas against a naive sequential McSAS.

Pattern: two CdSe sphere populations (R = 1.0 ± 0.08 nm, φ = 3e-5; R = 2.5 ± 0.2 nm, φ = 5e-5)
plus 0.05 cm⁻¹ background on 150 log-spaced q = 0.1–5 nm⁻¹, Poisson noise with 1e5 counts in the
brightest bin.  Fit: 300 contributions, 10 repetitions, target χ²_red = 1, radii 0.7–4 nm.

* ours: incremental running sum, batched proposals, closed-form 2-parameter NNLS;
* baseline ("naive"): the same McSAS loop one proposal at a time, re-summing all contributions'
  V·F² rows (n_contributions × n_q) and calling scipy.optimize.nnls for (scale, background) at
  every proposal, run for a fixed number of proposals from the same start.

Two noise realisations: in the first the noise-free truth itself has χ²_red ≈ 1.14, so the
target 1 is out of reach and every repetition runs its 100 000 proposals (the worst case); in the
second it converges.  Prints per pattern the full-fit wall time, proposals and χ²_red per
repetition, µs per proposal, the mode statistics, and the baseline's time for the proposals our
fit used (its measured µs/proposal × our proposal count) with the ratio.
Run: ``python benchmarks/mcsas.py [baseline_proposals]``.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
from scipy.optimize import nnls

from ncsynth.analysis.mcsas import fit_mcsas, sphere_rows
from ncsynth.analysis.scattering import molar_to_per_cm3, sphere_intensity

Q_NM = np.geomspace(0.1, 5.0, 150)
RADIUS_RANGE_NM = (0.7, 4.0)
MODES = ((1.0, 0.08, 3e-5), (2.5, 0.2, 5e-5))  # (R nm, σ nm, φ)


def pattern(rng, peak_counts=1e5):
    """(noisy intensity, sigma, noise-free intensity) in cm⁻¹ of the bimodal pattern."""
    intensity = 0.05
    for radius, sigma, phi in MODES:
        mean_volume_cm3 = 4 / 3 * math.pi * (radius**3 + 3 * radius * sigma**2) * 1e-21
        concentration = float(phi / mean_volume_cm3 / molar_to_per_cm3(1))
        intensity = intensity + sphere_intensity(Q_NM, radius, sigma, concentration)
    counts_per_cm = peak_counts / intensity.max()
    sigma_cm = np.sqrt(intensity * counts_per_cm) / counts_per_cm
    return rng.poisson(intensity * counts_per_cm) / counts_per_cm, sigma_cm, intensity


def naive_mcsas(y, s, n_contributions, proposals, rng):
    """Sequential McSAS with a full re-sum and scipy NNLS per proposal; returns (seconds, χ²_red)."""
    lo, hi = RADIUS_RANGE_NM
    radii = rng.uniform(lo, hi, n_contributions)
    rows = sphere_rows(Q_NM, radii)
    design = np.empty((Q_NM.size, 2))
    design[:, 1] = 1.0 / s
    yw = y / s

    def chi2_of(rows):
        design[:, 0] = rows.sum(axis=0) / s
        return nnls(design, yw)[1] ** 2

    chi2 = chi2_of(rows)
    start = time.perf_counter()
    for _ in range(proposals):
        j = rng.integers(n_contributions)
        trial = rows.copy()
        trial[j] = sphere_rows(Q_NM, [rng.uniform(lo, hi)])[0]
        trial_chi2 = chi2_of(trial)
        if trial_chi2 < chi2:
            rows, chi2 = trial, trial_chi2
    return time.perf_counter() - start, chi2 / (Q_NM.size - 2)


def main(baseline_proposals=3000):
    print(f"{Q_NM.size} q points {Q_NM[0]}–{Q_NM[-1]} nm^-1, radii {RADIUS_RANGE_NM} nm; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    patterns = [pattern(np.random.default_rng(seed)) for seed in (0, 1)]

    y, s, _ = patterns[0]
    base_s, base_chi2 = naive_mcsas(y, s, 300, baseline_proposals, np.random.default_rng(1))
    base_us = base_s / baseline_proposals * 1e6
    print(f"baseline (naive sequential McSAS: full re-sum + scipy nnls per proposal), {baseline_proposals} "
          f"proposals: {base_s:.3f} s, {base_us:.1f} µs/proposal, chi2_red reached {base_chi2:.3f}")

    for number, (y, s, truth) in enumerate(patterns):
        truth_chi2 = np.sum(((y - truth) / s) ** 2) / (Q_NM.size - 2)
        start = time.perf_counter()
        result = fit_mcsas(Q_NM, y, s, RADIUS_RANGE_NM, n_contributions=300, repetitions=10, seed=1)
        ours_s = time.perf_counter() - start
        proposals = int(result.iterations.sum())
        iterations, chi2 = result.iterations, result.chi2_reduced
        print(f"pattern {number} (chi2_red of the noise-free truth {truth_chi2:.3f}); ours: fit_mcsas, "
              "300 contributions, 10 repetitions, target chi2_red 1, max 100000 proposals")
        print(f"  wall time {ours_s:.3f} s; proposals per repetition {iterations.min()}–{iterations.max()}; "
              f"chi2_red {chi2.min():.3f}–{chi2.max():.3f}; {ours_s / proposals * 1e6:.2f} µs/proposal")
        for radius, sigma, phi in MODES:
            mode = result.moments(radius - 5 * sigma, radius + 5 * sigma)
            print(f"  mode R={radius} nm: volume-weighted mean {mode.volume_mean_nm:.3f} ± "
                  f"{mode.volume_mean_err_nm:.3f} nm, phi {mode.volume_fraction:.3e} ± "
                  f"{mode.volume_fraction_err:.1e} (true {phi:.1e})")
        base_total_s = base_us * proposals * 1e-6
        print(f"  baseline for the same {proposals} proposals (its µs/proposal × count): {base_total_s:.2f} s; "
              f"ratio baseline/ours {base_total_s / ours_s:.1f}x")

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
