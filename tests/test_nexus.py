"""NeXus export: a real dry run (30 frames) in a catalog, exported by ``export_fits(format="nexus")``
and read back with h5py (and silx, which pyFAI brings): the layout NXcanSAS asks for, and the
numbers of the catalog's derived run and raw run, not of the writer's own inputs."""

from __future__ import annotations

from datetime import datetime

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plans as bp
from ophyd.sim import det
from scipy import constants

import ncsynth
from ncsynth.analysis.derived_run import FIT_KEYS
from ncsynth.analysis.nexus import RUN_ENTRY, frame_entry_name, hold_at, write_fits_nexus
from ncsynth.analysis.scattering import molar_to_per_cm3
from ncsynth.config import load_config
from ncsynth.dryrun import dry_run
from ncsynth.runs import RunError, derived_run, export_fits
from ncsynth.storage import open_catalog
from ncsynth.storage.catalog import RunNotFound

N_FRAMES = 30
SAMPLE = "CdSe for the NeXus test"


@pytest.fixture(scope="module")
def catalog_runs(tmp_path_factory):
    """(data dir, analysed raw uid, unanalysed raw uid): a short dry run and a count in one catalog."""
    root = tmp_path_factory.mktemp("data")
    config = load_config(None)
    config["data"]["dir"] = str(root)
    # writer and analysis in this process (processes=()): the same documents and fits, without
    # two worker processes importing Tiled and the analysis again
    analysed = dry_run(config, seed=1, progress=False, recipe_kwargs={"sample": SAMPLE, "reaction_time_s": 100},
                       plan_kwargs={"schedule_s": np.geomspace(1, 120, N_FRAMES).round(3).tolist(),
                                    "n_background": 2, "monitor_period_s": 10}, processes=())
    assert analysed["exit_status"] == "success" and analysed["frames_analysed"] == N_FRAMES
    with open_catalog(root) as catalog:  # a run nothing analysed: a plain count, stored like any run
        writer = catalog.writer()
        RE = RunEngine({})
        RE.subscribe(writer)
        (bare_uid,) = RE(bp.count([det], num=2))
        writer.close()
    return root, analysed["uid"], bare_uid


@pytest.fixture(scope="module")
def exported(catalog_runs, tmp_path_factory):
    """The NeXus file of the analysed run (referred to by a partial uid) and the catalog's own data."""
    root, uid, _ = catalog_runs
    path = tmp_path_factory.mktemp("export") / "run.nxs"
    with open_catalog(root) as catalog:
        assert export_fits(catalog, uid[:8], path, format="nexus") == path
        raw = catalog[uid]
        derived = derived_run(catalog, uid)
        stored = {"raw_start": raw.metadata["start"], "analysis": derived.metadata["start"]["analysis"],
                  "fits": derived["fits"].read(), "patterns": derived["patterns"].read(),
                  "kinetics": derived["kinetics"].read(),
                  "heater_output": raw["primary"]["heater_output"].read(),
                  "heater_temperature": raw["primary"]["heater_temperature"].read()}
    return path, stored


