"""The flow reactor's dry run: the temperature-grid plan on the simulated reactor, then its analysis.

Starts a :class:`~ncsynth.simulators.flow_reactor.SimulatedFlowReactor` (volumes and optical
path from ``[flow]``), connects the same device classes the hutch uses
(:func:`~ncsynth.flow_instruments.connect_flow`), installs the world's clock as the time base,
runs :func:`~ncsynth.plans.flow.temperature_grid` in a RunEngine writing to the embedded
catalog, and then analyses the run as stored (:func:`analyse_flow_run`): per point the
cluster families of the spectrum (:func:`~ncsynth.analysis.clusters.identify_clusters`) and a
McSAS size distribution of the SAXS pattern (:func:`~ncsynth.analysis.mcsas.fit_mcsas`,
its 1σ with the noise's share: :mod:`~ncsynth.analysis.mcsas_noise`), and draws the
temperature map (:mod:`ncsynth.analysis.temperature_map`).

SAXS patterns are reduced as the hot-injection live analysis reduces frames
(:class:`~ncsynth.analysis.reduction.Reducer`: pyFAI, Poisson σ, absolute scale from the
detector's reported flux, transmission and path), averaged per point and minus the averaged
``blank`` stream (the solvent-filled cell).

Measured (2-core machine, default grid of 28 points, 1 event per point, 5 × 50 ms scans per
spectrum, 1 s frames): see ``docs/flow_reactor.md``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import NamedTuple

import numpy as np
from event_model import DocumentRouter

from ncsynth import timebase
from ncsynth.analysis.clusters import identify_clusters
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.mcsas import fit_mcsas
from ncsynth.analysis.mcsas_noise import noise_spread, refit, refit_jobs, with_noise
from ncsynth.analysis.pool import search_pool
from ncsynth.analysis.optical import (CDSE_DENSITY_G_PER_CM3, CDSE_MOLAR_MASS_G_PER_MOL,
                                      MSC_PEAKS_NM, cdse_diameter_nm)
from ncsynth.analysis.reduction import Reducer, average, calibration_from_beam, subtract
from ncsynth.analysis.temperature_map import SPECIES, temperature_map_figure
from ncsynth.config import catalog_databases, data_dir
from ncsynth.flow_instruments import connect_flow, simulated_flow
from ncsynth.plans.flow import temperature_grid
from ncsynth.plans.flow_points import DEFAULT_GRID, DEFAULT_RESIDENCE_S
from ncsynth.progress import ProgressBar
from ncsynth.run_engine import RunEngine
from ncsynth.simulators.flow_reactor import SimulatedFlowReactor
from ncsynth.storage import open_catalog
from ncsynth.termination import run_to_the_end

logger = logging.getLogger(__name__)

#: Radii (nm) the McSAS contributions span: just above π/q_max (0.63 nm at 5 nm⁻¹) up to large NCs.
SAXS_RADIUS_RANGE_NM = (0.65, 3.0)
#: McSAS settings per point: fewer contributions and repetitions than a publication fit, so a
#: grid point takes well under a second.
MCSAS_OPTIONS = {"n_contributions": 100, "repetitions": 4, "max_iterations": 20_000, "n_bins": 30}
#: Noise-bootstrap refits per point (:mod:`ncsynth.analysis.mcsas_noise`; one repetition each):
#: the repetitions' spread alone left the outlet's φ up to 4.4 of it away where McSAS
#: describes the pattern, the 1σ with the noise's share 2.5 (docs/flow_reactor.md).
NOISE_REFITS = 8
#: mL of CdSe per mol of CdSe units (volume fractions from unit concentrations).
CM3_PER_MOL_CDSE = CDSE_MOLAR_MASS_G_PER_MOL / CDSE_DENSITY_G_PER_CM3


def flow_dry_run(config: dict, *, grid: dict | None = None, residence_s: float | None = None,
                 speed: float | None = None, seed: int | None = None,
                 processes: int | None = None, progress: bool = True) -> dict:
    """Run the temperature grid on the simulated flow reactor; return the summary dict.

    ``grid``: ``{"nucleation_c": [...], "growth_c": [...]}`` (°C, default :data:`DEFAULT_GRID`);
    ``residence_s``: reaction time (s, default 14); ``speed`` None/0: the world's clock jumps
    from deadline to deadline, K: K × real time; ``seed``: the simulator's noise (default
    ``[simulation] seed``); ``processes``: the SAXS noise bootstrap's pool
    (:func:`analyse_flow_run`).  Ctrl-C, SIGTERM and SIGHUP abort the plan, whose clean-up stops
    the pumps and switches both heaters off (:func:`~ncsynth.termination.run_to_the_end`);
    the points measured until then are analysed.  Summary: ``uid``, ``exit_status``,
    ``heaters`` and ``pumps`` (each zone's safe state and each pump's state after the plan, as
    the devices read them back), ``error`` (what ended the plan early),
    ``terminated_by`` (a signal's name), ``points`` (conditions, the
    families found with their CdSe units in mol/L and 1σ (``families_err``), the NC exciton,
    the SAXS fit and the simulator's truth per point, ``errors`` of its analysis),
    ``families`` (labels per point),
    ``analysis_errors``, ``figure`` (PNG path), ``wall_s`` and its parts, ``data_dir``.
    """
    wall0 = time.perf_counter()
    sim_cfg, flow_cfg = config.get("simulation", {}), config["flow"]
    speed = speed if speed is not None else (sim_cfg.get("speed") or None)
    seed = seed if seed is not None else sim_cfg.get("seed")
    grid = {**DEFAULT_GRID, **(grid or {})}
    residence_s = DEFAULT_RESIDENCE_S if residence_s is None else residence_s
    root = data_dir(config)
    path_cm = float(flow_cfg["spectrometer"]["path_cm"])
    with open_catalog(root, **catalog_databases(config)) as catalog:
        recovered = catalog.recover()
        wall1 = time.perf_counter()
        acquired = _acquire(catalog, config, grid, residence_s, speed, seed, progress)
        uid = acquired.uid
        wall2 = time.perf_counter()
        points = analyse_flow_run(catalog[uid], path_cm=path_cm, seed=seed,
                                  processes=processes) if uid else []
    for point in points:
        point["truth"] = held = acquired.truth.get(point["index"], {})
        if point["saxs"] and held:
            point["saxs"]["truth_volume_fraction"] = truth_volume_fraction(held)
    figure = None
    if points:
        figure = str(temperature_map_figure(
            [p["nucleation_c"] for p in points], [p["growth_c"] for p in points],
            {label: [p["families"].get(label, 0.0) for p in points] for label in SPECIES},
            root / "figures" / f"temperature_map_{uid[:8]}.png",
            title=f"CdSe species at {residence_s:g} s reaction time (dry run {uid[:8]})"))
    summary = {"uid": uid, "exit_status": acquired.exit_status, "residence_s": residence_s,
               "heaters": acquired.heaters, "pumps": acquired.pumps,
               "points": points, "families": [sorted(p["families"]) for p in points],
               "analysis_errors": sum(len(p["errors"]) for p in points),
               "figure": figure, "data_dir": str(root),
               "wall_s": round(time.perf_counter() - wall0, 2),
               "acquisition_wall_s": round(wall2 - wall1, 2),
               "analysis_wall_s": round(time.perf_counter() - wall2, 2)}
    if acquired.error is not None:
        summary["error"] = acquired.error
    if acquired.terminated_by is not None:
        summary["terminated_by"] = acquired.terminated_by
    if recovered:
        summary["recovered_runs"] = [r._asdict() for r in recovered]
    return summary


class _OutletTruth(DocumentRouter):
    """What the simulated outlet holds at each ``primary`` event (CdSe units, mol/L per species),
    by ``condition_index`` (the last event of a point)."""

    def __init__(self, sim: SimulatedFlowReactor):
        super().__init__()
        self.sim = sim
        self.points: dict[int, dict] = {}
        self._primary: set[str] = set()

    def descriptor(self, doc):
        if doc.get("name") == "primary":
            self._primary.add(doc["uid"])

    def event(self, doc):
        if doc["descriptor"] in self._primary:
            with self.sim.world.lock:
                self.sim.world.advance()
                outlet = self.sim.world.reactor.outlet()
            held = {label: outlet.family_units_molar(label) for label in MSC_PEAKS_NM}
            held["NC"] = outlet.nc_units_molar
            self.points[int(doc["data"]["condition_index"])] = held


def _acquire(catalog, config, grid, residence_s, speed, seed, progress):
    """Run the grid plan to its end (:func:`~ncsynth.termination.run_to_the_end`); what it
    acquired and how it ended, as :class:`_Acquired`."""
    flow_cfg = config["flow"]
    volumes = {key[:-len("_volume_ml")]: value for key, value in flow_cfg["reactor"].items()
               if key.endswith("_volume_ml")}
    with SimulatedFlowReactor(speed, seed, volumes_ml=volumes,
                              optical_path_cm=float(flow_cfg["spectrometer"]["path_cm"])) as sim, \
            timebase.use_clock(sim.clock):
        devices = connect_flow(simulated_flow(config, sim), spectrometer_backend=sim.spectrometer)
        scan = flow_cfg["scan"]
        plan = temperature_grid(devices.pumps, devices.chamber, devices.oven, devices.spectrometer,
                                devices.detector, nucleation_c=grid["nucleation_c"],
                                growth_c=grid["growth_c"], residence_s=residence_s,
                                reactor=devices.reactor, flush_volumes=scan["flush_volumes"],
                                frames_per_point=scan["frames_per_point"], n_blank=scan["n_blank"],
                                block_lamp=sim.spectrometer.block_lamp, timer=devices.timer,
                                md={"dry_run": True})
        RE = RunEngine({}, scan_id_source=catalog.scan_ids())
        sim.clock.follow(RE)  # the world's clock never jumps while the plan is working
        writer = catalog.writer()
        truth = _OutletTruth(sim)
        RE.subscribe(writer)
        RE.subscribe(truth)
        if progress:
            RE.subscribe(ProgressBar())
        ended = _RunEnd()
        RE.subscribe(ended)
        try:
            error, signal_name = run_to_the_end(RE, plan, what="flow dry run",
                                                safe="pumps stopped, heaters off")
        finally:
            writer.flush()
            writer.close()
            devices.close()  # waits until both heaters are confirmed safe
            heaters = {zone.name: zone.safe_state.get() for zone in (devices.chamber, devices.oven)}
            pumps = {pump.name: pump.state.get() for pump in devices.pumps}  # their read-back
    return _Acquired(ended.uid, ended.exit_status or ("fail" if error else "unknown"),
                     truth.points, error, signal_name, heaters, pumps)


class _RunEnd:
    """The run's start uid and its stop's exit status, as the RunEngine emits them."""

    uid = exit_status = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start" and self.uid is None:
            self.uid = doc["uid"]
        elif name == "stop" and doc.get("run_start") == self.uid:
            self.exit_status = doc.get("exit_status")


class _Acquired(NamedTuple):
    uid: str | None
    exit_status: str
    truth: dict            # what the outlet held, by point index
    error: str | None      # what ended the plan early, if anything
    terminated_by: str | None
    heaters: dict          # zone name -> its safe state, after the plan
    pumps: dict            # pump name -> its state, after the plan


# -- analysis of a stored grid run ---------------------------------------------------------------
def analyse_flow_run(run, *, path_cm: float, seed=None,
                     processes: int | None = None) -> list[dict]:
    """Per point of a stored :func:`~ncsynth.plans.flow.flow_scan` run: conditions, cluster
    families (CdSe units, mol/L) and NC exciton from the mean spectrum, McSAS of the mean SAXS
    pattern minus the blank with its noise bootstrap.  ``path_cm``: the optic flow cell's
    path; ``seed``: McSAS's and the bootstrap's; ``processes``: the bootstrap's refits run in
    a pool of that many (None: one per CPU, 1: in this process)."""
    if "primary" not in run:  # ended before its first point (Ctrl-C, a fault)
        return []
    stream = run["primary"]
    config = stream.metadata["configuration"]
    wavelength = np.asarray(config["uv"]["data"]["uv_wavelength_nm"], dtype=float)
    absorbance = np.asarray(stream["uv_absorbance"].read(), dtype=float)
    index = np.asarray(stream["condition_index"].read())
    conditions = {name: np.asarray(stream[f"condition_{name}"].read(), dtype=float)
                  for name in ("nucleation_c", "growth_c", "residence_s", "flow_ml_min")}
    reducer, exposure_s = _reducer(config["saxs"]["data"])
    frames = stream["saxs_image"].read()
    blank_exposure = run["blank"].metadata["configuration"]["saxs"]["data"]["saxs_exposure_time"]
    blank = average([reducer.reduce(frame, blank_exposure)
                     for frame in run["blank"]["saxs_image"].read()])
    points, fits = [], []
    for k in np.unique(index):
        rows = np.flatnonzero(index == k)
        point = {"index": int(k), **{name: float(v[rows[0]]) for name, v in conditions.items()},
                 "families": {}, "families_err": {}, "nc_exciton_nm": math.nan, "saxs": {},
                 "errors": []}
        try:  # one point's failed analysis must not lose the others
            point.update(_spectrum_families(wavelength, absorbance[rows].mean(axis=0), path_cm))
        except Exception as error:
            point["errors"].append(f"spectrum: {type(error).__name__}: {error}")
        try:
            pattern = subtract(average([reducer.reduce(frames[i], exposure_s) for i in rows]),
                               blank)
            fits.append((point, *_saxs_fit(pattern, seed)))
        except Exception as error:
            point["errors"].append(f"saxs: {type(error).__name__}: {error}")
        points.append(point)
    _add_noise_spread(fits, seed, processes)
    for point in points:
        for message in point["errors"]:
            logger.error("point %d: %s", point["index"], message)
    return points


def _reducer(saxs_config: dict) -> tuple[Reducer, float]:
    geometry = DetectorGeometry.from_dict(json.loads(saxs_config["saxs_geometry_json"]))
    calibration = calibration_from_beam(float(saxs_config["saxs_flux_ph_per_s"]),
                                        float(saxs_config["saxs_transmission"]), geometry)
    return (Reducer(geometry, calibration=calibration,
                    path_length_cm=float(saxs_config["saxs_thickness_cm"])),
            float(saxs_config["saxs_exposure_time"]))


def _spectrum_families(wavelength, absorbance, path_cm) -> dict:
    """{"families": {label: CdSe units mol/L}, "families_err": {label: their 1σ, mol/L},
    "nc_exciton_nm": ...} of one spectrum."""
    usable = np.isfinite(absorbance)
    found = identify_clusters(wavelength[usable], absorbance[usable], path_cm)
    return {"families": {f.label: f.concentration_molar * f.cdse_units for f in found},
            "families_err": {f.label: f.concentration_err_molar * f.cdse_units for f in found},
            "nc_exciton_nm": next((f.peak_nm for f in found if f.kind == "NC"), math.nan)}


def _saxs_fit(pattern, seed) -> tuple:
    """McSAS of one background-subtracted pattern: (its summary, the fit, σ at the fit's q).
    The summary holds the volume fraction, the volume-weighted radius, the repetitions' spread
    of each (``*_repetitions_err``), and whether the fit describes the pattern
    (``describes_data``: the χ² p-value of its worst repetition, ``misfit_p_value``, not below
    ``MISFIT_P_VALUE``); :func:`_add_noise_spread` adds the noise's share and the 1σ."""
    usable = np.isfinite(pattern.intensity_cm) & (pattern.sigma_cm > 0)
    sigma = pattern.sigma_cm[usable]
    fit = fit_mcsas(pattern.q_nm[usable], pattern.intensity_cm[usable], sigma,
                    SAXS_RADIUS_RANGE_NM, seed=seed, **MCSAS_OPTIONS)
    stats = fit.moments()
    summary = {"volume_fraction": fit.volume_fraction,
               "volume_fraction_repetitions_err": fit.volume_fraction_err,
               "volume_mean_radius_nm": stats.volume_mean_nm,
               "volume_mean_radius_repetitions_err_nm": stats.volume_mean_err_nm,
               "chi2_reduced": float(np.mean(fit.chi2_reduced)),
               "chi2_reduced_max": float(np.max(fit.chi2_reduced)),
               "misfit_p_value": fit.misfit_p_value, "describes_data": fit.describes_data}
    return summary, fit, sigma


def _add_noise_spread(fits: list[tuple], seed, processes: int | None) -> None:
    """Each point's McSAS values with their noise bootstrap (:mod:`ncsynth.analysis.mcsas_noise`,
    ``NOISE_REFITS`` refits per point, all points' refits in one pool): ``*_noise_err`` and the
    1σ ``volume_fraction_err``, ``volume_mean_radius_err_nm`` (repetitions ⊕ noise). Where the
    pool fails, the noise errors are NaN, the 1σ is the repetitions' spread alone and the
    point's ``errors`` say why."""
    jobs = [refit_jobs(fit, sigma, refits=NOISE_REFITS, seed=None if seed is None else (seed, k),
                       **MCSAS_OPTIONS) for k, (_, _, fit, sigma) in enumerate(fits)]
    results: list = [[] for _ in fits]
    if fits:
        try:
            with search_pool(processes, code="ncsynth.analysis.mcsas_noise") as mapper:
                flat = list(mapper(refit, [job for point_jobs in jobs for job in point_jobs]))
            results = [flat[k * NOISE_REFITS:(k + 1) * NOISE_REFITS] for k in range(len(fits))]
        except Exception as error:
            for point, *_ in fits:
                point["errors"].append(f"saxs noise bootstrap: {type(error).__name__}: {error}")
    for (point, summary, _, _), refitted in zip(fits, results):
        spread = noise_spread(refitted)
        summary["volume_fraction_noise_err"] = spread.volume_fraction_err
        summary["volume_mean_radius_noise_err_nm"] = spread.volume_mean_err_nm
        summary["volume_fraction_err"] = with_noise(summary["volume_fraction_repetitions_err"],
                                                    spread.volume_fraction_err)
        summary["volume_mean_radius_err_nm"] = with_noise(
            summary["volume_mean_radius_repetitions_err_nm"], spread.volume_mean_err_nm)
        point["saxs"] = summary


def truth_volume_fraction(held: dict, min_radius_nm: float = SAXS_RADIUS_RANGE_NM[0]) -> float:
    """CdSe volume fraction of the species in ``held`` (label → CdSe units, mol/L) whose radius
    reaches ``min_radius_nm`` (MSC families by their sizing-curve diameter; NCs always)."""
    units = sum(value for label, value in held.items()
                if label == "NC" or cdse_diameter_nm(MSC_PEAKS_NM[label]) / 2 >= min_radius_nm)
    return units * CM3_PER_MOL_CDSE / 1000.0

