"""The file the simulated areaDetector's HDF5 plugin (NDFileHDF5, ``Stream`` mode) writes.

Layout (areaDetector's default NeXus layout, reduced to what ncsynth and the tools read):

* ``/entry/start_time``: when the file was opened (ISO 8601, world clock).
* ``/entry/data/data``: the frames, (n, rows, cols) ``uint32`` counts, one HDF5 chunk per
  frame, compressed losslessly as the plugin's ``Compression`` PV says: ``None``, ``zlib``
  (HDF5's deflate at ``ZLevel``), ``Blosc`` (HDF5 filter 32001 with ``BloscCompressor``,
  ``BloscLevel`` and ``BloscShuffle``), ``BSLZ4`` (bitshuffle + LZ4, filter 32008) or ``LZ4``
  (filter 32004). The plugin filters come from ``hdf5plugin``; a reader needs
  ``import hdf5plugin`` before opening such a file (ncsynth's frame reader, the catalog's Tiled
  HDF5 adapter and pyFAI's applications do; fabio users do it themselves).
* ``/entry/instrument/NDAttributes/``: ``NDArrayTimeStamp`` (epoch s), ``NDArrayUniqueId``,
  the two beam monitors (``IncidentFlux``, ``TransmittedFlux``, photons/s) and the exposure
  (``AcquireTime``, s; NaN if not given), one value per frame.
* ``/entry/instrument/detector`` (NXdetector): the calibration, so that pyFAI and DAWN open the
  frames calibrated: ``distance`` (m), ``x_pixel_size``/``y_pixel_size`` (m), ``beam_center_x``/
  ``beam_center_y`` (pixels; x along columns, y along rows, pyFAI's ``poni2``/``poni1`` divided
  by the pixel size, as pyFAI's own NeXus writer gives them), ``pixel_mask`` (NeXus bit 8, "user
  defined mask": beam stop and module gaps), ``data`` (a hard link to the frames), and pyFAI's
  NeXus detector fields (``pixel_size`` [pixel1, pixel2] m, ``max_shape``, ``mask`` int8, 1 =
  masked) that :class:`pyFAI.detectors.NexusDetector` reads. A flat detector perpendicular to
  the beam (no tilts), as :class:`~ncsynth.analysis.geometry.DetectorGeometry` models it.
* ``/entry/instrument/monochromator`` (NXmonochromator): ``wavelength`` (nm), ``energy`` (keV).

The IOC writes the description of the geometry it scatters with (the PONI and mask it hands a
``hardware = "hutch"`` configuration describe the same), as a detector's own file writer writes
the calibration the beamline set in it (Dectris' NXmx files: distance, beam centre, wavelength,
pixel mask).
"""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry

#: The ``Compression`` PV's choices (ADCore NDFileHDF5), in enum order.
COMPRESSIONS = ("None", "N-bit", "szip", "zlib", "Blosc", "BSLZ4", "LZ4", "JPEG")
#: The choices this simulated plugin writes (all lossless).
SUPPORTED_COMPRESSIONS = ("None", "zlib", "Blosc", "BSLZ4", "LZ4")
#: The ``BloscCompressor`` and ``BloscShuffle`` PVs' choices, in enum order.
BLOSC_COMPRESSORS = ("blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd")
BLOSC_SHUFFLES = ("None", "ByteShuffle", "BitShuffle")
#: Frames inside the file (the stream_resource's ``dataset``).
FRAMES = "/entry/data/data"
#: NeXus ``pixel_mask`` bit of a masked pixel: bit 8, "user defined mask (e.g. around a beamstop)".
USER_MASK_BIT = 1 << 8
_ATTRIBUTES = (("NDArrayTimeStamp", "<f8"), ("NDArrayUniqueId", "<i4"),
               ("IncidentFlux", "<f8"), ("TransmittedFlux", "<f8"), ("AcquireTime", "<f8"))


