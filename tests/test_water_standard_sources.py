"""Water standards from the files beamline staff have (issue 15): EDF frame files with the exposure
and transmitted flux in their headers, and a raw run of the catalog measured with ncsynth, give
the scale the same frames give as an areaDetector HDF5 file; bad ones are refused by ``connect``
in one line naming the key, before anything moves.

Real components: fabio writing and reading EDF, pyFAI, the simulated beamline with its Modbus,
injector and Channel Access IOC on the loopback, a real RunEngine, the embedded catalog.
"""

from urllib.parse import unquote, urlsplit

import h5py
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from fabio.edfimage import EdfImage

from ncsynth import timebase
from ncsynth.analysis.calibration_files import geometry_from_files, write_calibration
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.standard_frames import HeaderKeys
from ncsynth.analysis.water_standard import water_scale_from_files
from ncsynth.config import default_config
from ncsynth.instruments import connect, simulated_hutch
from ncsynth.simulators.beamline import SimulatedBeamline
from ncsynth.simulators.detector import FrameSynthesizer
from ncsynth.simulators.standards import write_standards

ATTRIBUTES = "/entry/instrument/NDAttributes"


def _frames_of(path):
    """(frame, AcquireTime, TransmittedFlux) of every frame of an areaDetector HDF5 file."""
    with h5py.File(path, "r") as handle:
        return [(handle["/entry/data/data"][i], float(handle[f"{ATTRIBUTES}/AcquireTime"][i]),
                 float(handle[f"{ATTRIBUTES}/TransmittedFlux"][i]))
                for i in range(handle["/entry/data/data"].shape[0])]


def _as_edf(hdf5, directory, *, exposure_key="ExposureTime", flux_key="TransmittedFlux", one_file=False):
    """The frames of ``hdf5`` as EDF (one file per frame, or all in one file), the exposure and
    flux in each frame's header; returns the configuration value (a glob, or the file)."""
    directory.mkdir(parents=True, exist_ok=True)
    image = None
    for index, (frame, exposure, flux) in enumerate(_frames_of(hdf5)):
        header = {exposure_key: repr(exposure), flux_key: repr(flux), "Title": "water standard"}
        if one_file:
            if image is None:
                image = EdfImage(data=frame, header=header)
            else:
                image.append_frame(data=frame, header=header)
        else:
            EdfImage(data=frame, header=header).write(str(directory / f"frame_{index:04d}.edf"))
    if one_file:
        image.write(str(directory / "all.edf"))
        return str(directory / "all.edf")
    return str(directory / "frame_*.edf")


def test_edf_standards_give_the_scale_of_the_same_frames_in_hdf5(tmp_path):
    geometry = DetectorGeometry()
    synthesizer = FrameSynthesizer(geometry, seed=2)
    described = geometry_from_files(*write_calibration(geometry, tmp_path))
    files = write_standards(synthesizer, tmp_path / "hdf5", seed=4)
    from_hdf5 = water_scale_from_files(files["water_standard"], files["empty_cell"], described,
                                       synthesizer.thickness_cm)
    water = _as_edf(files["water_standard"], tmp_path / "water")  # a glob of one-frame files
    empty = _as_edf(files["empty_cell"], tmp_path / "empty", exposure_key="count_time",
                    flux_key="Intensity1", one_file=True)  # a two-frame file, other keys
    from_edf = water_scale_from_files(water, empty, described, synthesizer.thickness_cm,
                                      headers=HeaderKeys.from_config("ExposureTime, count_time",
                                                                     "TransmittedFlux, Intensity1"))
    assert from_edf.solid_angle_sr == pytest.approx(from_hdf5.solid_angle_sr, rel=1e-12)
    assert from_edf.error_sr == pytest.approx(from_hdf5.error_sr, rel=1e-9)
    assert abs(from_hdf5.solid_angle_sr / geometry.reference_solid_angle_sr - 1) < 4 * from_hdf5.relative_error
    # the default keys do not know Intensity1: one line naming the file, the frame and the setting
    with pytest.raises(ValueError) as refused:
        water_scale_from_files(water, empty, described, synthesizer.thickness_cm)
    assert str(refused.value) == (f"empty_cell = {empty!r}, frame 0: no header TransmittedFlux "
                                  "(standard_flux_header)")


