"""The frames of a water standard or its empty cell (seed 000 §S.2.1), summed, with Σ t · Φ_T
(exposure s × transmitted flux photons/s, over the frames), from what beamline staff have.

What the configuration's ``water_standard`` / ``empty_cell`` value names:

* an **areaDetector HDF5 file** (a name ending ``.h5``, ``.hdf5``, ``.hdf``, ``.nxs``, or any file
  with HDF5's signature): frames in ``/entry/data/data``, per frame ``AcquireTime`` (s) and
  ``TransmittedFlux`` (photons/s) in ``/entry/instrument/NDAttributes``
  (:mod:`ncsynth.simulators.frame_file` writes this layout);
* ``"run:<scan id or uid>"``: a **stored raw run** of the catalog measured with ncsynth (e.g.
  ``bluesky.plans.count([detector], num=2)`` on the cell filled with water), with the monitor
  PVs configured: the ``primary`` stream's frames (read from the detector's files as the live
  analysis reads them, :class:`~ncsynth.analysis.stream_frames.StreamFrames`), the exposure from
  the detector's configuration (``<det>_exposure_time``) and each frame's transmitted flux from
  its event (``<det>_transmitted_flux``);
* any other **frame file fabio reads** (EDF, ...), or a glob pattern of them (``water_*.edf``,
  sorted): every frame of every file, each frame's exposure (s) and transmitted flux
  (photons/s) from its header. :class:`HeaderKeys` names the keys (configuration
  ``standard_exposure_header`` and ``standard_flux_header``, comma-separated candidates, the
  first present wins; defaults ESRF-style ``ExposureTime``/``count_time`` and
  ``TransmittedFlux``).

The transmitted flux must be in the units of the run's ``transmitted_monitor_pv`` (the scale is
per transmitted photon as that monitor counts them). Errors are one line, naming the
configuration key, the value and what is wrong (:class:`ValueError`).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncsynth.errors import first_line

#: Where an areaDetector HDF5 file holds the frames and their per-frame attributes.
FRAMES = "/entry/data/data"
ATTRIBUTES = "/entry/instrument/NDAttributes"
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
#: Prefix of a stored run's reference.
RUN_PREFIX = "run:"


def _keys(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


@dataclass(frozen=True)
class HeaderKeys:
    """Header keys of a fabio frame file's exposure (s) and transmitted flux (photons/s); each a
    tuple of candidates, the first present in a frame's header is used."""

    exposure: tuple[str, ...] = ("ExposureTime", "count_time")
    flux: tuple[str, ...] = ("TransmittedFlux",)

    @classmethod
    def from_config(cls, exposure: str, flux: str) -> "HeaderKeys":
        """From the comma-separated ``standard_exposure_header`` / ``standard_flux_header``."""
        return cls(_keys(exposure) or cls.exposure, _keys(flux) or cls.flux)


@dataclass(frozen=True)
class StandardFrames:
    """Summed counts of a standard's frames, its Σ t · Φ_T (photons) and how many frames."""

    total: np.ndarray
    photons: float
    n_frames: int