def compression_filter(compression: str, zlevel: int = 6, blosc: tuple = ("zstd", 3, "ByteShuffle")) -> dict:
    """``h5py.Group.create_dataset`` keywords of the plugin's ``Compression`` choice
    (``zlevel``: zlib's level, 1-9; ``blosc``: the Blosc compressor, level 0-9 and shuffle);
    ValueError for a choice this plugin does not write."""
    if compression == "None":
        return {}
    if compression == "zlib":
        return {"compression": "gzip", "compression_opts": min(max(int(zlevel), 1), 9)}
    if compression == "Blosc":
        compressor, level, shuffle = blosc
        return dict(hdf5plugin.Blosc(cname=compressor, clevel=min(max(int(level), 0), 9),
                                     shuffle=BLOSC_SHUFFLES.index(shuffle)))
    if compression == "BSLZ4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if compression == "LZ4":
        return dict(hdf5plugin.LZ4())
    raise ValueError(f"Compression {compression!r}: the simulated HDF5 plugin writes "
                     f"{', '.join(SUPPORTED_COMPRESSIONS)}")


def open_frame_file(path: str, geometry: DetectorGeometry, dtype, start_time: str, *, swmr: bool,
                    compression: str = "None", **options) -> h5py.File:
    """A new frame file at ``path`` for frames of ``geometry.shape`` and ``dtype`` (see module),
    its entry's ``start_time`` (ISO 8601) the time it is opened; ``options``: those of
    :func:`compression_filter`."""
    shape = geometry.shape
    filters = compression_filter(compression, **options)
    handle = h5py.File(path, "w", libver="latest")
    try:
        entry = handle.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["start_time"] = start_time  # pyFAI's NeXus reader looks for the detector in entries that have one
        data = entry.create_group("data")
        data.attrs.update(NX_class="NXdata", signal="data")
        frames = data.create_dataset("data", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                     chunks=(1, *shape), **filters)
        frames.attrs["units"] = "counts"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        attributes = instrument.create_group("NDAttributes")
        for key, kind in _ATTRIBUTES:
            attributes.create_dataset(key, shape=(0,), maxshape=(None,), dtype=kind, chunks=(1024,))
        attributes["NDArrayTimeStamp"].attrs["units"] = "s since the epoch"
        attributes["AcquireTime"].attrs["units"] = "s"
        _describe_detector(instrument, geometry, frames)
    except BaseException:
        handle.close()
        raise
    if swmr:
        handle.swmr_mode = True
    return handle


def _describe_detector(instrument: h5py.Group, geometry: DetectorGeometry, frames: h5py.Dataset) -> None:
    """The NXdetector and NXmonochromator groups of ``geometry`` (see module docstring)."""
    pixel, (row, column) = geometry.pixel_size_m, geometry.beam_center_px
    detector = instrument.create_group("detector")
    detector.attrs["NX_class"] = "NXdetector"
    for name, value, units in (("distance", geometry.distance_m, "m"), ("x_pixel_size", pixel, "m"),
                               ("y_pixel_size", pixel, "m"), ("beam_center_x", column, "pixel"),
                               ("beam_center_y", row, "pixel")):
        detector.create_dataset(name, data=float(value)).attrs["units"] = units
    masked = geometry.mask
    small = {"compression": "gzip", "compression_opts": 4}
    detector.create_dataset("pixel_mask", data=np.where(masked, USER_MASK_BIT, 0).astype("<u4"), **small)
    detector["pixel_mask_applied"] = False
    detector.create_dataset("pixel_size", data=[pixel, pixel]).attrs["units"] = "m"
    detector["max_shape"] = np.array(geometry.shape, dtype="<i4")
    detector.create_dataset("mask", data=masked.astype(np.int8), **small)
    detector["data"] = frames  # a hard link
    monochromator = instrument.create_group("monochromator")
    monochromator.attrs["NX_class"] = "NXmonochromator"
    monochromator.create_dataset("wavelength", data=geometry.wavelength_nm).attrs["units"] = "nm"
    monochromator.create_dataset("energy", data=geometry.energy_kev).attrs["units"] = "keV"


def append_frame(handle: h5py.File, frame, t_start: float, unique_id: int, incident: float,
                 transmitted: float, flush_every: int, *, exposure_s: float = float("nan")) -> int:
    """Append one frame and its attributes (``exposure_s``: its ``AcquireTime``); flush every
    ``flush_every``; return the count."""
    frames = handle[FRAMES]
    index = frames.shape[0]
    frames.resize(index + 1, axis=0)
    frames[index] = frame
    for (key, _), value in zip(_ATTRIBUTES, (t_start, unique_id, incident, transmitted, exposure_s)):
        dataset = handle[f"/entry/instrument/NDAttributes/{key}"]
        dataset.resize(index + 1, axis=0)
        dataset[index] = value
    if (index + 1) % max(flush_every, 1) == 0:
        handle.flush()
    return index + 1
