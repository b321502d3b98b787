"""The dry run's summary as text (ncsynth dry-run without --json)."""

from ncsynth.summary_text import format_summary

SUMMARY = {
    "uid": "8e2b658f-1dc0-48f6-be2e-035eb6c814ce", "exit_status": "success", "frames": 575,
    "final_radius_nm": 1.7372657795246529, "concentration_molar": 7.08242411095539e-05,
    "yield_fraction": 0.9948944924776049, "frames_analysed": 575, "frames_without_fit": 16,
    "analysis_errors": 0, "analysis_dropped_events": 0, "analysis_worker_errors": 0,
    "kinetics": {"fraction": 0.98, "t_concentration_s": 125.28, "t_concentration_err_s": 5.46,
                 "t_yield_s": 828.4, "t_yield_err_s": 8.0, "nucleation_fraction": 0.1512,
                 "nucleation_fraction_err": 0.0082, "success": True, "reason": "",
                 "buildup_chi2_reduced": 689.5, "buildup_describes_data": False,
                 "second_order_chi2_reduced": 2066.7, "second_order_describes_data": False,
                 "law_t_concentration_s": 228.86, "law_t_concentration_err_s": 3.5,
                 "law_t_yield_s": 873.7, "law_t_yield_err_s": 8.19, "law_note": "..."},
    "figures": ["/data/figures/8e2b658f.png"],
    "simulator_truth": {"mean_radius_nm": 1.7308, "concentration_molar": 7.146669042818264e-05,
                        "yield_fraction": 1.0, "t_concentration_s": 130.28, "t_yield_s": 829.34,
                        "nucleation_fraction": 0.15709},
    "data_dir": "/data", "wall_s": 43.21, "a_new_key": [1, 2],
}


def _rows(text):
    return {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()}


def test_the_summary_reads_as_measured_values_beside_the_simulated_truth():
    text = format_summary(SUMMARY)
    rows = _rows(text)
    assert rows["run"] == "8e2b658f-1dc0-48f6-be2e-035eb6c814ce  success, 575 frames, 43.21 s wall"
    assert rows["radius"] == "1.737 nm   (simulated flask: 1.731 nm)"
    assert rows["concentration"].startswith("7.082e-05 mol/L")
    # values rounded to their errors' first significant digits
    # the 98 % times from the data beside the flask's; the paper's laws with how well they fit
    assert rows["kinetics"] == ("98% of the concentration at 125.3 ± 5.5 s (flask 130.3 s), of the "
                                "yield at 828.4 ± 8.0 s (flask 829.3 s); nucleation fraction "
                                "0.1512 ± 0.0082 (flask 0.1571)")
    assert rows["laws"] == ("S3.3 reduced chi2 689.5 (does not describe the data), 98% at 228.9 ± 3.5 s; "
                            "S3.2 reduced chi2 2067 (does not describe the data), 98% at 873.7 ± 8.2 s")
    assert rows["analysis"] == "575 frames, 16 without a fit, 0 errors, 0 dropped"
    assert rows["figure"] == "/data/figures/8e2b658f.png"
    assert rows["a_new_key"] == "[1, 2]"  # nothing the summary holds is hidden
    widths = {len(line) - len(line.lstrip()) + len(line.split()[0]) for line in text.splitlines()}
    assert len(widths) == 1  # labels right-aligned in one column


def test_the_absolute_scale_gets_a_line_only_when_there_is_none():
    assert "absolute" not in format_summary({**SUMMARY, "absolute_scale_error": None})
    reason = "no incident flux: set [detector] incident_monitor_pv"
    text = format_summary({**SUMMARY, "concentration_molar": None, "yield_fraction": None,
                           "absolute_scale_error": reason})
    rows = _rows(text)
    assert rows["concentration"].startswith("not available: no absolute scale   (simulated")
    assert f"absolute scale  none: {reason}" in text.splitlines()


