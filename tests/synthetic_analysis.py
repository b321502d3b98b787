"""An analysed hot-injection run without acquiring one: per-frame ``fits`` and ``patterns``
columns as the live analysis stores them, the patterns made with the real scattering model
(S2.1 + S2.3) plus noise and the negative flat offset a background subtraction leaves, and a
writer of them as a derived run into a real catalog."""

from __future__ import annotations

import math

import numpy as np
from event_model import compose_run

from ncsynth.analysis.derived_run import FIT_KEYS, raw_description
from ncsynth.analysis.scattering import sphere_intensity

Q_NM = np.geomspace(0.1, 5.0, 151)
OFFSET_CM = -0.016  # what the subtraction of the hot solvent's pattern left in a dry run
START = {"uid": "1a2b3c4d-0000-4000-8000-000000000000", "scan_id": 7, "time": 1796195994.6,
         "sample": "CdSe-07 (test)", "recipe": {"injection_temperature_c": 290.0,
                                                "growth_temperature_c": 260.0}}


def analysed_frames(times_s, fitted):
    """fits and patterns columns of frames at ``times_s``; ``fitted[i]``: frame i has a fit."""
    rng = np.random.default_rng(3)
    fits = {name: [] for name in ("time_s", "radius_nm", "radius_err_nm", "sigma_nm",
                                  "sigma_upper_nm", "concentration_molar",
                                  "concentration_err_molar", "yield_fraction", "background_cm",
                                  "success")}
    patterns = {name: [] for name in ("time_s", "q_nm", "intensity_cm", "sigma_cm", "model_cm")}
    for t, ok in zip(times_s, fitted):
        radius, conc = 0.9 + 0.3 * math.log10(t), 2e-6 * min(t, 50.0)
        model = sphere_intensity(Q_NM, radius, 0.1 * radius, conc, OFFSET_CM)
        sigma = np.full(Q_NM.size, 2e-4)
        intensity = model + rng.normal(0.0, 2e-4, Q_NM.size)
        nan = math.nan
        fits["time_s"].append(t)
        fits["radius_nm"].append(radius if ok else nan)
        fits["radius_err_nm"].append((2.5 * radius if t < 2 else 0.05) if ok else nan)
        fits["sigma_nm"].append((0.01 if t < 2 else 0.1 * radius) if ok else nan)
        fits["sigma_upper_nm"].append((0.5 * radius if t < 2 else nan) if ok else nan)
        fits["concentration_molar"].append(conc if ok else nan)
        fits["concentration_err_molar"].append((2.0 if t < 2 else 0.1) * conc if ok else nan)
        fits["yield_fraction"].append(0.01 * t if ok else nan)
        fits["background_cm"].append(OFFSET_CM if ok else nan)
        fits["success"].append(ok)
        patterns["time_s"].append(t)
        patterns["q_nm"].append(Q_NM)
        patterns["intensity_cm"].append(intensity)
        patterns["sigma_cm"].append(sigma)
        patterns["model_cm"].append(model if ok else np.full(Q_NM.size, nan))
    fits["frame_time"] = [START["time"] + t for t in fits["time_s"]]
    filler = {"reason": "", "temperature_c": 260.0}
    for key in FIT_KEYS:  # the columns these tests do not look at, as the analysis stores them
        fits.setdefault(key, [filler.get(key, math.nan)] * len(fits["time_s"]))
    return fits, patterns


def write_analysis(writer, raw_start: dict, fits: dict, patterns: dict) -> str:
    """Write ``fits`` and ``patterns`` to ``writer`` as the analysis run of ``raw_start`` (its
    start names the raw run, as :class:`~ncsynth.analysis.run_analysis.SAXSAnalysis` writes it);
    returns the analysis run's uid."""
    bundle = compose_run(metadata={"raw_uid": raw_start["uid"],
                                   "raw_scan_id": raw_start.get("scan_id"),
                                   "raw_run": raw_description(raw_start),
                                   "plan_name": "saxs_analysis"})
    writer("start", bundle.start_doc)
    array = {"dtype": "array", "dtype_numpy": "<f8", "shape": [Q_NM.size], "source": "test"}
    streams = [("fits", {key: FIT_KEYS[key] for key in fits}, fits),
               ("patterns", {"time_s": FIT_KEYS["time_s"], **{key: array for key in patterns
                                                              if key != "time_s"}}, patterns)]
    for name, data_keys, columns in streams:
        descriptor = bundle.compose_descriptor(name=name, data_keys=data_keys)
        writer("descriptor", descriptor.descriptor_doc)
        for i in range(len(columns["time_s"])):
            row = {key: np.asarray(value[i]).tolist() for key, value in columns.items()}
            writer("event", descriptor.compose_event(data=row, timestamps={k: 0.0 for k in row}))
    writer("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]

