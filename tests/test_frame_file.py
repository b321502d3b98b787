"""The simulated HDF5 plugin's frame file: lossless compression and the NeXus detector description.

Real components: h5py with hdf5plugin's filters, fabio's HDF5 reader, pyFAI's NeXus detector
reader and PONI file, frames synthesised by the detector simulator.
"""

import fabio
import h5py
import numpy as np
import pytest
from pyFAI.detectors import NexusDetector
from pyFAI.io.ponifile import PoniFile

from ncsynth.analysis.calibration_files import write_calibration
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.simulators.detector import FRAME_DTYPE, FrameSynthesizer
from ncsynth.simulators.frame_file import (FRAMES, SUPPORTED_COMPRESSIONS, USER_MASK_BIT, append_frame,
                                           compression_filter, open_frame_file)

#: an off-centre beam and a non-square detector: rows and columns must not be swapped
GEOMETRY = DetectorGeometry(shape=(120, 96), beam_center_px=(70.4, 40.2), distance_m=1.3, energy_kev=17.0)


@pytest.fixture(scope="module")
def frames():
    """Three Poisson frames of nanocrystals in solvent (counts, as the detector gives them)."""
    synthesizer = FrameSynthesizer(GEOMETRY, seed=5)
    return [synthesizer.synthesize(np.array([r]), np.array([2e-5]), 250.0, 0.075)[0] for r in (1.0, 2.0, 3.0)]


def _write(path, frames, compression):
    with open_frame_file(str(path), GEOMETRY, FRAME_DTYPE, "2026-12-02T11:00:00", swmr=True,
                         compression=compression) as handle:
        for k, frame in enumerate(frames):
            assert append_frame(handle, frame, 1000.0 + k, k + 1, 1e13, 5e12, 1) == k + 1
    return path


@pytest.mark.parametrize("compression", SUPPORTED_COMPRESSIONS)
def test_every_compression_gives_back_the_frames_bit_for_bit(tmp_path, frames, compression):
    path = _write(tmp_path / "frames.h5", frames, compression)
    with h5py.File(path, "r") as handle:
        stored = handle[FRAMES]
        assert stored.dtype == FRAME_DTYPE and stored.chunks == (1, *GEOMETRY.shape)
        filters = set(stored._filters)
        np.testing.assert_array_equal(stored[()], np.stack(frames))
        assert list(handle["/entry/instrument/NDAttributes/NDArrayUniqueId"]) == [1, 2, 3]
    expected = {"None": set(), "zlib": {"gzip"}, "Blosc": {"32001"}, "BSLZ4": {"32008"},
                "LZ4": {"32004"}}[compression]
    assert filters == expected
    # fabio (the pyFAI GUI's reader) finds the same frames
    with fabio.open(f"{path}::{FRAMES}") as image:
        assert image.nframes == 3
        np.testing.assert_array_equal(image.getframe(2).data, frames[2])


def test_blosc_stores_the_frames_in_less_than_half_the_space(tmp_path, frames):
    """The default set-up's pixels count 500-1000 photons a frame: ~9 bits of a 32-bit word
    are noise (3.8x smaller on the full 480x480 frames: benchmarks/frame_compression.py)."""
    with h5py.File(_write(tmp_path / "packed.h5", frames, "Blosc"), "r") as handle:
        stored = handle[FRAMES].id.get_storage_size()
    assert stored < np.stack(frames).nbytes / 2.5


def test_a_compression_the_plugin_does_not_write_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"'JPEG'.*None, zlib, Blosc, BSLZ4, LZ4"):
        compression_filter("JPEG")


def test_the_nexus_detector_description_is_the_poni_and_mask(tmp_path, frames):
    """pyFAI's NeXus detector reader and the NXdetector fields give back what the PONI file and
    the mask image the simulated set-up writes say."""
    path = _write(tmp_path / "frames.h5", frames[:1], "BSLZ4")
    poni_path, mask_path = write_calibration(GEOMETRY, tmp_path / "calibration")
    poni = PoniFile(str(poni_path))
    mask = fabio.open(str(mask_path)).data.astype(bool)
    assert mask.any()

    detector = NexusDetector(str(path))
    assert (detector.pixel1, detector.pixel2) == (poni.detector.pixel1, poni.detector.pixel2)
    assert tuple(detector.max_shape) == tuple(poni.detector.max_shape) == GEOMETRY.shape
    np.testing.assert_array_equal(detector.mask.astype(bool), mask)

    with h5py.File(path, "r") as handle:
        nx = handle["/entry/instrument/detector"]
        assert nx.attrs["NX_class"] == "NXdetector"
        assert handle["/entry/instrument"].attrs["NX_class"] == "NXinstrument"
        value = lambda name, units: (nx[name].attrs["units"], float(nx[name][()]))  # noqa: E731
        assert value("distance", "m") == ("m", pytest.approx(poni.dist))
        assert value("x_pixel_size", "m") == ("m", pytest.approx(poni.detector.pixel2))
        assert value("y_pixel_size", "m") == ("m", pytest.approx(poni.detector.pixel1))
        # NeXus x runs along the columns: poni2 / pixel2; y along the rows: poni1 / pixel1
        assert value("beam_center_x", "pixel") == ("pixel", pytest.approx(poni.poni2 / poni.detector.pixel2))
        assert value("beam_center_y", "pixel") == ("pixel", pytest.approx(poni.poni1 / poni.detector.pixel1))
        np.testing.assert_array_equal(nx["pixel_mask"][()] == USER_MASK_BIT, mask)
        assert set(np.unique(nx["pixel_mask"][()])) == {0, USER_MASK_BIT}
        assert nx["data"] == handle[FRAMES]  # the same dataset, linked
        wavelength = handle["/entry/instrument/monochromator/wavelength"]
        assert wavelength.attrs["units"] == "nm"
        assert float(wavelength[()]) * 1e-9 == pytest.approx(poni.wavelength)
