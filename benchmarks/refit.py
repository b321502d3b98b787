"""Refit a stored run's patterns with this tree's fitting code; compare with the stored analysis.

The analysis stored every frame's background-subtracted pattern (stream ``patterns``) and its
fits (stream ``fits``), read here from the analysis run's journal (the documents as emitted). This refits the patterns in frame order with the live analysis' warm
starts (``fit_pattern`` from the previous good fit, ``fit_skewed`` from the previous good
skewed fit) and prints, per parameter, the largest |new − stored| in units of the fit's
standard error (Gaussian: the stored errors; skewed: from the Kaufman Jacobian of the projected
residual at the new optimum), the frames whose success changed, the largest χ² difference, and
the milliseconds per frame of each fit. Produce a run once with the code to compare against
(``ncsynth dry-run --data-dir DIR``), then::

    python benchmarks/refit.py --data-dir DIR [RUN]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from ncsynth.analysis.fit_projection import VariableProjection
from ncsynth.analysis.saxs import _context_for, fit_pattern
from ncsynth.analysis.skewed import fit_skewed, skewed_model
from ncsynth.runs import raw_run
from ncsynth.storage import open_catalog
from ncsynth.storage.journal import read_journal

GAUSSIAN = (("radius_nm", "radius_err_nm"), ("sigma_nm", "sigma_err_nm"),
            ("concentration_molar", "concentration_err_molar"))
SKEWED = ("skewed_radius_nm", "skewed_sigma_nm", "skewness")


def skewed_errors(q, y, s, fit) -> np.ndarray:
    """Standard errors of the skewed fit's (R, σ, γ) from the projected Jacobian at ``fit``."""
    keep = np.isfinite(q) & np.isfinite(y) & np.isfinite(s) & (q > 0)
    projection = VariableProjection(skewed_model(_context_for(q[keep]).kernel), y[keep], 1.0 / s[keep])
    jacobian = projection(np.array([math.log(fit.radius_nm), math.log(fit.sigma_nm), fit.skewness]))[4]
    errors = np.sqrt(np.diag(np.linalg.inv(jacobian.T @ jacobian)))
    return errors * [fit.radius_nm, fit.sigma_nm, 1.0]  # ln R, ln σ → R, σ


def stream_columns(documents, names) -> list[dict]:
    """Each stream of ``names``: its events' data as {key: array over events}, in event order."""
    streams = {name: {} for name in names}
    descriptors = {}
    for kind, doc in documents:
        if kind == "descriptor" and doc.get("name") in streams:
            descriptors[doc["uid"]] = streams[doc["name"]]
        elif kind in ("event", "event_page") and doc["descriptor"] in descriptors:
            for key, value in doc["data"].items():
                columns = descriptors[doc["descriptor"]].setdefault(key, [])
                columns.extend(value) if kind == "event_page" else columns.append(value)
    return [{key: np.asarray(values) for key, values in streams[name].items()} for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="1", help="run reference (default: scan 1)")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    with open_catalog(Path(args.data_dir)) as catalog:
        run = raw_run(catalog, int(args.run) if args.run.lstrip("-").isdigit() else args.run)
        uid = catalog.analysis(run).metadata["start"]["uid"]
        journal = Path(catalog.layout.complete_journals) / f"{uid}.jsonl"
    stored, patterns = stream_columns(read_journal(journal), ("fits", "patterns"))
    q, y, s = (np.asarray(patterns[key], dtype=float) for key in ("q_nm", "intensity_cm", "sigma_cm"))
    n = len(q)
    new = {key: np.full(n, math.nan) for key in [k for k, _ in GAUSSIAN] + list(SKEWED)}
    skewed_err = np.full((n, 3), math.nan)
    success, skewed_chi2 = np.zeros(n, bool), np.full(n, math.nan)
    gaussian_ms, skewed_ms = [], []
    guess = skewed_guess = None
    for i in range(n):
        start = time.perf_counter()
        fit = fit_pattern(q[i], y[i], s[i], guess=guess)
        middle = time.perf_counter()
        skewed = fit_skewed(q[i], y[i], s[i], fit, guess=skewed_guess)
        gaussian_ms.append((middle - start) * 1e3)
        skewed_ms.append((time.perf_counter() - middle) * 1e3)
        success[i] = fit.success
        if fit.success:
            guess = fit
            for key, _ in GAUSSIAN:
                new[key][i] = getattr(fit, key)
        if skewed.success:
            skewed_guess = skewed
            new["skewed_radius_nm"][i], new["skewed_sigma_nm"][i] = skewed.radius_nm, skewed.sigma_nm
            new["skewness"][i], skewed_chi2[i] = skewed.skewness, skewed.chi2_reduced
            skewed_err[i] = skewed_errors(q[i], y[i], s[i], skewed)
    print(f"{n} frames; ms per frame: Gaussian fit median {np.median(gaussian_ms):.2f} "
          f"(total {sum(gaussian_ms) / 1e3:.2f} s), skewed fit median {np.median(skewed_ms):.2f} "
          f"(total {sum(skewed_ms) / 1e3:.2f} s)")
    print(f"Gaussian success changed on {int(np.sum(success != stored['success'].astype(bool)))} frames")
    for key, err in GAUSSIAN:
        both = np.isfinite(new[key]) & np.isfinite(stored[key])
        delta = np.abs(new[key] - stored[key])[both] / stored[err][both]
        print(f"  {key:<22} max |new - stored| / error {np.nanmax(delta):.2e}  ({both.sum()} frames)")
    was, now = np.isfinite(stored["skewness"]), np.isfinite(new["skewness"])
    print(f"skewed fit: {was.sum()} stored, {now.sum()} now; failed before, fitted now: "
          f"{int(np.sum(now & ~was))}; fitted before, failed now: {int(np.sum(was & ~now))}")
    both = was & now
    for column, key in enumerate(SKEWED):
        delta = np.abs(new[key] - stored[key])[both] / skewed_err[both, column]
        worst = np.argsort(delta)[::-1][:3]
        print(f"  {key:<22} max |new - stored| / error {delta.max():.2e}, median {np.median(delta):.1e}"
              f"  (worst frames {np.flatnonzero(both)[worst].tolist()})")
    chi2 = (skewed_chi2 - stored["skewed_chi2_reduced"])[both]
    print(f"  skewed chi2_reduced new - stored: min {chi2.min():.2e}, max {chi2.max():.2e} "
          "(negative: the new search found a lower minimum)")


if __name__ == "__main__":
    main()
