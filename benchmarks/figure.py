"""CPU seconds per analysis figure (the 4-panel PNG a dry run, replay, report and session write).

The figure of a 575-frame run (``draw_figure`` + ``savefig`` at 100 dpi, the work of
:class:`~ncsynth.analysis.display.LiveFigure` at a run's stop and every 20 frames of a session)
is drawn with the module's fixed layout (``FIGURE_MARGINS``) and, as the baseline in the same
run, the same figure with matplotlib's constrained layout (what the module used before issue 18:
savefig then draws the figure twice and measures every label). Alternating, ``--repeats`` each;
prints the median and range of each and their ratio.  Run: ``python benchmarks/figure.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ncsynth.analysis.display import draw_figure, run_title

N_FRAMES, N_Q = 575, 500


def run_like_data(rng):
    """Fits, patterns and kinetics shaped as a default dry run's derived run."""
    t = np.geomspace(0.9, 7600.0, N_FRAMES)
    radius = 1.0 + 0.4 * np.log10(t)
    fits = {"time_s": t, "radius_nm": radius, "radius_err_nm": np.full(N_FRAMES, 0.03),
            "sigma_nm": 0.1 * radius, "sigma_upper_nm": np.where(t < 3, 0.5 * radius, np.nan),
            "concentration_molar": 2.6e-5 * (1 - np.exp(-t / 100)),
            "concentration_err_molar": np.full(N_FRAMES, 5e-7),
            "yield_fraction": 1 - np.exp(-t / 500), "success": np.ones(N_FRAMES, bool)}
    q = np.tile(np.geomspace(0.1, 5.0, N_Q), (N_FRAMES, 1))
    model = np.exp(-(q * radius[:, None]) ** 2 / 5)
    patterns = {"time_s": t, "q_nm": q, "intensity_cm": model + 1e-3 * rng.standard_normal(q.shape),
                "sigma_cm": np.full(q.shape, 1e-3), "model_cm": model, "background_cm": np.zeros(N_FRAMES)}
    kinetics = {"k_per_s": [0.01], "n_inf_molar": [2.6e-5], "t_concentration_s": [284.0],
                "t_concentration_err_s": [43.0], "t_yield_s": [1580.0], "t_yield_err_s": [13.0],
                "buildup_chi2_reduced": [563.0], "buildup_describes_data": [False], "success": [True]}
    return fits, patterns, kinetics


def cpu_s(data, path: Path, layout: str | None) -> float:
    start = time.process_time()
    title = run_title({"sample": "CdSe (benchmark)", "scan_id": 1}, f"{N_FRAMES} frames")
    figure = draw_figure(*data, title=title)
    if layout is not None:
        figure.set_layout_engine(layout)
    figure.savefig(path, dpi=100)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    data = run_like_data(np.random.default_rng(1))
    times: dict[str, list[float]] = {"fixed layout (ncsynth)": [], "constrained layout (baseline)": []}
    with tempfile.TemporaryDirectory() as tmp:
        cpu_s(data, Path(tmp) / "warm.png", None)  # font cache, mathtext parser
        for _ in range(args.repeats):
            times["fixed layout (ncsynth)"].append(cpu_s(data, Path(tmp) / "a.png", None))
            times["constrained layout (baseline)"].append(cpu_s(data, Path(tmp) / "b.png", "constrained"))
    for name, values in times.items():
        print(f"{name:32s} median {statistics.median(values):.3f} CPU-s per figure "
              f"({min(values):.3f}-{max(values):.3f}, {len(values)} figures)")
    fixed, constrained = (statistics.median(values) for values in times.values())
    ratio = constrained / fixed
    print(f"speed-up against the baseline: {ratio:.2f}x")


if __name__ == "__main__":
    main()