def _hutch_config(sim, tmp_path, **detector):
    config = default_config()
    config["data"]["dir"] = str(tmp_path / "data")
    config = simulated_hutch(config, sim)
    config["detector"].update(detector)
    return config


def _measure_standard(sim, config, n_frames=3):
    """``count`` of ``n_frames`` frames with the configuration's detector, stored in the
    catalog of its data directory: (scan id, uid, the detector's HDF5 file)."""
    from ncsynth.storage import open_catalog

    devices = connect(config)
    RE = RunEngine({}, call_returns_result=True)
    sim.clock.follow(RE)
    documents = []
    with open_catalog(config["data"]["dir"]) as catalog:
        writer = catalog.writer()
        RE.subscribe(writer)
        RE.subscribe(lambda name, doc: documents.append((name, doc)))
        try:
            RE(count([devices.detector], num=n_frames))
        finally:
            devices.close()
            writer.close()
    [start] = [doc for name, doc in documents if name == "start"]
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    return start["scan_id"], start["uid"], unquote(urlsplit(resource["uri"]).path)


def test_a_stored_run_of_water_gives_the_scale_of_its_own_frame_file_and_bad_sources_are_refused(tmp_path):
    with SimulatedBeamline(seed=3) as sim, timebase.use_clock(sim.clock):
        config = _hutch_config(sim, tmp_path)
        scan_id, uid, frame_file = _measure_standard(sim, config)
        geometry = geometry_from_files(config["detector"]["poni"], config["detector"]["mask"])
        expected = water_scale_from_files(frame_file, None, geometry, config["detector"]["thickness_cm"])
        for reference in (f"run:{scan_id}", f"run: {uid}"):
            detector = connect(_hutch_config(sim, tmp_path, water_standard=reference)).detector
            try:
                assert detector.reference_solid_angle_sr.get() == pytest.approx(expected.solid_angle_sr, rel=1e-12)
                assert detector.reference_solid_angle_err_sr.get() == pytest.approx(expected.error_sr, rel=1e-9)
            finally:
                detector.destroy()
        # EDF: the same frames through connect, custom header keys from the configuration
        edf = _as_edf(frame_file, tmp_path / "edf", exposure_key="count_time", flux_key="Intensity1")
        detector = connect(_hutch_config(sim, tmp_path, water_standard=edf, standard_flux_header="Intensity1")).detector
        try:
            assert detector.reference_solid_angle_sr.get() == pytest.approx(expected.solid_angle_sr, rel=1e-12)
        finally:
            detector.destroy()
        counted = sim.detector.value("cam1:ArrayCounter_RBV")

        refusals = {"run:99": "water_standard = 'run:99': no run with scan id 99",
                    edf: f"water_standard = {edf!r}, file ",
                    str(tmp_path / "none*.edf"): f"water_standard = {str(tmp_path / 'none*.edf')!r}: no such file",
                    config["detector"]["mask"]: f"water_standard = {config['detector']['mask']!r}: no header "
                                                "ExposureTime or count_time (standard_exposure_header)"}
        for value, start in refusals.items():
            with pytest.raises(ValueError) as refused:
                connect(_hutch_config(sim, tmp_path, water_standard=value))
            message = str(refused.value)
            assert message.startswith(start) and "\n" not in message, message
        # nothing moved: no frame taken since the measurement, the heater untouched
        sim.world.advance()
        assert sim.detector.value("cam1:ArrayCounter_RBV") == counted
        assert sim.world.controller.output_percent == 0
