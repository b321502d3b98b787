"""Per-frame pulls of a stored dry run, as stored and refitted with this tree's fitting code.

A dry run keeps every frame's background-subtracted pattern (the analysis run's ``patterns``
stream, read from its journal as in ``benchmarks/refit.py``) and the simulated flask at each
frame's mid-exposure (``<data dir>/truth/<uid>.json``). This refits the patterns in frame order
as the live analysis does (Gaussian fit warm-started, the skewed fit of the same frame, the
preferred size model, the size-model error of :class:`~ncsynth.analysis.frame_model.SizeModelError`)
and prints, for the radius and the concentration, the pulls (measured − true)/error in the
windows of ``ncsynth validate`` (:func:`ncsynth.truth_report.frame_pulls`): frames, mean, std
and noise std, with the statistical errors alone and with the size-model error in quadrature,
for the stored fits ("stored") and the refit ("now"). Produce the run once with the code to
compare against (``ncsynth dry-run --data-dir DIR [--seed N]``), then::

    python benchmarks/frame_pulls.py --data-dir DIR [RUN]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ncsynth.analysis.frame_model import (SizeModelError, preferred_model, resolved_fraction,
                                          size_model_systematic)
from ncsynth.analysis.saxs import fit_pattern
from ncsynth.analysis.skewed import fit_skewed
from ncsynth.runs import raw_run
from ncsynth.storage import open_catalog
from ncsynth.storage.journal import read_journal
from ncsynth.truth_report import frame_pulls
from refit import stream_columns

#: (name, fit value, statistical error, size-model error, flask truth)
QUANTITIES = (("radius", "radius_nm", "radius_err_nm", "radius_syst_nm", "mean_radius_nm"),
              ("concentration", "concentration_molar", "concentration_err_molar",
               "concentration_syst_molar", "concentration_molar"))


def refit(patterns) -> dict:
    """The fits' columns of QUANTITIES for every pattern, fitted as the live analysis does."""
    q, y, s = (np.asarray(patterns[key], dtype=float) for key in ("q_nm", "intensity_cm", "sigma_cm"))
    columns = {key: np.full(len(q), math.nan) for _, *keys, _ in QUANTITIES for key in keys}
    gaussian = skewed = two = None
    size_model = SizeModelError()
    for i in range(len(q)):
        fit = fit_pattern(q[i], y[i], s[i], guess=gaussian)
        shaped = fit_skewed(q[i], y[i], s[i], fit, guess=skewed)
        model, found = preferred_model(q[i], y[i], s[i], fit, shaped, guess=two)
        gaussian, skewed = (fit if fit.success else gaussian), (shaped if shaped.success else skewed)
        two = found or two
        systematic = size_model.add(size_model_systematic(fit, shaped,
                                                          found if model.populations == 2 else None),
                                    resolved_fraction(fit, shaped))
        for (_, value, error, syst, _), shift in zip(QUANTITIES, systematic[::2]):
            columns[value][i], columns[error][i] = getattr(fit, value), getattr(fit, error)
            columns[syst][i] = shift
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="-1", help="run reference (default: the latest)")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    root = Path(args.data_dir)
    with open_catalog(root) as catalog:
        run = raw_run(catalog, int(args.run) if args.run.lstrip("-").isdigit() else args.run)
        uid = run.metadata["start"]["uid"]
        analysis_uid = catalog.analysis(run).metadata["start"]["uid"]
        journal = Path(catalog.layout.complete_journals) / f"{analysis_uid}.jsonl"
    stored, patterns = stream_columns(read_journal(journal), ("fits", "patterns"))
    flask = json.loads((root / "truth" / f"{uid}.json").read_text())["frames"]
    fits = {"stored": stored, "now": refit(patterns)}
    print(f"run {uid[:8]}: pulls per window (s after injection): frames, mean, std, noise std")
    for name, value, error, syst, true in QUANTITIES:
        for label, columns in fits.items():
            for kind, systematic in (("statistical", None), ("+ size model", columns[syst])):
                rows = frame_pulls(stored["time_s"], columns[value], columns[error],
                                   flask["time_s"], flask[true], systematic=systematic)
                cells = "; ".join(f"{low:g}-{high:g} s: {count} {mean:+.2f} {std:.2f} {noise:.2f}"
                                  for (low, high), count, mean, std, noise in rows)
                print(f"  {name:13} {label:6} {kind:12} {cells}")


if __name__ == "__main__":
    main()
