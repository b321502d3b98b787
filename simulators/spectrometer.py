"""Simulated UV-Vis spectrometer of the flow reactor's optic flow cell (seed 002, in situ
absorption spectra of Fig. 1 / Fig. S2).

:class:`SimulatedSpectrometer` offers the same calls as python-seabreeze's
``seabreeze.spectrometers.Spectrometer`` (see
:class:`ncsynth.devices.spectrometer.SpectrometerBackend`), so the device code is the same
for the simulator and the real instrument.

Counts model of one scan of integration time ``t`` (s), per pixel of wavelength λ (nm)::

    counts = Poisson( lamp(λ) · 10^(−A(λ)) · t  +  dark_current · t )
             + dark_offset + Normal(0, read_noise)

rounded and clipped to ``0 .. max_counts`` (16-bit ADC: 65535). One count per
photoelectron; ``A(λ)`` is the decadic absorbance of what is in the flow cell when the
scan starts (``absorbance`` callable), ``lamp(λ)`` (counts/s) the blank-cell throughput of
a deuterium–halogen source (:func:`deuterium_halogen_lamp`).

The scan takes ``t`` of the given clock's time (``clock.sleep``: the world's
:class:`~ncsynth.simulators.clock.WorldClock` or :mod:`ncsynth.timebase`), or of wall time
without a clock.

Back door for tests: :meth:`~SimulatedSpectrometer.set_absorbance`,
:meth:`~SimulatedSpectrometer.block_lamp` (a dark), :meth:`~SimulatedSpectrometer.saturate`,
:meth:`~SimulatedSpectrometer.fail_next` (a USB error), and the counters
:attr:`~SimulatedSpectrometer.scans` / :attr:`~SimulatedSpectrometer.integration_time_us`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

#: Full scale of the 16-bit ADC, counts.
MAX_COUNTS = 65535


def deuterium_halogen_lamp(wavelength_nm) -> np.ndarray:
    """Relative blank-cell throughput (peak 1) of a deuterium–halogen source, λ in nm.

    A smooth stand-in, not a calibrated lamp: a deuterium continuum falling off from the
    UV (``0.6·exp(−(λ − 300 nm)/60 nm)``) plus a 3000 K tungsten-halogen Planck curve
    (1 at 600 nm) weighted by a silicon-detector/grating response (Gaussian, centre 600 nm,
    σ 150 nm), cut to the usable 300–800 nm band by logistic edges 5 nm wide. Peak near
    670 nm, minimum over 320–780 nm ≈ 0.14 (near 405 nm).
    """
    return _lamp_shape(np.asarray(wavelength_nm, dtype=float)) / _LAMP_PEAK


def _lamp_shape(wl: np.ndarray) -> np.ndarray:
    deuterium = 0.6 * np.exp(-(wl - 300.0) / 60.0)
    planck = _planck(wl * 1e-9) / _planck(600e-9)
    halogen = planck * np.exp(-0.5 * ((wl - 600.0) / 150.0) ** 2)
    band = 1.0 / (1.0 + np.exp(-(wl - 300.0) / 5.0)) / (1.0 + np.exp((wl - 800.0) / 5.0))
    return (deuterium + halogen) * band


def _planck(wavelength_m):
    """Planck spectral radiance at 3000 K up to a constant (hc/k = 0.014388 m·K)."""
    return wavelength_m ** -5 / np.expm1(0.014388 / (wavelength_m * 3000.0))


_LAMP_PEAK = float(_lamp_shape(np.linspace(200.0, 900.0, 7001)).max())


class SimulatedSpectrometer:
    """A spectrometer with the calls of ``seabreeze.spectrometers.Spectrometer`` (module docstring).

    Parameters
    ----------
    absorbance : ``callable(wavelength_nm) -> ndarray`` of the flow cell's decadic absorbance
        at each pixel (default: a blank, 0 everywhere).
    clock : object with ``sleep(seconds)`` on which scans take their time; None: wall time.
    lamp : ``callable(wavelength_nm) -> ndarray`` relative lamp throughput (peak 1).
    lamp_peak_counts_per_s : counts/s at the lamp's peak through a blank cell.
    pixels, wavelength_range_nm : detector pixels, linearly spread over (first, last) nm.
    dark_offset_counts : electronic offset of every pixel, counts.
    dark_current_counts_per_s : thermal dark signal, counts/s (Poisson).
    read_noise_counts : read noise, counts (Gaussian σ).
    max_counts : ADC full scale, counts.
    integration_time_limits_us : (min, max) integration time, µs.
    seed : seed of the noise generator.
    """

    def __init__(self, absorbance: Callable | None = None, *, clock=None,
                 lamp: Callable = deuterium_halogen_lamp, lamp_peak_counts_per_s: float = 4.0e5,
                 pixels: int = 2048, wavelength_range_nm: tuple[float, float] = (200.0, 850.0),
                 dark_offset_counts: float = 1000.0, dark_current_counts_per_s: float = 200.0,
                 read_noise_counts: float = 8.0, max_counts: int = MAX_COUNTS,
                 integration_time_limits_us: tuple[int, int] = (1_000, 60_000_000),
                 seed: int = 0, serial_number: str = "SIM00001", model: str = "SIM-UVVIS-2048"):
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 2:
            raise ValueError(f"pixels must be an int >= 2, got {pixels!r}")
        first, last = (float(v) for v in wavelength_range_nm)
        if not 0 < first < last:
            raise ValueError(f"wavelength_range_nm must be (first, last) with 0 < first < last, "
                             f"got {wavelength_range_nm!r}")
        for label, value in (("lamp_peak_counts_per_s", lamp_peak_counts_per_s),
                             ("dark_offset_counts", dark_offset_counts),
                             ("dark_current_counts_per_s", dark_current_counts_per_s),
                             ("read_noise_counts", read_noise_counts)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        low_us, high_us = (int(v) for v in integration_time_limits_us)
        if not 0 < low_us <= high_us:
            raise ValueError(f"integration_time_limits_us must be (min, max) with 0 < min <= max, "
                             f"got {integration_time_limits_us!r}")
        self._wavelengths = np.linspace(first, last, pixels)
        relative = np.asarray(lamp(self._wavelengths), dtype=float)
        self._lamp_counts_per_s = lamp_peak_counts_per_s * relative
        self._clock = clock
        self._dark_offset = float(dark_offset_counts)
        self._dark_current = float(dark_current_counts_per_s)
        self._read_noise = float(read_noise_counts)
        self._max_counts = int(max_counts)
        self._limits_us = (low_us, high_us)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.serial_number = serial_number
        self.model = model
        self._absorbance = absorbance or (lambda wl: np.zeros_like(wl))
        self._lamp_on = True
        self._overexposure = 1.0
        self._failure: BaseException | None = None
        self._closed = False
        #: Integration time last set, µs (back door: what the device actually sent).
        self.integration_time_us = low_us
        #: Scans read so far (back door).
        self.scans = 0

    # -- seabreeze Spectrometer calls ------------------------------------------------------
    def wavelengths(self) -> np.ndarray:
        """Pixel wavelengths, nm."""
        return self._wavelengths.copy()

    @property
    def integration_time_micros_limits(self) -> tuple[int, int]:
        """(min, max) integration time, µs."""
        return self._limits_us

    @property
    def max_intensity(self) -> float:
        """ADC full scale, counts."""
        return float(self._max_counts)

    def integration_time_micros(self, integration_time_micros: int) -> None:
        """Set the integration time, µs (ValueError outside the limits)."""
        self._check_open()
        low, high = self._limits_us
        if not low <= integration_time_micros <= high:
            raise ValueError(f"integration_time_micros must be within [{low}, {high}] µs, "
                             f"got {integration_time_micros!r}")
        self.integration_time_us = int(integration_time_micros)

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        """One scan: counts per pixel (float array); takes the integration time on the clock."""
        if correct_dark_counts or correct_nonlinearity:
            raise ValueError("the simulated spectrometer has no electric-dark or "
                             "nonlinearity correction")
        self._check_open()
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        t_s = self.integration_time_us * 1e-6
        absorbance = np.asarray(self._absorbance(self._wavelengths), dtype=float)
        if absorbance.shape != self._wavelengths.shape or not np.all(np.isfinite(absorbance)):
            raise ValueError(f"absorbance(wavelength_nm) must return {self._wavelengths.size} "
                             f"finite values, got shape {absorbance.shape}")
        light = self._lamp_counts_per_s * self._overexposure if self._lamp_on else 0.0
        expected = light * 10.0 ** -absorbance * t_s + self._dark_current * t_s
        if self._clock is None:
            time.sleep(t_s)
        else:
            self._clock.sleep(t_s)
        with self._lock:
            counts = (self._rng.poisson(expected) + self._dark_offset
                      + self._rng.normal(0.0, self._read_noise, expected.shape))
            self.scans += 1
        return np.clip(np.round(counts), 0, self._max_counts)

    def close(self) -> None:
        """Release the (simulated) USB connection; later calls raise OSError."""
        self._closed = True

    # -- back door ---------------------------------------------------------------------------
    def set_absorbance(self, absorbance: Callable) -> None:
        """What is in the flow cell from now on: ``callable(wavelength_nm) -> ndarray``."""
        self._absorbance = absorbance

    def block_lamp(self, blocked: bool = True) -> None:
        """Close (True) or open the lamp shutter: blocked scans read the dark only."""
        self._lamp_on = not blocked

    def saturate(self, on: bool = True) -> None:
        """Overexpose (stray light, 100× the lamp) until called with False."""
        self._overexposure = 100.0 if on else 1.0

    def fail_next(self, error: BaseException) -> None:
        """The next :meth:`intensities` raises ``error`` (e.g. a USB time-out)."""
        with self._lock:
            self._failure = error

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(f"spectrometer {self.serial_number} is closed")