class _Sum:
    """Frames added one at a time, each checked against the detector's shape."""

    def __init__(self, shape: tuple[int, int], where: str):
        self.shape, self.where = tuple(shape), where
        self.total = np.zeros(self.shape, dtype=np.float64)
        self.photons, self.n_frames = 0.0, 0

    def add(self, frame, exposure_s: float, flux: float, what: str) -> None:
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"{self.where}: frames are {'x'.join(map(str, frame.shape))}, the detector "
                             f"(PONI and mask) is {self.shape[0]}x{self.shape[1]}")
        for name, value in (("exposure", exposure_s), ("transmitted flux", flux)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{self.where}: {what} has no positive {name} ({value!r})")
        self.total += frame
        self.photons += float(exposure_s) * float(flux)
        self.n_frames += 1

    def result(self) -> StandardFrames:
        if self.n_frames == 0:
            raise ValueError(f"{self.where}: holds no frames")
        return StandardFrames(self.total, self.photons, self.n_frames)


def read_frames(source: str | Path, shape: tuple[int, int], key: str, *,
                headers: HeaderKeys = HeaderKeys(), catalog=None) -> StandardFrames:
    """The frames ``source`` names (see the module docstring) for the configuration key ``key``,
    each of the detector's ``shape``. ``catalog``: a callable giving an open catalog as a
    context manager (:func:`ncsynth.storage.open_catalog`), used only for ``"run:..."``."""
    source = str(source)
    where = f"{key} = {source!r}"
    frames = _Sum(shape, where)
    if source.startswith(RUN_PREFIX):
        _run_frames(source[len(RUN_PREFIX):].strip(), frames, catalog)
        return frames.result()
    paths = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
    if not paths or not all(Path(p).is_file() for p in paths):
        raise ValueError(f"{where}: no such file")
    for path in paths:
        if path.lower().endswith(HDF5_SUFFIXES) or _is_hdf5(path):
            _hdf5_frames(path, frames)
        else:
            _fabio_frames(path, frames, headers)
    return frames.result()


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89HDF\r\n\x1a\n"


def _hdf5_frames(path: str, frames: _Sum) -> None:
    import importlib

    import h5py

    importlib.import_module("hdf5plugin")  # registers the compression filters the plugin writes
    try:
        with h5py.File(path, "r") as handle:
            if FRAMES not in handle:
                raise ValueError(f"{frames.where}: no frames at {FRAMES}")
            data = handle[FRAMES]
            if data.ndim != 3 or data.shape[0] == 0:
                raise ValueError(f"{frames.where}: {FRAMES} holds no frames (shape {data.shape})")
            per_frame = []
            for name in ("AcquireTime", "TransmittedFlux"):
                dataset = handle.get(f"{ATTRIBUTES}/{name}")
                values = None if dataset is None else np.asarray(dataset[:], dtype=float)
                if values is None or values.shape != (data.shape[0],) or not np.all(values > 0):
                    raise ValueError(f"{frames.where}: needs a positive {ATTRIBUTES}/{name} "
                                     f"for each of its {data.shape[0]} frames")
                per_frame.append(values)
            for index in range(data.shape[0]):
                frames.add(data[index], per_frame[0][index], per_frame[1][index], f"frame {index}")
    except OSError as error:
        raise ValueError(f"{frames.where}: cannot read it as HDF5 ({first_line(error)})") from None


def _header_value(header, candidates: tuple[str, ...], setting: str, where: str) -> float:
    for name in candidates:
        if name in header:
            try:
                return float(header[name])
            except ValueError:
                raise ValueError(f"{where}: header {name} = {header[name]!r} is not a number") from None
    raise ValueError(f"{where}: no header {' or '.join(candidates)} ({setting})")


def _fabio_frames(path: str, frames: _Sum, headers: HeaderKeys) -> None:
    import fabio

    where = f"{frames.where}" if frames.where.endswith(repr(path)) else f"{frames.where}, file {path!r}"
    try:
        image = fabio.open(path)
    except Exception as error:  # fabio raises many kinds for a file it cannot read
        raise ValueError(f"{where}: fabio cannot read it ({type(error).__name__}: {first_line(error)})") from None
    with image:
        for index in range(image.nframes):
            frame = image if index == 0 else image.getframe(index)
            at = f"{where}, frame {index}" if image.nframes > 1 else where
            exposure = _header_value(frame.header, headers.exposure, "standard_exposure_header", at)
            flux = _header_value(frame.header, headers.flux, "standard_flux_header", at)
            frames.add(frame.data, exposure, flux, f"frame {index}")


def _run_frames(ref: str, frames: _Sum, catalog) -> None:
    """The primary frames of the stored raw run ``ref`` (scan id or uid) with their monitors."""
    from event_model import unpack_event_page

    from ncsynth.analysis.run_calibration import detector_configuration, image_key, object_of
    from ncsynth.analysis.stream_frames import FrameFileError, StreamFrames
    from ncsynth.runs import stored_run

    if catalog is None:
        raise ValueError(f"{frames.where}: a stored run needs the catalog (ncsynth.instruments.connect opens it)")
    reference = int(ref) if ref.lstrip("-").isdigit() else ref
    try:
        with catalog() as runs:
            _, _, documents = stored_run(runs, reference)
    except (LookupError, ValueError, TypeError) as error:
        raise ValueError(f"{frames.where}: {first_line(error).strip(chr(39))}") from None
    stream = StreamFrames(complete=True)
    primary: dict[str, tuple[str, str, float]] = {}  # descriptor uid -> (image key, flux key, exposure)
    try:
        for name, doc in documents:
            if name in ("stream_resource", "stream_datum"):
                getattr(stream, name)(doc)
            elif name == "descriptor" and doc.get("name") == "primary":
                image = image_key(doc)
                if image is None:
                    continue
                obj = object_of(doc, image)
                flux = f"{obj}_transmitted_flux"
                if flux not in doc["data_keys"]:
                    raise ValueError(f"{frames.where}: the run has no transmitted flux per frame ({flux}): "
                                     "measure the standard with the monitor PVs configured")
                exposure = float(detector_configuration(doc, image).get(f"{obj}_exposure_time", np.nan))
                primary[doc["uid"]] = (image, flux, exposure)
            elif name in ("event", "event_page") and doc["descriptor"] in primary:
                image, flux, exposure = primary[doc["descriptor"]]
                for event in ([doc] if name == "event" else unpack_event_page(doc)):
                    frames.add(stream.frame(event["descriptor"], image, event["seq_num"]), exposure,
                               float(event["data"][flux]), f"frame {event['seq_num']}")
    except FrameFileError as error:
        raise ValueError(f"{frames.where}: {first_line(error)}") from None
    finally:
        stream.close()
