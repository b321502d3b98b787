"""The figure of a hot-injection run's SAXS analysis (the panels of seed 000 Fig. 1).

(a) I(q) in cm⁻¹ minus the fitted flat background, with the fitted model, at a few times after
    injection, on a log q axis and a symmetric-log I axis (points at and below zero drawn);
(b) mean radius R0 (nm; error bars stop at 0) and size dispersion σ_R/R0 (%; an unresolved width
    as its 95 % upper limit) against time;
(c) nanocrystal concentration (mol/L; error bars stop at 0) with the S3.3 build-up fit and its t98;
(d) reaction yield (S2.6) with its t98 — all against time after injection on a log axis.

:class:`LiveFigure` is a document callback on the DERIVED run emitted by
:class:`~ncsynth.analysis.run_analysis.SAXSAnalysis` (streams ``fits``, ``patterns``, ``kinetics``); it
draws with matplotlib's object API on the Agg canvas (no pyplot, no display needed, safe on the
analysis worker thread) and writes PNGs. :func:`report_figure` draws the same figure from
stored results. Lines carry ``gid`` labels (``radius``, ``dispersion``, ``concentration``,
``yield``, ``pattern-<i>``, ``model-<i>``, ``concentration-fit``) so tests and notebooks can
find them.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
from event_model import DocumentRouter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ncsynth.analysis.kinetics import buildup_fraction

#: Patterns drawn in panel (a).
N_PATTERNS_SHOWN = 5

#: The 11 x 8 in figure's fixed layout (fractions of the figure; wspace/hspace of an axes' size):
#: room for a two-line title, the tick labels and axis labels of every panel and the right axis
#: of (b). Matplotlib's constrained layout finds the same margins from the drawn text, but costs
#: two more passes over every label at each drawing (~60 % of a figure's time; issue 18).
FIGURE_MARGINS = {"left": 0.075, "right": 0.925, "bottom": 0.065, "top": 0.885,
                  "wspace": 0.2, "hspace": 0.3}


def _column(table, name) -> np.ndarray:
    return np.asarray(table[name], dtype=float)


def _pick_patterns(time_s: np.ndarray, usable: np.ndarray, count: int) -> list[int]:
    """Indices of up to ``count`` usable frames spread evenly in log time (first and last included)."""
    index = np.flatnonzero(usable & np.isfinite(time_s) & (time_s > 0))
    if index.size <= count:
        return index.tolist()
    targets = np.geomspace(time_s[index[0]], time_s[index[-1]], count)
    chosen = sorted({int(index[np.argmin(np.abs(np.log(time_s[index] / t)))]) for t in targets})
    return chosen


def run_title(raw: dict | None, detail: str = "") -> str:
    """The figure's title from a raw run's description
    (:func:`~ncsynth.analysis.derived_run.raw_description`): sample, local date and time of the start,
    the recipe's injection and growth temperatures (°C); on a second line scan id and short
    uid, then ``detail``."""
    raw = raw or {}
    parts = [str(raw["sample"])] if raw.get("sample") else []
    if isinstance(raw.get("time"), (int, float)):
        parts.append(datetime.fromtimestamp(raw["time"]).astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    temperatures = [f"{label} {raw[key]:g} °C" for label, key in
                    (("injection", "injection_temperature_c"), ("growth", "growth_temperature_c"))
                    if isinstance(raw.get(key), (int, float))]
    if temperatures:
        parts.append(", ".join(temperatures))
    run = f"scan {raw['scan_id']} " if raw.get("scan_id") else ""
    second = [f"{run}({str(raw['uid'])[:8]})" if run else f"run {str(raw['uid'])[:8]}"] \
        if raw.get("uid") else []
    lines = [" — ".join(parts), " — ".join(second + ([detail] if detail else []))]
    return "\n".join(line for line in lines if line)


def _draw_patterns(ax, patterns, fits, relative: bool = False) -> None:
    """Panel (a): of up to :data:`N_PATTERNS_SHOWN` frames spread in log time, I(q) minus the
    fitted flat background B (S2.1's constant term) and the fitted model minus B (frames with a
    fit; before any fit, the data alone). The y axis is symmetric-logarithmic: linear within the
    noise (the median σ of the patterns drawn), logarithmic beyond, so that the points at and
    below zero, where background-subtracted data scatter beyond the first minimum, are drawn.
    ``relative``: a run without an absolute scale (arbitrary units, B not known: data and model
    drawn as they are)."""
    ax.set(xscale="log", xlabel="q (nm$^{-1}$)",
           ylabel="I(q) (arbitrary units, no absolute scale)" if relative else "I(q) − B (cm$^{-1}$)",
           title="(a) I(q) and fit" if relative else "(a) I(q) − fitted flat background, and fit")
    if patterns is None or not len(np.asarray(patterns["time_s"])):
        ax.text(0.5, 0.5, "no frame analysed yet", transform=ax.transAxes, ha="center")
        return
    p_time = _column(patterns, "time_s")
    q, intensity, model, sigma = (np.atleast_2d(_column(patterns, name)) for name in
                                  ("q_nm", "intensity_cm", "model_cm", "sigma_cm"))
    background = np.full(p_time.size, np.nan)
    if "background_cm" in fits:
        known = _column(fits, "background_cm")[:p_time.size]
        background[:known.size] = known
    drawable = np.isfinite(q) & np.isfinite(intensity)
    if relative:
        background[:] = 0.0
    fitted = np.isfinite(model).any(axis=1) & np.isfinite(background)
    shown = _pick_patterns(p_time, fitted if fitted.any() else drawable.any(axis=1),
                           N_PATTERNS_SHOWN)
    noise = sigma[shown][np.isfinite(sigma[shown]) & (sigma[shown] > 0)]
    for rank, i in enumerate(shown):
        flat = background[i] if fitted[i] else 0.0
        label = f"{p_time[i]:.3g} s" + ("" if fitted[i] else " (no fit)")
        ax.plot(q[i][drawable[i]], intensity[i][drawable[i]] - flat, ".", ms=3, color=f"C{rank}",
                label=label, gid=f"pattern-{i}")
        if fitted[i]:
            ax.plot(q[i], model[i] - flat, "-", lw=1, color=f"C{rank}", gid=f"model-{i}")
    ax.axhline(0.0, color="0.7", lw=0.5)
    ax.set_yscale("symlog", linthresh=float(np.median(noise)) if noise.size else 1e-3)
    if shown:
        ax.legend(fontsize="small", title="t after injection")


def draw_figure(fits, patterns=None, kinetics=None, title: str = "", relative: bool = False,
                second_injection_s: float | None = None) -> Figure:
    """The 4-panel figure from per-frame ``fits`` columns (``time_s``, ``radius_nm``,
    ``radius_err_nm``, ``sigma_nm``, ``concentration_molar``, ``concentration_err_molar``,
    ``yield_fraction``, ``success``), ``patterns`` columns (``time_s``; 2-D ``q_nm``,
    ``intensity_cm``, ``sigma_cm``, ``model_cm``, one row per frame) and the flattened
    ``kinetics`` (``k_per_s``, ``n_inf_molar``, ``t_concentration_s``, ``t_yield_s``) or None.
    Any mapping of names to arrays works (dict, xarray Dataset, pandas DataFrame). ``relative``:
    the patterns are in arbitrary units (a run without an absolute scale: no concentrations).
    ``second_injection_s``: piston B's time after A (§S.5), marked in the panels over time (the
    concentration and yield step there: its volume dilutes, its Cd adds)."""
    figure = Figure(figsize=(11, 8))
    FigureCanvasAgg(figure)
    ax_iq, ax_r, ax_c, ax_y = figure.subplots(2, 2, gridspec_kw=FIGURE_MARGINS).ravel()
    if title:
        figure.suptitle(title)

    t = _column(fits, "time_s")
    ok = np.asarray(fits["success"], dtype=bool) & np.isfinite(t) & (t > 0)

    # (a) I(q) with fits
    _draw_patterns(ax_iq, patterns, fits, relative)

    # (b) radius and dispersion
    radius, sigma = _column(fits, "radius_nm"), _column(fits, "sigma_nm")
    radius_err = _column(fits, "radius_err_nm")[ok]
    # a radius is positive: an error bar larger than R stops at 0 (the data do not bound R below)
    ax_r.errorbar(t[ok], radius[ok], yerr=[np.fmin(radius_err, radius[ok]), radius_err], fmt="o",
                  ms=3, color="C0")[0].set_gid("radius")
    ax_r.set(xscale="log", xlabel="time after injection (s)", ylabel="mean radius R$_0$ (nm)",
             title="(b) radius and size dispersion")
    ax_r.set_ylim(bottom=0)
    ax_d = ax_r.twinx()
    upper = _column(fits, "sigma_upper_nm") if "sigma_upper_nm" in fits else np.full(t.size, np.nan)
    limit = ok & np.isfinite(upper)  # the pattern does not resolve σ: only an upper limit
    ax_d.plot(t[ok & ~limit], 100 * sigma[ok & ~limit] / radius[ok & ~limit], "s", ms=3, color="C3",
              gid="dispersion")
    if limit.any():
        ax_d.plot(t[limit], 100 * upper[limit] / radius[limit], "v", ms=4, color="C3", mfc="none",
                  gid="dispersion-upper-limit", label="σ$_R$ upper limit (95 %)")
        ax_d.legend(fontsize="small", loc="upper right")
    ax_d.set_ylabel("σ$_R$/R$_0$ (%)", color="C3")

    # (c) concentration
    conc, conc_err = _column(fits, "concentration_molar"), _column(fits, "concentration_err_molar")
    ax_c.errorbar(t[ok], conc[ok], yerr=[np.fmin(conc_err[ok], conc[ok]), conc_err[ok]], fmt="o",
                  ms=3, color="C1")[0].set_gid("concentration")  # stops at 0, as the radius's
    # (d) yield
    ax_y.plot(t[ok], _column(fits, "yield_fraction")[ok], "o", ms=3, color="C2", gid="yield")
    if kinetics is not None and ok.any():
        k, n_inf = float(np.asarray(kinetics["k_per_s"]).ravel()[-1]), float(np.asarray(kinetics["n_inf_molar"]).ravel()[-1])
        if math.isfinite(k) and math.isfinite(n_inf):
            grid = np.geomspace(t[ok].min(), t[ok].max(), 200)
            ax_c.plot(grid, n_inf * buildup_fraction(grid, k), "-", color="k", lw=1, gid="concentration-fit",
                      label=_law_label(kinetics))
        settled = bool(np.asarray(kinetics["success"]).ravel()[-1]) if "success" in kinetics else True
        for axis, key in ((ax_c, "t_concentration_s"), (ax_y, "t_yield_s")) if settled else ():
            t98 = float(np.asarray(kinetics[key]).ravel()[-1])
            error = float(np.asarray(kinetics[key[:-2] + "_err_s"]).ravel()[-1]) \
                if key[:-2] + "_err_s" in kinetics else math.nan
            if math.isfinite(t98) and t98 > 0:
                axis.axvline(t98, color="grey", ls="--", lw=1, gid=f"98%-{key}",
                             label=f"98 % (data): {t98:.3g} ± {error:.2g} s")
                axis.legend(fontsize="small")
    if isinstance(second_injection_s, (int, float)) and second_injection_s > 0:
        for axis in (ax_r, ax_c, ax_y):
            axis.axvline(second_injection_s, color="C4", ls=":", lw=1.5, gid="piston-B",
                         label=f"piston B: {second_injection_s:g} s")
        for axis in (ax_c, ax_y):
            axis.legend(fontsize="small")
    ax_c.set(xscale="log", xlabel="time after injection (s)", ylabel="concentration (mol/L)",
             title="(c) nanocrystal concentration")
    ax_y.set(xscale="log", xlabel="time after injection (s)", ylabel="yield", title="(d) reaction yield (S2.6)")
    for axis in (ax_r, ax_c, ax_y):  # 0.0001 mol/L as 1.0 and an offset "1e-4": labels fit the margins
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    return figure


def _law_label(kinetics) -> str:
    """Legend of the S3.3 curve: with its reduced χ², and whether it describes the data."""
    if "buildup_chi2_reduced" not in kinetics:
        return "S3.3 fit"
    chi2 = float(np.asarray(kinetics["buildup_chi2_reduced"]).ravel()[-1])
    fits = bool(np.asarray(kinetics["buildup_describes_data"]).ravel()[-1])
    return f"S3.3 fit, χ²$_{{red}}$ = {chi2:.3g}" + ("" if fits else " (does not describe the data)")


def report_figure(fits, patterns, kinetics, path, title: str = "", relative: bool = False,
                  second_injection_s: float | None = None) -> Path:
    """Draw :func:`draw_figure` from stored results and write it to ``path`` (PNG, or any
    format matplotlib infers from the suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = draw_figure(fits, patterns, kinetics, title, relative, second_injection_s)
    figure.savefig(path, dpi=100)
    return path


class LiveFigure(DocumentRouter):
    """Document callback drawing the derived run as it arrives; writes PNGs to ``directory``.

    A PNG ``<raw uid>.png`` is written at the derived run's stop and, with ``every=N``, after
    every N-th frame (the same file, updated). :attr:`figure` is the latest figure,
    :attr:`paths` the files written.
    """

    def __init__(self, directory, *, every: int | None = None):
        super().__init__()
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be a positive integer or None, got {every!r}")
        self.directory = Path(directory)
        self.every = every
        self.figure: Figure | None = None
        self.paths: list[Path] = []
        self._reset()

    def _reset(self):
        self._start = None
        self._streams: dict[str, str] = {}
        self.fits: list[dict] = []
        self.patterns: list[dict] = []
        self.kinetics: dict | None = None

    def start(self, doc):
        self._reset()
        self._start = doc

    def descriptor(self, doc):
        self._streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"])
        if stream == "fits":
            self.fits.append(doc["data"])
        elif stream == "patterns":
            self.patterns.append(doc["data"])
            if self.every and len(self.patterns) % self.every == 0:
                self.draw()
        elif stream == "kinetics":
            self.kinetics = doc["data"]

    def stop(self, doc):
        self.draw()

    def draw(self) -> Path | None:
        """Draw what has arrived and write the PNG; returns its path (None before any frame)."""
        if not self.fits:
            return None
        columns = {key: [row[key] for row in self.fits] for key in self.fits[0]}
        pattern_columns = ({key: [row[key] for row in self.patterns] for key in self.patterns[0]}
                           if self.patterns else None)
        start = self._start or {}
        name = start.get("raw_uid") or start.get("uid") or "analysis"
        raw = start.get("raw_run") or {"uid": name, "scan_id": start.get("raw_scan_id")}
        title = run_title(raw, f"SAXS analysis, {len(self.fits)} frames")
        relative = (start.get("analysis") or {}).get("absolute_scale") is False
        self.figure = draw_figure(columns, pattern_columns, self.kinetics, title, relative,
                                  raw.get("second_injection_s"))
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.png"
        self.figure.savefig(path, dpi=100)
        if path not in self.paths:
            self.paths.append(path)
        return path


def superfocusing_figure(analysis, path, title: str = "") -> Path:
    """Seed 000 Fig. S5.4b: radius of the new (small) set against the first (large) set after
    the second injection, with the curves S4.15–S4.17 expect from the first used pair for
    reaction control (n = 0), diffusion control (n = 1) and the fitted n; returns the path.

    ``analysis``: a :class:`~ncsynth.analysis.superfocusing.SecondInjectionAnalysis`.
    """
    from ncsynth.analysis.growth import expected_small_radius

    figure = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    (r1, r2, e1, e2), used = analysis.pairs(), analysis.used
    ax.errorbar(r1[~used], r2[~used], xerr=e1[~used], yerr=e2[~used], fmt=".", color="0.7",
                label="not used (outside the window where both sets grow)")
    ax.errorbar(r1[used], r2[used], xerr=e1[used], yerr=e2[used], fmt="o", ms=3, color="k",
                label="pairs in the fit")
    fit = analysis.exponent
    if used.any():
        grid = np.linspace(r1[used][0], np.nanmax(r1[used]), 100)
        curves = [(0.0, "reaction control, n = 0"), (1.0, "diffusion control, n = 1")]
        if fit.success:
            curves.append((fit.n, f"fit, n = {fit.n:.2f} ± {fit.n_err:.2f}"))
        for n, label in curves:
            ax.plot(grid, expected_small_radius(grid, r1[used][0], r2[used][0], n), label=label)
    ax.set_xlabel("large-set radius r₁ (nm)")
    ax.set_ylabel("small-set radius r₂ (nm)")
    ax.set_title(title or "growth exponent from the two populations (S4.15)")
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