def test_undetermined_kinetics_and_a_run_without_analysis_say_so():
    failed = {**SUMMARY, "kinetics": {"success": False, "reason": "yield: 98% is reached at "
                                      "6e+05 s by extrapolation"}}
    assert _rows(format_summary(failed))["kinetics"] == (
        "not determined: yield: 98% is reached at 6e+05 s by extrapolation")
    bare = {key: SUMMARY[key] for key in ("uid", "exit_status", "frames", "wall_s",
                                          "simulator_truth", "data_dir")}
    bare.update(final_radius_nm=None, concentration_molar=None, yield_fraction=None)
    rows = _rows(format_summary(bare))
    assert rows["radius"] == "not analysed   (simulated flask: 1.731 nm)"
    assert "kinetics" not in rows and "analysis" not in rows
    # a law fitted to a run too short to reach 98 % (a 4 s session): no time to 4 digits
    short = {**SUMMARY, "kinetics": {**SUMMARY["kinetics"], "second_order_chi2_reduced": 0.0371,
                                     "second_order_describes_data": True,
                                     "law_t_yield_s": 143892.0, "law_t_yield_err_s": 1.39e9}}
    assert _rows(format_summary(short))["laws"].endswith(
        "S3.2 reduced chi2 0.0371 (fits), 98% time not constrained (1.439e+05 s ± 1.39e+09 s)")
    # laws not fitted (a 10-frame dry run: one usable frame) are not reported as fitting
    nan = float("nan")
    unfitted = {**SUMMARY, "kinetics": {
        "success": False, "reason": "1 usable frames, need 22 for the 98 % times",
        "buildup_chi2_reduced": nan, "buildup_describes_data": False,
        "second_order_chi2_reduced": nan, "second_order_describes_data": False,
        "law_t_concentration_s": nan, "law_t_concentration_err_s": nan, "law_t_yield_s": nan,
        "law_t_yield_err_s": nan, "law_note": ""}}
    assert _rows(format_summary(unfitted))["laws"] == "S3.3 not fitted; S3.2 not fitted"
    # an error far below the value's precision does not print the value to 27 decimals
    tiny = {**SUMMARY, "kinetics": {**SUMMARY["kinetics"], "buildup_describes_data": True,
                                    "law_t_concentration_s": 0.211677868134489,
                                    "law_t_concentration_err_s": 9.7e-26}}
    assert _rows(format_summary(tiny))["laws"].startswith(
        "S3.3 reduced chi2 689.5 (fits), 98% at 0.211678 ± 9.7e-26 s; ")
    # ... and one the frames leave free (a build-up complete before the first frame) is infinite
    free = {**tiny, "kinetics": {**tiny["kinetics"], "law_t_concentration_err_s": float("inf")}}
    assert _rows(format_summary(free))["laws"].startswith(
        "S3.3 reduced chi2 689.5 (fits), 98% time not constrained (0.2117 s ± inf s); ")


def test_the_growth_exponent_of_a_double_injection_is_shown_with_its_interval():
    double = {**SUMMARY, "growth_exponent": 3.613, "growth_exponent_err": 0.4217,
              "growth_exponent_interval": [2.79, 4.44], "growth_exponent_pairs": 12,
              "growth_exponent_reason": "", "superfocusing_figure": "/data/figures/sf.png",
              "growth_exponent_window_s": [395.2, 728.9],
              "growth_exponent_window_after_b_s": [155.2, 488.9], "second_population": True,
              "simulator_truth": {**SUMMARY["simulator_truth"], "growth_exponent_effective": 3.49}}
    text = format_summary(double)
    assert ("growth exponent  n = 3.61 ± 0.42 (interval 2.79 to 4.44, 12 pairs, 155 to 489 s after "
            "piston B) (flask effective 3.49)") in text
    assert "figure  /data/figures/sf.png" in text
    none = {**SUMMARY, "growth_exponent": float("nan"), "second_population": False,
            "growth_exponent_reason": "no second population after piston B: ..."}
    assert _rows(format_summary(none))["growth"] == "exponent  no second population after piston B"
    unresolved = {**SUMMARY, "growth_exponent_reason": "no frame could be fitted"}
    assert "growth exponent  not determined: no frame could be fitted" in format_summary(unresolved)


def test_a_failed_run_shows_its_error_under_the_run():
    failed = {**SUMMARY, "exit_status": "fail", "error": "InjectorError: no syringe loaded"}
    lines = format_summary(failed).splitlines()
    assert lines[0].endswith("fail, 575 frames, 43.21 s wall")
    assert lines[1].split(None, 1) == ["error", "InjectorError: no syringe loaded"]


