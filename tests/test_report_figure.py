"""The report / dry-run figure (analysis/display.py), drawn from patterns made with the real
scattering model (S2.1 + S2.3) plus noise and the negative flat offset a background
subtraction leaves (tests/synthetic_analysis.py), and asserted on its artists: every selected
time is drawn, no radius error bar reaches below zero, an unresolved width is drawn as an
upper limit, the title names the sample, date and temperatures, and nothing warns."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from synthetic_analysis import Q_NM, START, analysed_frames

from ncsynth.analysis.display import draw_figure, report_figure, run_title
from ncsynth.analysis.derived_run import raw_description


def _drawn_curves(axis):
    """{legend label: the data points drawn (x, y) within the axis' view}."""
    (x0, x1), (y0, y1) = axis.get_xlim(), axis.get_ylim()
    curves = {}
    for line in axis.get_lines():
        if (line.get_gid() or "").startswith("pattern-"):
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            inside = np.isfinite(x) & np.isfinite(y) & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            curves[line.get_label()] = (x[inside], y[inside])
    return curves


def test_every_selected_time_is_drawn_beyond_the_first_minimum_and_below_zero():
    times = np.geomspace(1.12, 600.0, 40)
    fits, patterns = analysed_frames(times, [True] * times.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Data has no positive values", nothing else
        figure = draw_figure(fits, patterns, title=run_title(raw_description(START)))
        figure.canvas.draw()
    axis = figure.axes[0]
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    curves = _drawn_curves(axis)
    assert sorted(curves) == sorted(legend) and len(legend) == 5
    assert legend[0] == "1.12 s" and legend[-1] == "600 s"  # first and last frame shown
    for label, (x, y) in curves.items():
        assert x.size == Q_NM.size, label  # every point, noise around zero at high q included
        assert (y > 1e-4).any(), label
    # the early, weak patterns scatter around zero beyond their first minimum: drawn too
    assert (curves["1.12 s"][1] <= 0).sum() >= 3
    assert axis.get_yscale() == "symlog"


def test_a_short_run_without_a_fit_yet_shows_its_patterns_and_does_not_warn():
    times = np.array([0.04, 0.13, 0.23])
    fits, patterns = analysed_frames(times, [False] * times.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = draw_figure(fits, patterns, title="")
        figure.canvas.draw()
    curves = _drawn_curves(figure.axes[0])
    assert sorted(curves) == ["0.04 s (no fit)", "0.13 s (no fit)", "0.23 s (no fit)"]
    assert all(x.size == Q_NM.size for x, _ in curves.values())
    # the data as measured (all below zero here: nothing to take away without a fit)
    assert all((y < 0).all() for _, y in curves.values())


def test_radius_error_bars_stop_at_zero_and_unresolved_widths_are_upper_limits():
    times = np.geomspace(1.12, 600.0, 40)
    fits, patterns = analysed_frames(times, [True] * times.size)
    figure = draw_figure(fits, patterns)
    ax_r = figure.axes[1]
    bars = [c for c in ax_r.collections if c.get_segments()]
    lows = [min(seg[:, 1].min() for seg in c.get_segments()) for c in bars]
    assert bars and min(lows) == pytest.approx(0.0, abs=1e-12)  # 2.5 R errors stop at R = 0
    assert ax_r.get_ylim()[0] >= 0.0
    ax_c = figure.axes[2]  # the concentration's error bars stop at 0 too
    lowest = min(seg[:, 1].min() for c in ax_c.collections for seg in c.get_segments())
    assert lowest == pytest.approx(0.0, abs=1e-15)  # 2 c errors early stop at c = 0
    ax_d = next(ax for ax in figure.axes if ax.get_ylabel().startswith("σ"))
    lines = {line.get_gid(): line for line in ax_d.get_lines()}
    early = times < 2
    np.testing.assert_allclose(lines["dispersion-upper-limit"].get_xdata(), times[early])
    np.testing.assert_allclose(lines["dispersion-upper-limit"].get_ydata(), 50.0)
    assert (np.asarray(lines["dispersion"].get_ydata()) == pytest.approx(10.0))  # none at 0 %


def test_the_title_names_sample_date_temperatures_andanalysed_frames(tmp_path):
    title = run_title(raw_description(START), "SAXS analysis, 40 frames")
    assert title.startswith("CdSe-07 (test) — 2026-12-0")
    assert title.splitlines()[0].endswith("injection 290 °C, growth 260 °C")
    assert title.splitlines()[1] == "scan 7 (1a2b3c4d) — SAXS analysis, 40 frames"
    fits, patterns = analysed_frames([1.5, 3.0], [True, True])
    path = report_figure(fits, patterns, None, tmp_path / "r.png", title=title)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_title({}, "x") == "x" and run_title(None) == ""


@pytest.mark.parametrize("settled", [True, False])
def test_the_98_percent_times_are_drawn_only_when_the_kinetics_determined_them(settled):
    """A run that ends before the concentration and the yield level off has 98 % times of its
    last values only: the summary says "not determined", so the figure draws no 98 % line
    (it drew "98 % (data): 150 ± 0.14 s" at the last frame of a 155 s run)."""
    times = np.geomspace(1.12, 600.0, 40)
    fits, patterns = analysed_frames(times, [True] * times.size)
    kinetics = {"t_concentration_s": [115.0], "t_concentration_err_s": [5.4],
                "t_yield_s": [150.0], "t_yield_err_s": [0.14], "k_per_s": [0.03],
                "n_inf_molar": [2e-5], "buildup_chi2_reduced": [122.0],
                "buildup_describes_data": [False], "success": [settled],
                "reason": ["" if settled else "yield: not settled before the run ended"]}
    figure = draw_figure(fits, patterns, kinetics)
    lines = [line for axis in figure.axes for line in axis.get_lines()]
    times_drawn = {line.get_gid() for line in lines if line.get_label().startswith("98 %")}
    assert times_drawn == ({"98%-t_concentration_s", "98%-t_yield_s"} if settled else set())
    assert "concentration-fit" in {line.get_gid() for line in lines}  # the S3.3 law either way


def test_piston_b_is_marked_where_the_concentration_and_yield_step():
    """A double injection's figure marks piston B's time in the panels over time (the steps of
    the concentration and yield there were unexplained); the delay comes from the raw run's
    start (raw_description), a single injection has no mark."""
    times = np.geomspace(1.12, 600.0, 40)
    fits, patterns = analysed_frames(times, [True] * times.size)
    double = {**START, "second_injection": {"piston": "B", "delay_s": 240.0}}
    assert raw_description(double)["second_injection_s"] == 240.0
    assert raw_description(START)["second_injection_s"] is None
    figure = draw_figure(fits, patterns, second_injection_s=raw_description(double)["second_injection_s"])
    marks = {index: [line.get_xdata()[0] for line in axis.get_lines() if line.get_gid() == "piston-B"]
             for index, axis in enumerate(figure.axes[:4])}
    assert marks == {0: [], 1: [240.0], 2: [240.0], 3: [240.0]}
    assert "piston B: 240 s" in [t.get_text() for t in figure.axes[2].get_legend().get_texts()]
    single = draw_figure(fits, patterns, second_injection_s=raw_description(START)["second_injection_s"])
    assert not [line for axis in single.axes for line in axis.get_lines() if line.get_gid() == "piston-B"]


def _overlap_px(a, b) -> float:
    """Area (px²) two display-space boxes share."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


@pytest.mark.parametrize("case", ["two-line title, kinetics, piston B", "relative scale, no fit yet",
                                  "tiny concentrations"])
def test_every_label_is_inside_the_figure_and_no_panel_runs_into_another(case):
    """The figure's layout is fixed (FIGURE_MARGINS, not matplotlib's constrained layout): drawn
    as the PNG is, every text (tick labels, axis labels, titles, legends, the offset text of
    (c)) lies inside the canvas, the four panels' boxes with all their labels (and the right
    axis of (b)) do not overlap, and the run's title sits above every panel."""
    times = np.geomspace(1.12, 7600.0, 60) if case != "relative scale, no fit yet" else np.array([0.04, 0.13])
    fits, patterns = analysed_frames(times, [case != "relative scale, no fit yet"] * times.size)
    kinetics, second = None, None
    if case == "two-line title, kinetics, piston B":
        kinetics = {"t_concentration_s": [284.0], "t_concentration_err_s": [43.0], "t_yield_s": [1580.0],
                    "t_yield_err_s": [13.0], "k_per_s": [0.01], "n_inf_molar": [2.6e-5],
                    "buildup_chi2_reduced": [563.0], "buildup_describes_data": [False], "success": [True]}
        second = 240.0
    if case == "tiny concentrations":
        fits = {**fits, "concentration_molar": np.asarray(fits["concentration_molar"]) * 1e-6,
                "concentration_err_molar": np.asarray(fits["concentration_err_molar"]) * 1e-6}
    title = run_title(raw_description(START), f"SAXS analysis, {times.size} frames")
    figure = draw_figure(fits, patterns, kinetics, title, relative=case.startswith("relative"),
                         second_injection_s=second)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    canvas = figure.bbox
    ticks = {id(label) for axis in figure.axes for ax in (axis.xaxis, axis.yaxis)
             for tick in ax.get_major_ticks() + ax.get_minor_ticks() for label in (tick.label1, tick.label2)}
    texts = [text for text in figure.findobj(Text)  # tick labels: in their panel's box below
             if text.get_visible() and text.get_text().strip() and id(text) not in ticks]
    assert len(texts) > 10
    twin = next(ax for ax in figure.axes if ax.get_ylabel().startswith("σ"))  # (b)'s right axis
    panels = [[figure.axes[0]], [figure.axes[1], twin], [figure.axes[2]], [figure.axes[3]]]
    boxes = [Bbox.union([axis.get_tightbbox(renderer) for axis in panel])
             for panel in panels]  # every drawn label of the panel, its title, its legend
    for what, box in [*((text.get_text(), text.get_window_extent(renderer)) for text in texts),
                      *((f"panel {i}", box) for i, box in enumerate(boxes))]:
        assert (box.x0 >= canvas.x0 - 0.5 and box.x1 <= canvas.x1 + 0.5 and box.y0 >= canvas.y0 - 0.5
                and box.y1 <= canvas.y1 + 0.5), (what, box, canvas.bounds)
    for i in range(4):
        for j in range(i + 1, 4):
            assert _overlap_px(boxes[i], boxes[j]) == 0.0, (i, j, boxes[i], boxes[j])
    suptitle = figure.get_suptitle() and figure._suptitle.get_window_extent(renderer)
    assert suptitle and all(_overlap_px(suptitle, box) == 0.0 for box in boxes)
