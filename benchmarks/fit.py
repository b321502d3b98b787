"""Milliseconds per SAXS fit: ncsynth.analysis.saxs.fit_pattern vs scipy least_squares + sasmodels.

A growing-nanocrystal series of 500-point Poisson-noisy patterns (q = 0.1–5 nm⁻¹) is fitted frame
by frame, each fit warm-started from the previous frame's result, by

* ours: variable projection over (R0, σ), tabulated form factors, analytic Jacobian;
* baseline: scipy.optimize.least_squares over (R0, σ, c, b) with the sasmodels ``sphere`` kernel
  (Gaussian polydispersity, cutoff 0) as the model and a 2-point numerical Jacobian.

Prints median and p90 ms/fit, the speed ratio, cold-start ms/fit, and how far the two fits'
radii are apart in units of our standard error.  Run: ``python benchmarks/fit.py [n_frames]``.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
from sasmodels.core import load_model
from sasmodels.direct_model import call_kernel
from scipy.optimize import least_squares

from ncsynth.analysis.saxs import fit_pattern
from ncsynth.analysis.scattering import SLD_CDSE_PER_A2, SLD_REACTION_MIXTURE_PER_A2, molar_to_per_cm3, sphere_intensity

Q_NM = np.geomspace(0.1, 5.0, 500)


def growth_series(n_frames, rng):
    """(truth, intensity, sigma) per frame: R 1.5→2.6 nm, σ/R 12→7 %, c 1→2.4e-5 M, b 0.05 cm⁻¹."""
    frames = []
    for s in np.linspace(0.0, 1.0, n_frames):
        radius, relative, concentration = 1.5 + 1.1 * s, 0.12 - 0.05 * s, 1e-5 + 1.4e-5 * s
        intensity = sphere_intensity(Q_NM, radius, relative * radius, concentration, 0.05)
        counts_per_cm = 2e4 / intensity.max()
        counts = rng.poisson(intensity * counts_per_cm)
        frames.append(((radius, relative * radius), counts / counts_per_cm,
                       np.sqrt(np.maximum(counts, 1)) / counts_per_cm))
    return frames


class SasmodelsBaseline:
    """least_squares on (R0 nm, σ nm, c µM, b cm⁻¹) with the sasmodels sphere as the model."""

    def __init__(self, pd_n, pd_nsigma):
        self.kernel = load_model("sphere", dtype="double").make_kernel([Q_NM / 10.0])
        self.pd_n, self.pd_nsigma = pd_n, pd_nsigma

    def model(self, p):
        radius, sigma, concentration_um, background = p
        relative = sigma / radius
        radii = radius + np.linspace(-self.pd_nsigma, self.pd_nsigma, self.pd_n) * sigma
        radii = radii[radii >= 0]
        weights = np.exp(-0.5 * ((radii - radius) / sigma) ** 2)
        mean_volume_cm3 = 4 / 3 * np.pi * (weights @ radii**3) / weights.sum() * 1e-21
        phi = molar_to_per_cm3(concentration_um * 1e-6) * mean_volume_cm3
        pars = dict(radius=radius * 10, radius_pd=relative, radius_pd_n=self.pd_n,
                    radius_pd_nsigma=self.pd_nsigma, sld=SLD_CDSE_PER_A2 * 1e6,
                    sld_solvent=SLD_REACTION_MIXTURE_PER_A2 * 1e6, scale=phi, background=background)
        return call_kernel(self.kernel, pars)

    def fit(self, y, s, start):
        result = least_squares(lambda p: (self.model(p) - y) / s, start, jac="2-point", x_scale="jac",
                               bounds=([0.1, 1e-3, 0, -np.inf], [60, 30, np.inf, np.inf]))
        return result.x


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1e3


def summary(label, ms):
    ms = np.asarray(ms)
    print(f"  {label:<44} median {np.median(ms):8.3f} ms   p90 {np.percentile(ms, 90):8.3f} ms   (n={ms.size})")
    return np.median(ms)


def main(n_frames=60):
    frames = growth_series(n_frames, np.random.default_rng(0))
    print(f"{n_frames} frames of {Q_NM.size} points, q = {Q_NM[0]}–{Q_NM[-1]} nm^-1; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (p90 is sensitive to it)")

    _, first_ms = timed(fit_pattern, Q_NM, frames[0][1], frames[0][2])
    ours, ours_ms, cold_ms = [], [], []
    previous = None
    for _, y, s in frames:
        fit, ms = timed(fit_pattern, Q_NM, y, s, guess=previous)
        (ours_ms if previous is not None else cold_ms).append(ms)
        ours.append(fit)
        previous = fit
    assert all(fit.success for fit in ours), [fit.reason for fit in ours if not fit.success]
    for _, y, s in frames:
        cold_ms.append(timed(fit_pattern, Q_NM, y, s)[1])

    print("ours (ncsynth.analysis.saxs.fit_pattern)")
    print(f"  first call on a new q array (builds tables)  {first_ms:8.1f} ms")
    ours_median = summary("warm start from previous frame", ours_ms)
    summary("cold start (scan + LM)", cold_ms)

    for pd_n, pd_nsigma, label in ((80, 5, "accuracy-matched: pd_n=80, ±5σ"), (35, 3, "sasmodels defaults: pd_n=35, ±3σ")):
        baseline = SasmodelsBaseline(pd_n, pd_nsigma)
        truth = frames[0][0]
        deviation = np.max(np.abs(baseline.model([*truth, 10.0, 0.0]) /
                                  sphere_intensity(Q_NM, *truth, 1e-5) - 1))
        start = np.array([ours[0].radius_nm, ours[0].sigma_nm, ours[0].concentration_molar * 1e6, ours[0].background_cm])
        base_ms, offsets = [], []
        for fit, (_, y, s) in zip(ours[1:], frames[1:]):
            start, ms = timed(baseline.fit, y, s, start)
            base_ms.append(ms)
            offsets.append((start[0] - fit.radius_nm) / fit.radius_err_nm)
        print(f"baseline (least_squares + sasmodels sphere, {label}; model deviates {deviation:.1e} from ours)")
        base_median = summary("warm start from previous frame", base_ms)
        print(f"  |R_baseline - R_ours| / radius_err: median {np.median(np.abs(offsets)):.3f}, max {np.max(np.abs(offsets)):.3f}")
        print(f"  speed ratio (median baseline / median ours): {base_median / ours_median:.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