def test_a_replay_names_the_raw_run_and_its_new_analysis_run_and_figure():
    replayed = {"uid": SUMMARY["uid"], "scan_id": 7, "raw_uid": SUMMARY["uid"],
                "analysis_uid": "0f9e8d7c-1111-4222-8333-444455556666",
                **{key: SUMMARY[key] for key in ("final_radius_nm", "concentration_molar",
                                                 "yield_fraction", "frames_analysed",
                                                 "frames_without_fit", "analysis_errors")},
                "figures": ["/data/reports/scan0007-8e2b658f.png"], "data_dir": "/data"}
    text = format_summary(replayed)
    lines = text.splitlines()
    assert lines[0].split() == ["run", SUMMARY["uid"], "scan", "7"]
    assert lines[1].split() == ["analysis", "run", "0f9e8d7c-1111-4222-8333-444455556666"]
    rows = _rows(text)
    assert rows["radius"] == "1.737 nm" and rows["figure"] == "/data/reports/scan0007-8e2b658f.png"
    assert "raw_uid" not in text  # the run line says it


FLOW = {
    "uid": "5d4c3b2a-aaaa-4bbb-8ccc-dddddddddddd", "exit_status": "success", "residence_s": 14.0,
    "points": [
        {"index": 0, "nucleation_c": 280.0, "growth_c": 260.0, "residence_s": 14.0,
         "flow_ml_min": 2.36, "families": {"MSC-437": 0.00231, "NC": 0.00412},
         "families_err": {"MSC-437": 0.000183, "NC": 4.1e-5}, "nc_exciton_nm": 512.4,
         "saxs": {"volume_fraction": 3.1e-4, "volume_fraction_err": 2.2e-5,
                  "volume_mean_radius_nm": 1.214, "volume_mean_radius_err_nm": 0.05,
                  "chi2_reduced": 1.1, "truth_volume_fraction": 3.05e-4},
         "errors": [], "truth": {"MSC-437": 0.00240, "NC": 0.00398, "MSC-350": 1e-7}},
        {"index": 1, "nucleation_c": 280.0, "growth_c": 280.0, "families": {},
         "nc_exciton_nm": float("nan"), "saxs": {},
         "errors": ["saxs: ValueError: no frame"], "truth": {}},
    ],
    "families": [["MSC-437", "NC"], []], "analysis_errors": 1,
    "figure": "/data/figures/temperature_map_5d4c3b2a.png", "data_dir": "/data",
    "wall_s": 26.2, "acquisition_wall_s": 16.3, "analysis_wall_s": 6.3,
}


def test_the_flow_summary_has_a_line_per_point_with_the_outlet_beside_it():
    from ncsynth.summary_text import format_flow_summary

    text = format_flow_summary(FLOW)
    lines = text.splitlines()
    assert len(lines) == 9 and len(text) < 1000  # not 21 KB of dicts
    rows = _rows(text)
    assert rows["run"] == ("5d4c3b2a-aaaa-4bbb-8ccc-dddddddddddd  success, 2 points, 26.2 s wall "
                           "(acquisition 16.3 s, analysis 6.3 s)")
    assert rows["residence"] == "14 s in the reactor"
    point = next(line for line in lines if line.lstrip().startswith("280/260 °C"))
    assert point.split("°C", 1)[1].strip() == (
        "MSC-437 2.31 ± 0.18 (2.4), NC 4.12 ± 0.041 (3.98); exciton 512 nm; "
        "SAXS φ 0.00031 ± 2.2e-05 (0.000305), R 1.214 ± 0.050 nm")
    failed = lines.index(next(line for line in lines if line.lstrip().startswith("280/280 °C")))
    assert lines[failed].endswith("°C  no species found")
    assert lines[failed + 1].split(None, 1) == ["error", "saxs: ValueError: no frame"]
    assert rows["analysis"] == "1 errors"
    assert rows["figure"] == "/data/figures/temperature_map_5d4c3b2a.png"
    width = len("280/260 °C")  # the longest label; every label ends in that column
    assert all(line[width - 1] != " " and line[width:width + 2] == "  " for line in lines)


def test_a_run_cut_short_is_compared_with_the_flask_at_its_last_frame():
    summary = {**SUMMARY, "frames": 40, "simulator_truth": {
        **SUMMARY["simulator_truth"],
        "at_last_frame": {"time_s": 3.91, "mean_radius_nm": 0.9412, "concentration_molar": 2.1e-6,
                          "yield_fraction": 0.0123}}}
    rows = _rows(format_summary(summary))
    assert rows["radius"] == "1.737 nm   (simulated flask at the last frame, 3.91 s: 0.9412 nm)"
    assert "0.0123" in rows["yield"] and "last frame" in rows["concentration"]
