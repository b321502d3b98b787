"""UV-Vis absorption spectrometer on the flow reactor's optic flow cell (seed 002: in situ
absorption spectra, Fig. 1 and Fig. S2; the CdSe-437 magic-size cluster peak at 437 nm).

:class:`UVVisSpectrometer` is the ophyd device the plans use. It drives a
:class:`SpectrometerBackend`, a subset of python-seabreeze's
``seabreeze.spectrometers.Spectrometer``: at the hutch pass
``Spectrometer.from_first_available()`` (or ``.from_serial_number(...)``) as is — seabreeze
is not a dependency of ncsynth; in a dry run or a test pass
:class:`ncsynth.simulators.spectrometer.SimulatedSpectrometer`.

Measurement (decadic absorbance, per pixel)::

    A = −log10( (S − D) / (R − D) )

S: the sample's counts, D: a dark (lamp blocked, :meth:`UVVisSpectrometer.take_dark`),
R: a reference through the blank cell with solvent (:meth:`UVVisSpectrometer.take_reference`);
each the mean of ``averages`` scans of ``integration_time_s``, then optionally smoothed
along the pixels by a boxcar of half-width ``boxcar`` (S − D and R − D are smoothed, so the
boxcar may change after the reference). NaN pixels of A:

* pixels where the reference is not ``min_reference_counts`` above the dark (outside the
  lamp's band): always NaN, not counted;
* lit pixels where S − D ≤ 0 (nonpositive ratio): NaN, counted in ``clipped_pixels``;
* pixels where any scan reached the backend's ``max_intensity`` (saturated), and their
  boxcar neighbours: NaN, counted in ``saturated_pixels``. A saturated dark or reference is
  refused (:class:`SpectrometerError`).

Dark and reference are refused at trigger time (before anything is acquired) if missing or
taken at another integration time. They cannot change while the device is staged, so the
configuration recorded at the start of a run (``dark_counts``, ``reference_counts`` and their
timestamps) is what every event of that run used.

Readings carry the time the acquisition started (:mod:`ncsynth.timebase`, epoch s).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal, Staged
from ophyd.status import DeviceStatus
from scipy.ndimage import uniform_filter1d

from ncsynth import timebase
from . import background

#: Default integration time, s.
DEFAULT_INTEGRATION_TIME_S = 0.1
#: Default wavelength of the hinted scalar, nm: the CdSe-437 magic-size clusters (seed 002, Fig. 1).
DEFAULT_MONITOR_WAVELENGTH_NM = 437.0


class SpectrometerError(RuntimeError):
    """The spectrometer refused a request, a scan failed, or a calibration is missing/unusable."""


@runtime_checkable
class SpectrometerBackend(Protocol):
    """The calls of ``seabreeze.spectrometers.Spectrometer`` that the device uses.

    ``Spectrometer.from_first_available()`` satisfies it directly.
    """

    serial_number: str
    model: str

    def wavelengths(self) -> np.ndarray:
        """Pixel wavelengths, nm."""

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        """One scan at the set integration time: counts per pixel (blocks for the scan)."""

    def integration_time_micros(self, integration_time_micros: int) -> None:
        """Set the integration time, µs."""

    @property
    def integration_time_micros_limits(self) -> tuple[int, int]:
        """(min, max) integration time, µs."""

    @property
    def max_intensity(self) -> float:
        """Largest count a pixel can report (saturation), counts."""

    def close(self) -> None:
        """Release the device."""


@dataclass(frozen=True)
class StoredSpectrum:
    """A dark or reference: mean counts per pixel, acquisition start (epoch s), settings."""

    counts: np.ndarray
    timestamp: float
    integration_time_s: float
    averages: int


@dataclass(frozen=True)
class _Settings:
    integration_time_us: int
    averages: int
    boxcar: int
    monitor_index: int
    min_reference_counts: float


class _Reading(Signal):
    """Soft signal whose ``describe()`` carries ``units`` and the numpy dtype of its value."""

    def __init__(self, *args, units: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._units = units

    def describe(self):
        description = super().describe()
        entry = description[self.name]
        if self._units is not None:
            entry["units"] = self._units
        if entry["dtype"] != "string":
            entry["dtype_numpy"] = np.asarray(self.get()).dtype.str
        return description


class _Setting(_Reading):
    """Configuration value the parent validates on ``put`` (ValueError before it is stored)."""

    def check_value(self, value, **kwargs):
        self.parent._check_setting(self.attr_name, value)


class UVVisSpectrometer(Device):
    """UV-Vis absorbance spectrometer over a :class:`SpectrometerBackend` (module docstring).

    Readings: ``absorbance`` (array, decadic, per pixel), ``counts`` (array, mean raw sample
    counts), ``absorbance_at_monitor`` (hinted scalar: A at the pixel nearest
    ``monitor_wavelength_nm``), ``clipped_pixels``, ``saturated_pixels``.

    Configuration: ``integration_time_s`` (s), ``averages`` (scans per spectrum),
    ``boxcar`` (half-width, pixels; 0 = none), ``monitor_wavelength_nm`` (nm),
    ``min_reference_counts`` (counts), and read-only ``wavelength_nm`` (array, nm),
    ``dark_counts``/``reference_counts`` (arrays, counts) with ``dark_timestamp``/
    ``reference_timestamp`` (epoch s, NaN before taken), ``serial_number``, ``model``.
    """

    absorbance = Cpt(_Reading, value=np.zeros(0), units="absorbance (decadic)", kind="normal")
    counts = Cpt(_Reading, value=np.zeros(0), units="counts", kind="normal")
    absorbance_at_monitor = Cpt(_Reading, value=math.nan, units="absorbance (decadic)",
                                kind="hinted")
    clipped_pixels = Cpt(_Reading, value=0, units="pixels", kind="normal")
    saturated_pixels = Cpt(_Reading, value=0, units="pixels", kind="normal")

    integration_time_s = Cpt(_Setting, value=DEFAULT_INTEGRATION_TIME_S, units="s", kind="config")
    averages = Cpt(_Setting, value=1, units="scans", kind="config")
    boxcar = Cpt(_Setting, value=0, units="pixels", kind="config")
    monitor_wavelength_nm = Cpt(_Setting, value=DEFAULT_MONITOR_WAVELENGTH_NM, units="nm",
                                kind="config")
    min_reference_counts = Cpt(_Setting, value=50.0, units="counts", kind="config")
    wavelength_nm = Cpt(_Reading, value=np.zeros(0), units="nm", kind="config")
    dark_counts = Cpt(_Reading, value=np.zeros(0), units="counts", kind="config")
    reference_counts = Cpt(_Reading, value=np.zeros(0), units="counts", kind="config")
    dark_timestamp = Cpt(_Reading, value=math.nan, units="s since the epoch", kind="config")
    reference_timestamp = Cpt(_Reading, value=math.nan, units="s since the epoch", kind="config")
    serial_number = Cpt(_Reading, value="", kind="config")
    model = Cpt(_Reading, value="", kind="config")

    def __init__(self, backend: SpectrometerBackend, *, name: str, **kwargs):
        if not isinstance(backend, SpectrometerBackend):
            raise TypeError(f"backend must provide the seabreeze Spectrometer calls "
                            f"(SpectrometerBackend), got {type(backend).__name__}")
        wavelength_nm = np.asarray(backend.wavelengths(), dtype=float)
        if wavelength_nm.ndim != 1 or wavelength_nm.size < 2 \
                or not np.all(np.isfinite(wavelength_nm)):
            raise SpectrometerError(f"backend wavelengths must be a 1-D finite array of >= 2 "
                                    f"pixels, got shape {wavelength_nm.shape}")
        low_us, high_us = (int(v) for v in backend.integration_time_micros_limits)
        self._limits_us = (low_us, high_us)
        self._max_intensity = float(backend.max_intensity)
        self._wavelengths = wavelength_nm
        super().__init__(name=name, **kwargs)
        self.backend = backend
        nan = np.full(wavelength_nm.size, math.nan)
        for signal, value in ((self.wavelength_nm, wavelength_nm), (self.absorbance, nan),
                              (self.counts, nan), (self.dark_counts, nan),
                              (self.reference_counts, nan),
                              (self.serial_number, str(backend.serial_number)),
                              (self.model, str(backend.model))):
            signal.put(value)
        self.dark: StoredSpectrum | None = None
        self.reference: StoredSpectrum | None = None
        self._lock = threading.Lock()           # guards _current
        self._backend_lock = threading.Lock()   # one acquisition on the backend at a time
        # (Status, cancel event, claim): whoever takes the claim first completes the Status
        self._current: tuple = (None, threading.Event(), threading.Lock())
        self._sent_us: int | None = None        # integration time last sent to the backend

    # -- settings ---------------------------------------------------------------------------
    def _check_setting(self, attr: str, value):
        """Validate one setting; return it normalised (ValueError names it and the value)."""
        label = f"{self.name}.{attr}"
        if attr == "averages" or attr == "boxcar":
            lowest = 1 if attr == "averages" else 0
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                    or value < lowest:
                raise ValueError(f"{label} must be an int >= {lowest}, got {value!r}")
            if attr == "boxcar" and 2 * value + 1 > self._wavelengths.size:
                raise ValueError(f"{label} must be at most {(self._wavelengths.size - 1) // 2} "
                                 f"pixels, got {value!r}")
            return int(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number, got {value!r}")
        if attr == "integration_time_s":
            low, high = self._limits_us
            micros = round(float(value) * 1e6)
            if not low <= micros <= high:
                raise ValueError(f"{label} must be within [{low / 1e6:g}, {high / 1e6:g}] s "
                                 f"(the spectrometer's limits), got {value!r}")
            return micros
        if attr == "monitor_wavelength_nm":
            first, last = self._wavelengths.min(), self._wavelengths.max()
            if not first <= value <= last:
                raise ValueError(f"{label} must be within [{first:g}, {last:g}] nm, got {value!r}")
            return int(np.argmin(np.abs(self._wavelengths - value)))
        if value < 0:
            raise ValueError(f"{label} must be >= 0, got {value!r}")
        return float(value)

    def _settings(self) -> _Settings:
        return _Settings(*(self._check_setting(attr, getattr(self, attr).get()) for attr in (
            "integration_time_s", "averages", "boxcar", "monitor_wavelength_nm",
            "min_reference_counts")))

    # -- dark and reference -------------------------------------------------------------------
    def take_dark(self) -> DeviceStatus:
        """Acquire and store the dark (lamp blocked / shutter closed); Status done when stored.

        Refused (SpectrometerError) if any pixel saturates.
        """
        settings = self._settings()
        self._check_not_staged("take_dark")

        def store(t_start, mean, saturated):
            self.dark = self._stored("dark", t_start, mean, saturated, settings)
            self.dark_counts.put(mean, timestamp=t_start)
            self.dark_timestamp.put(t_start, timestamp=t_start)

        return self._acquire("dark", settings, store)

    def take_reference(self) -> DeviceStatus:
        """Acquire and store the reference (blank cell, lamp on); Status done when stored.

        Needs a dark at the current integration time (checked before acquiring). Refused if
        any pixel saturates or if no pixel is ``min_reference_counts`` above the dark.
        """
        settings = self._settings()
        self._check_not_staged("take_reference")
        dark = self._calibration("dark", self.dark, settings)

        def store(t_start, mean, saturated):
            reference = self._stored("reference", t_start, mean, saturated, settings)
            above = float(np.max(mean - dark.counts))
            if not above > settings.min_reference_counts:
                raise SpectrometerError(
                    f"{self.name}: the reference is not above the dark (at most {above:.1f} counts "
                    f"above, min_reference_counts={settings.min_reference_counts:g}): is the lamp "
                    f"on and the cell filled with blank solvent?")
            self.reference = reference
            self.reference_counts.put(mean, timestamp=t_start)
            self.reference_timestamp.put(t_start, timestamp=t_start)

        return self._acquire("reference", settings, store)

    def _stored(self, what, t_start, mean, saturated, settings) -> StoredSpectrum:
        if saturated.any():
            raise SpectrometerError(
                f"{self.name}: the {what} saturates {int(saturated.sum())} pixels (counts at "
                f"{self._max_intensity:g}): shorten integration_time_s")
        return StoredSpectrum(mean, t_start, settings.integration_time_us / 1e6, settings.averages)

    def _calibration(self, what: str, stored: StoredSpectrum | None,
                     settings: _Settings) -> StoredSpectrum:
        if stored is None:
            raise SpectrometerError(f"{self.name}: no {what} spectrum: call take_{what}() first")
        if round(stored.integration_time_s * 1e6) != settings.integration_time_us:
            raise SpectrometerError(
                f"{self.name}: the {what} was taken at integration_time_s="
                f"{stored.integration_time_s:g}, now {settings.integration_time_us / 1e6:g}: "
                f"call take_{what}() again")
        return stored

    def _check_not_staged(self, action: str) -> None:
        if self._staged != Staged.no:
            raise SpectrometerError(f"{self.name}: {action}() is refused while staged (in a run)")

    # -- bluesky interface ----------------------------------------------------------------------
    def trigger(self) -> DeviceStatus:
        """Acquire one absorbance spectrum (``averages`` × ``integration_time_s``).

        Raises at once (nothing acquired) without a valid dark and reference; the Status
        fails if a scan fails, and the device stays usable.
        """
        settings = self._settings()
        dark = self._calibration("dark", self.dark, settings)
        reference = self._calibration("reference", self.reference, settings)

        def publish(t_start, mean, saturated):
            self._publish(t_start, mean, saturated, dark, reference, settings)

        return self._acquire("spectrum", settings, publish)

    def _publish(self, t_start, mean, saturated, dark, reference, settings) -> None:
        smooth = (lambda x: x) if settings.boxcar == 0 else \
            (lambda x: uniform_filter1d(x, 2 * settings.boxcar + 1, mode="nearest"))
        signal, blank = smooth(mean - dark.counts), smooth(reference.counts - dark.counts)
        saturated = smooth(saturated.astype(float)) > 0
        lit = blank > settings.min_reference_counts
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(lit, signal / blank, math.nan)
        clipped = lit & ~saturated & ~(ratio > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            absorbance = np.where((ratio > 0) & ~saturated, -np.log10(ratio), math.nan)
        monitor = float(absorbance[settings.monitor_index])
        for signal_, value in ((self.absorbance, absorbance), (self.counts, mean),
                               (self.absorbance_at_monitor, monitor),
                               (self.clipped_pixels, int(clipped.sum())),
                               (self.saturated_pixels, int(saturated.sum()))):
            signal_.put(value, timestamp=t_start)

    def stop(self, *, success: bool = False) -> None:
        """Cancel a running acquisition: its Status fails now; a scan already on the
        backend finishes (a USB read cannot be interrupted) and is discarded."""
        with self._lock:
            status, cancel, claim = self._current
        cancel.set()
        if status is not None:
            _complete(status, claim, SpectrometerError(f"{self.name}: acquisition stopped"))
        super().stop(success=success)

    def close(self) -> None:
        """Stop, then release the backend."""
        self.stop()
        with self._backend_lock:
            self.backend.close()

    # -- acquisition ---------------------------------------------------------------------------
    def _acquire(self, what: str, settings: _Settings, finish) -> DeviceStatus:
        """Acquire ``averages`` scans in a thread; ``finish(t_start, mean, saturated)`` them."""
        with self._lock:
            if self._current[0] is not None and not self._current[0].done:
                raise SpectrometerError(f"{self.name}: an acquisition is already running")
            status, cancel, claim = self._current = (DeviceStatus(self), threading.Event(),
                                                     threading.Lock())

        def run():
            try:
                with self._backend_lock:
                    if cancel.is_set():
                        return
                    t_start, mean, saturated = self._scan(settings, cancel)
                if not cancel.is_set():
                    finish(t_start, mean, saturated)
            except SpectrometerError as error:
                _complete(status, claim, error)
            except Exception as error:
                failure = SpectrometerError(f"{self.name}: {what} acquisition failed: "
                                            f"{type(error).__name__}: {error}")
                failure.__cause__ = error
                _complete(status, claim, failure)
            else:
                _complete(status, claim)

        background.run(run, name=f"{self.name}-{what}")
        return status

    def _scan(self, settings: _Settings, cancel: threading.Event):
        """(start time, mean counts, saturated-pixel mask) of ``averages`` scans."""
        try:
            if self._sent_us != settings.integration_time_us:
                self._sent_us = None
                self.backend.integration_time_micros(settings.integration_time_us)
                self._sent_us = settings.integration_time_us
            t_start = timebase.now()
            total = np.zeros(self._wavelengths.size)
            peak = np.full(self._wavelengths.size, -math.inf)
            for _ in range(settings.averages):
                if cancel.is_set():
                    break
                counts = np.asarray(self.backend.intensities(), dtype=float)
                if counts.shape != total.shape:
                    raise SpectrometerError(f"{self.name}: the spectrometer returned "
                                            f"{counts.shape} counts for {total.size} pixels")
                total += counts
                np.maximum(peak, counts, out=peak)
        except Exception:
            self._sent_us = None  # after a fault, send the integration time again
            raise
        return t_start, total / settings.averages, peak >= self._max_intensity


def _complete(status: DeviceStatus, claim: threading.Lock, error: Exception | None = None) -> None:
    """Finish ``status`` (or fail it with ``error``) unless someone already has."""
    if claim.acquire(blocking=False):
        if error is None:
            status.set_finished()
        else:
            status.set_exception(error)