def _text(dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _frames(f):
    return [f[frame_entry_name(i)] for i in range(N_FRAMES)]


def test_the_file_has_the_nxcansas_layout(exported):
    path, stored = exported
    n_q = stored["analysis"]["n_bins"]
    with h5py.File(path, "r") as f:
        # one SASentry per frame, in order, then the run's own NXentry
        assert list(f) == [f"frame_{i:04d}" for i in range(N_FRAMES)] + [RUN_ENTRY]
        assert f.attrs["default"] == RUN_ENTRY
        for entry in _frames(f):
            assert (entry.attrs["NX_class"], entry.attrs["canSAS_class"]) == ("NXentry", "SASentry")
            assert entry.attrs["version"] == "1.1" and entry.attrs["default"] == "sasdata"
            assert _text(entry["definition"]) == "NXcanSAS"
            for name, nx_class, cansas in [("sasdata", "NXdata", "SASdata"),
                                           ("sasinstrument", "NXinstrument", "SASinstrument"),
                                           ("sasinstrument/sassource", "NXsource", "SASsource"),
                                           ("sasinstrument/sasdetector", "NXdetector", "SASdetector"),
                                           ("sassample", "NXsample", "SASsample"),
                                           ("sasprocess", "NXprocess", "SASprocess")]:
                assert entry[name].attrs["NX_class"] == nx_class, name
                assert entry[name].attrs.get("canSAS_class") == cansas, name
            data = entry["sasdata"]
            assert data["I"].shape == data["Idev"].shape == data["Imodel"].shape == data["Q"].shape == (n_q,)
            assert data["Time"].shape == ()
            assert (data.attrs["signal"], data.attrs["I_axes"], data.attrs["Q_indices"]) == ("I", "Q", 0)
            assert data["I"].attrs["uncertainties"] == "Idev"
            units = {name: data[name].attrs["units"] for name in ("I", "Idev", "Imodel", "Q", "Time")}
            assert units == {"I": "1/cm", "Idev": "1/cm", "Imodel": "1/cm", "Q": "1/nm", "Time": "s"}
            assert entry["sassample/thickness"].attrs["units"] == "mm"
            assert entry["sassample/temperature"].attrs["units"] == "degC"
        # the q grid, instrument and process are stored once and hard-linked into every frame
        first = f[frame_entry_name(0)]
        for entry in _frames(f)[1:]:
            for name in ("sasdata/Q", "sasinstrument", "sasprocess"):
                assert entry[name] == first[name], name
        run = f[RUN_ENTRY]
        assert run.attrs["NX_class"] == "NXentry" and "canSAS_class" not in run.attrs
        assert run.attrs["default"] == "fits"
        for name, nx_class in [("fits", "NXdata"), ("kinetics", "NXcollection"), ("recipe", "NXnote")]:
            assert run[name].attrs["NX_class"] == nx_class, name
            assert "canSAS_class" not in run[name].attrs, name
        fits = run["fits"]
        assert (fits.attrs["signal"], fits.attrs["axes"]) == ("radius_nm", "time_s")
        assert {name: fits[name].attrs["units"] for name in
                ("time_s", "radius_nm", "radius_err_nm", "sigma_nm", "sigma_err_nm", "concentration_molar",
                 "concentration_err_molar", "yield_fraction", "background_cm", "chi2_reduced",
                 "temperature_c", "heater_output_percent")} == {
            "time_s": "s", "radius_nm": "nm", "radius_err_nm": "nm", "sigma_nm": "nm", "sigma_err_nm": "nm",
            "concentration_molar": "mol/L", "concentration_err_molar": "mol/L", "yield_fraction": "1",
            "background_cm": "1/cm", "chi2_reduced": "1", "temperature_c": "degC",
            "heater_output_percent": "%"}
        assert all(len(fits[name]) == N_FRAMES for name in fits)
        # NXcanSAS: every numerical object carries units
        floats = []
        f.visititems(lambda name, obj: floats.append(name) if isinstance(obj, h5py.Dataset)
                     and obj.dtype.kind == "f" and "units" not in obj.attrs else None)
        assert floats == []


def test_the_numbers_are_the_catalogs(exported):
    path, stored = exported
    fits, patterns = stored["fits"], stored["patterns"]
    with h5py.File(path, "r") as f:
        for i, entry in enumerate(_frames(f)):
            data = entry["sasdata"]
            np.testing.assert_array_equal(data["I"][()], np.asarray(patterns["intensity_cm"])[i])
            np.testing.assert_array_equal(data["Idev"][()], np.asarray(patterns["sigma_cm"])[i])
            np.testing.assert_array_equal(data["Imodel"][()], np.asarray(patterns["model_cm"])[i])
            np.testing.assert_array_equal(data["Q"][()], np.asarray(patterns["q_nm"])[i])
            assert data["Time"][()] == np.asarray(fits["time_s"])[i]
            # temperature of each frame: the raw run's own primary reading
            assert entry["sassample/temperature"][()] == stored["heater_temperature"][i]
        table = f[RUN_ENTRY]["fits"]
        for name in ("time_s", "frame_time", "radius_nm", "radius_err_nm", "sigma_nm", "sigma_err_nm",
                     "concentration_molar", "concentration_err_molar", "background_cm",
                     "yield_fraction", "chi2_reduced"):
            np.testing.assert_array_equal(table[name][()], np.asarray(fits[name]), err_msg=name)
        np.testing.assert_array_equal(table["success"][()].astype(bool), np.asarray(fits["success"]))
        assert [r.decode() for r in table["reason"][()]] == [str(r) for r in np.asarray(fits["reason"])]
        np.testing.assert_array_equal(table["radius_nm_errors"][()], np.asarray(fits["radius_err_nm"]))
        # temperature and heater output of each frame: the raw run's own primary readings
        np.testing.assert_array_equal(table["temperature_c"][()], stored["heater_temperature"])
        np.testing.assert_array_equal(table["heater_output_percent"][()], stored["heater_output"])
        # the heater is switched off at the recipe's reaction time (100 s): frames after it read 0 %
        late = table["time_s"][()] > 105
        assert late.any() and np.all(table["heater_output_percent"][()][late] == 0)
        assert np.any(table["heater_output_percent"][()][~late] > 0)
        kinetics = f[RUN_ENTRY]["kinetics"]
        for name in ("t_yield_s", "k2_l_per_mol_s", "yield_inf", "n_frames", "n_failed"):
            np.testing.assert_array_equal(kinetics[name][()], np.asarray(stored["kinetics"][name])[0])
        assert kinetics["n_frames"][()] == N_FRAMES


def test_the_metadata_is_the_runs(exported):
    path, stored = exported
    start = stored["raw_start"]
    with h5py.File(path, "r") as f:
        run = f[RUN_ENTRY]
        assert _text(run["experiment_identifier"]) == start["uid"]
        assert _text(run["entry_identifier"]) == f"scan {start['scan_id']}"
        assert datetime.fromisoformat(_text(run["start_time"])).timestamp() == pytest.approx(start["time"], abs=1e-5)
        assert datetime.fromisoformat(_text(run["end_time"])) > datetime.fromisoformat(_text(run["start_time"]))
        assert _text(run["program_name"]) == "ncsynth"
        assert run["program_name"].attrs["version"] == ncsynth.__version__
        assert SAMPLE in _text(run["experiment_description"])
        assert not {"title", "run", "definition"} & set(run)  # sasdata would give them to the last frame
        assert f"\"sample\": \"{SAMPLE}\"" in _text(run["recipe/data"])
        for i, entry in enumerate(_frames(f)):
            assert _text(entry["run"]) == start["uid"]
            assert SAMPLE in _text(entry["title"]) and f"frame {i}," in _text(entry["title"])
            assert _text(entry["sassample/name"]) == SAMPLE
            # §S.2.1: 0.4 cm capillary path, written in mm (sasdata ignores the unit and assumes mm)
            assert entry["sassample/thickness"][()] == pytest.approx(4.0)
        # seed 000 §S.1.4: 18 keV at 1.0 m, 0.354 mm binned pixels; λ = hc/E
        instrument = f[frame_entry_name(0)]["sasinstrument"]
        assert instrument["monochromator/energy"][()] == 18.0
        wavelength_nm = constants.h * constants.c / (18e3 * constants.e) * 1e9
        assert instrument["sassource/incident_wavelength"][()] == pytest.approx(wavelength_nm, rel=1e-8)
        assert instrument["sasdetector/SDD"][()] == 1.0
        assert instrument["sasdetector/SDD"].attrs["units"] == "m"
        assert instrument["sasdetector/x_pixel_size"][()] == pytest.approx(0.354e-3)


def test_silx_reads_the_fit_table_and_each_frame_as_plots_with_errors(exported):
    nxdata = pytest.importorskip("silx.io.nxdata")
    path, stored = exported
    with h5py.File(path, "r") as f:
        fits = nxdata.NXdata(f[RUN_ENTRY]["fits"])
        assert fits.is_valid and fits.is_curve, fits.issues
        np.testing.assert_array_equal(fits.errors[()], np.asarray(stored["fits"]["radius_err_nm"]))
        assert fits.get_axis_errors("time_s") is None
        for i in (0, N_FRAMES - 1):
            frame = nxdata.NXdata(f[frame_entry_name(i)]["sasdata"])
            assert frame.is_valid and frame.is_curve, frame.issues
            assert frame.axes[0].name.endswith("/Q")
            np.testing.assert_array_equal(frame.signal[()], np.asarray(stored["patterns"]["intensity_cm"])[i])
            np.testing.assert_array_equal(frame.errors[()], np.asarray(stored["patterns"]["sigma_cm"])[i])


# -- SasView's loader (sasdata, a test dependency) --------------------------------------------------
@pytest.fixture(scope="module")
def sasview_loaded(exported):
    """The exported file as SasView loads it: sasdata's loader picks its NXcanSAS reader."""
    from sasdata.dataloader.data_info import Data1D
    from sasdata.dataloader.loader import Loader

    path, _ = exported
    loaded = Loader().load(str(path))
    assert all(isinstance(data, Data1D) for data in loaded), [type(data) for data in loaded]
    return loaded


def _finite_frame(patterns, i):
    """Frame ``i``'s (q in 1/nm, I, σ) where all three are finite, in increasing q (as sasdata sorts)."""
    q, y, dy = (np.asarray(patterns[name], dtype=float)[i] for name in ("q_nm", "intensity_cm", "sigma_cm"))
    keep = np.isfinite(q) & np.isfinite(y) & np.isfinite(dy)
    order = np.argsort(q[keep], kind="stable")
    return q[keep][order], y[keep][order], dy[keep][order]


def test_sasview_loads_one_dataset_per_frame_with_the_catalogs_numbers(exported, sasview_loaded):
    _, stored = exported
    patterns = stored["patterns"]
    assert len(sasview_loaded) == N_FRAMES
    for i, data in enumerate(sasview_loaded):
        assert data.errors == [], (i, data.errors)
        assert f"frame {i}," in data.title, (i, data.title)
        # sasdata converts Q to 1/Å and keeps I in 1/cm; it reports the units in its own spelling
        assert (data.x_unit, data.y_unit) == ("A^{-1}", "cm^{-1}"), i
        q_nm, intensity, sigma = _finite_frame(patterns, i)
        assert len(q_nm) >= 5, i  # fewer points would be flagged by the reader
        np.testing.assert_allclose(data.x, q_nm / 10.0, rtol=1e-12, atol=0, err_msg=f"frame {i}")
        np.testing.assert_array_equal(data.y, intensity, err_msg=f"frame {i}")
        np.testing.assert_array_equal(data.dy, sigma, err_msg=f"frame {i}")


def test_sasview_reads_the_path_length_and_each_frames_temperature(exported, sasview_loaded):
    _, stored = exported
    for i, data in enumerate(sasview_loaded):
        assert (data.sample.thickness, data.sample.thickness_unit) == (pytest.approx(4.0), "mm"), i  # 0.4 cm
        assert data.sample.name == SAMPLE
        assert data.sample.temperature == stored["heater_temperature"][i]
        assert data.run == [stored["raw_start"]["uid"]]


def _sasmodels_sphere_fit(x_per_a, y, dy, start_radius_a, start_pd, start_scale, start_background):
    """Least-squares fit of sasmodels' polydisperse sphere (Gaussian radius, ±5σ; CdSe in the reaction
    mixture, seed 000 below S2.4) to one pattern; returns (radius Å, radius_pd, scale, background)."""
    from sasmodels.core import load_model
    from sasmodels.direct_model import call_kernel
    from scipy.optimize import least_squares

    kernel = load_model("sphere", dtype="double").make_kernel([np.asarray(x_per_a)])

    def intensity(p):
        radius_a, pd, log_scale, background = p
        return call_kernel(kernel, dict(radius=radius_a, radius_pd=pd, radius_pd_n=200, radius_pd_nsigma=5,
                                        sld=40.7, sld_solvent=5.5, scale=np.exp(log_scale),
                                        background=background))

    result = least_squares(lambda p: (intensity(p) - y) / dy,
                           [start_radius_a, start_pd, np.log(start_scale), start_background],
                           bounds=([2.0, 0.0, -60.0, -np.inf], [200.0, 0.6, 0.0, np.inf]),
                           x_scale=[1.0, 0.01, 0.1, max(abs(start_background), 1e-4)], xtol=1e-12, ftol=1e-12)
    assert result.success, result.message
    radius_a, pd, log_scale, background = result.x
    return radius_a, pd, np.exp(log_scale), background


def test_a_sasmodels_fit_of_a_loaded_frame_agrees_with_ncsynths_fit(exported, sasview_loaded):
    _, stored = exported
    fits = {name: np.asarray(stored["fits"][name]) for name in
            ("radius_nm", "radius_err_nm", "sigma_nm", "sigma_err_nm", "concentration_molar",
             "concentration_err_molar", "background_cm", "success")}
    # a frame whose width the pattern resolves, and whose radius differs from the last frame's by
    # many standard errors: a file that loads every frame as the last one fails here
    last = N_FRAMES - 1
    candidates = [i for i in range(N_FRAMES // 2, last) if fits["success"][i]
                  and 0 < fits["sigma_err_nm"][i] < fits["sigma_nm"][i] / 2
                  and abs(fits["radius_nm"][i] - fits["radius_nm"][last]) > 5 * fits["radius_err_nm"][i]]
    assert candidates, fits["radius_nm"]
    i = candidates[0]
    data = sasview_loaded[i]
    radius, sigma = fits["radius_nm"][i], fits["sigma_nm"][i]
    # sasmodels' scale is the volume fraction n·⟨V⟩ (⟨R³⟩ = R³ + 3Rσ² for a Gaussian)
    phi = molar_to_per_cm3(fits["concentration_molar"][i]) * 4 / 3 * np.pi * (radius**3 + 3 * radius * sigma**2) * 1e-21
    # start away from ncsynth's answer: 15 % larger radius, 1.5× the width, 30 % less material
    radius_a, pd, scale, background = _sasmodels_sphere_fit(
        data.x, data.y, data.dy, 11.5 * radius, 1.5 * sigma / radius, 0.7 * phi, fits["background_cm"][i])
    found = {"radius_nm": radius_a / 10, "sigma_nm": pd * radius_a / 10}
    assert found["radius_nm"] == pytest.approx(radius, abs=fits["radius_err_nm"][i]), (i, found)
    assert found["sigma_nm"] == pytest.approx(sigma, abs=fits["sigma_err_nm"][i]), (i, found)
    relative_c_err = fits["concentration_err_molar"][i] / fits["concentration_molar"][i]
    assert scale == pytest.approx(phi, rel=relative_c_err), (i, scale / phi, relative_c_err)


@pytest.mark.parametrize("fmt", ["csv", "nexus"])
def test_bad_references_fail_alike_and_write_nothing(catalog_runs, tmp_path, fmt):
    root, _, bare_uid = catalog_runs
    path = tmp_path / f"out.{fmt}"
    with open_catalog(root) as catalog:
        with pytest.raises(RunNotFound, match="no run with uid"):
            export_fits(catalog, "0123456789", path, format=fmt)
        with pytest.raises(RunError, match="has not been analysed"):
            export_fits(catalog, bare_uid, path, format=fmt)
        with pytest.raises(ValueError, match="too short"):
            export_fits(catalog, "01", path, format=fmt)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_refused(catalog_runs, tmp_path):
    root, uid, _ = catalog_runs
    with open_catalog(root) as catalog, pytest.raises(ValueError, match="format must be one of"):
        export_fits(catalog, uid, tmp_path / "out.xml", format="xml")
    assert list(tmp_path.iterdir()) == []


# -- the writer on its own ---------------------------------------------------------------------
def _small_run(n_frames=3, n_q=4):
    columns = {"number": lambda: np.linspace(1.0, 2.0, n_frames), "integer": lambda: np.ones(n_frames, int),
               "boolean": lambda: np.ones(n_frames, bool), "string": lambda: np.array([""] * n_frames)}
    fits = {name: columns[info["dtype"]]() for name, info in FIT_KEYS.items()}  # every column the stream has
    q = np.tile(np.linspace(0.1, 5.0, n_q), (n_frames, 1))
    patterns = {"time_s": fits["time_s"].copy(), "q_nm": q, "intensity_cm": np.ones_like(q),
                "sigma_cm": np.ones_like(q), "model_cm": np.ones_like(q)}
    return fits, patterns


def test_inconsistent_streams_are_refused_before_a_file_exists(tmp_path):
    start = {"uid": "abcdef0123", "time": 0.0}
    fits, patterns = _small_run()
    patterns["q_nm"][1] *= 1.01
    with pytest.raises(ValueError, match="q_nm differ"):
        write_fits_nexus(tmp_path / "a.nxs", fits, patterns, raw_start=start)
    fits, patterns = _small_run()
    patterns["time_s"][2] += 1.0
    with pytest.raises(ValueError, match="same frames"):
        write_fits_nexus(tmp_path / "a.nxs", fits, patterns, raw_start=start)
    fits, patterns = _small_run()
    patterns["sigma_cm"] = patterns["sigma_cm"][:, :2]
    with pytest.raises(ValueError, match="'sigma_cm' must have the shape"):
        write_fits_nexus(tmp_path / "a.nxs", fits, patterns, raw_start=start)
    fits, patterns = _small_run()
    del fits["radius_err_nm"]
    with pytest.raises(ValueError, match="radius_err_nm"):
        write_fits_nexus(tmp_path / "a.nxs", fits, patterns, raw_start=start)
    fits, patterns = _small_run()
    with pytest.raises(ValueError, match="raw_start"):
        write_fits_nexus(tmp_path / "a.nxs", fits, patterns, raw_start={"time": 0.0})
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_no_file_behind(tmp_path):
    fits, patterns = _small_run()
    target = tmp_path / "b.nxs"
    target.write_bytes(b"an earlier export")
    with pytest.raises(ValueError, match="kinetics lacks"):  # found once the file is being written
        write_fits_nexus(target, fits, patterns, raw_start={"uid": "abcdef0123"}, kinetics={"fraction": 0.98})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nxs"]
    assert target.read_bytes() == b"an earlier export"


def test_hold_at_takes_the_latest_reading_at_or_before():
    readings_t = np.array([20.0, 0.0, 10.0])  # unsorted, as two streams concatenated
    values = np.array([3.0, 1.0, 2.0])
    held = hold_at([-1.0, 0.0, 5.0, 10.0, 19.999, 25.0], readings_t, values)
    np.testing.assert_array_equal(held, [np.nan, 1.0, 1.0, 2.0, 2.0, 3.0])
    assert np.isnan(hold_at([1.0, 2.0], [], [])).all()
    with pytest.raises(ValueError, match="one length"):
        hold_at([1.0], [0.0, 1.0], [5.0])
