"""Simulated SAXS frames (seed 000 §S.1.4, §S.2.1): the physics behind the simulated detector IOC.

:class:`SampleBackground` and :class:`FrameSynthesizer` turn the absolute scattering of the flask
(nanocrystals from the world's size distribution, eq. S2.1 summed over the distribution, plus
solvent and glass) into Poisson-distributed counts; :func:`flask_state` samples the world and
:func:`reserve_exposure` holds a jumping clock at an exposure's middle and end and takes the
flask's state at its middle (a probe of the world). The protocol
interface that serves the frames is :mod:`ncsynth.simulators.area_detector` (Channel Access).

Counts model (the calibration the reduction inverts)::

    counts(pixel) ~ Poisson( flux · t_exp · transmission · thickness · ΔΩ_pixel · I(q_pixel) )

with flux in photons/s, t_exp in s, thickness in cm (4 mm path, §S.2.1), ΔΩ_pixel the
pixel's solid angle in sr (pyFAI, from :class:`~ncsynth.analysis.geometry.DetectorGeometry`)
and I in cm⁻¹. Masked pixels (beam stop, module gaps) read 0. Polarisation (< 0.3 % below
q = 5 nm⁻¹ at 18 keV) and detector read-out noise are not modelled.

Speed: I(q) is evaluated on a fine logarithmic q grid (default 1024 points spanning the
unmasked pixels) and interpolated linearly per pixel through a precomputed index/weight
table; a full 480×480 frame costs one matrix-vector product for I(q), two gathers and the
Poisson draw, which is most of it (~6 ms in one stream): the pixels are drawn from
:data:`NOISE_STREAMS` independent streams (spawned from the seed) in as many threads, numpy
drawing without the GIL (see ``benchmarks/detector.py``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.scattering import AVOGADRO_PER_MOL, distribution_intensity

from .world import Probe

#: dtype of frames: little-endian unsigned 32-bit counts (masked pixels 0).
FRAME_DTYPE = np.dtype("<u4")
#: mol/L per (1/m³): n / (N_A · 1000 L/m³).
MOLAR_PER_M3 = 1.0 / (AVOGADRO_PER_MOL * 1000.0)
#: Independent Poisson streams (spawned from a synthesizer's seed) a frame is drawn from, one
#: consecutive share of its pixels each, in as many threads: the same counts for a seed
#: whatever the machine.
NOISE_STREAMS = 2
_noise_pool: ThreadPoolExecutor | None = None
_noise_pool_lock = threading.Lock()


def _noise_threads() -> ThreadPoolExecutor:
    """The process's threads drawing frame noise (made on first use)."""
    global _noise_pool
    with _noise_pool_lock:
        if _noise_pool is None:
            _noise_pool = ThreadPoolExecutor(NOISE_STREAMS, thread_name_prefix="frame-noise")
        return _noise_pool


@dataclass(frozen=True)
class SampleBackground:
    """Scattering of the flask without nanocrystals, in cm⁻¹ of the 4 mm sample path.

    ``I_bg(q, T) = flat_cm_at_25c · (1 + flat_rise_per_c · (T − 25 °C)) + porod_cm_nm4 · q⁻ᵖ``

    * Flat part: density-fluctuation (compressibility) scattering of the hydrocarbon solvent
      (ODE/oleic acid) plus incoherent scattering. Water gives 0.0165 cm⁻¹ (§S.2.1); ODE's
      larger compressibility and lower electron density give ~0.024 cm⁻¹ at 25 °C, and
      k_B·T·κ_T·ρ_e² roughly triples up to 260 °C (κ_T grows ~3.5×, ρ_e² drops by the 25 %
      expansion of §S.2.2), hence a relative rise of 1.1 % per °C (≈ 0.086 cm⁻¹ at 260 °C).
    * Low-q power law (exponent 4, Porod) from the borosilicate windows (2 × 0.7 mm,
      §S.1.4) and ligand aggregates, expressed per cm of sample: 2 cm⁻¹ at 0.1 nm⁻¹,
      negligible above ~0.4 nm⁻¹.

    These are plausible order-of-magnitude values, not measurements; the reduction removes
    them by subtracting a pre-injection frame (§S.2.1) and fitting a constant (§S.2.2).
    """

    flat_cm_at_25c: float = 0.024
    flat_rise_per_c: float = 0.011
    porod_cm_nm4: float = 2.0e-4
    porod_exponent: float = 4.0

    def intensity_cm(self, q_nm: np.ndarray, temperature_c: float) -> np.ndarray:
        """I_bg(q) in cm⁻¹ at flask temperature ``temperature_c`` (°C)."""
        if not math.isfinite(temperature_c):
            raise ValueError(f"temperature_c must be finite, got {temperature_c!r}")
        flat = self.flat_cm_at_25c * max(0.0, 1.0 + self.flat_rise_per_c * (temperature_c - 25.0))
        return flat + self.porod_cm_nm4 * np.asarray(q_nm, dtype=float) ** (-self.porod_exponent)


class FrameSynthesizer:
    """Turns a size distribution and a flask temperature into detector frames.

    Parameters
    ----------
    geometry : detector geometry (q map, solid angles and mask come from its pyFAI integrator).
    flux_ph_per_s : incident photons per second on the sample (ID02 order: 1e13 ph/s); may be
        changed between frames (a decaying or refilled beam), the next frame scales with it.
    transmission : X-ray transmission of flask + sample (two 0.7 mm glass windows and 4 mm
        of organic liquid at 18 keV: ~0.25).
    thickness_cm : sample path length, cm (4 mm, §S.2.1).
    background : the flask's own scattering.
    n_q : points of the logarithmic q grid on which I(q) is evaluated before interpolation.
    seed : seed of the Poisson noise (:data:`NOISE_STREAMS` streams spawned from it; None:
        fresh entropy).
    """

    def __init__(self, geometry: DetectorGeometry, *, flux_ph_per_s: float = 1e13,
                 transmission: float = 0.25, thickness_cm: float = 0.4,
                 background: SampleBackground = SampleBackground(), n_q: int = 1024,
                 seed: int | None = None):
        if not isinstance(geometry, DetectorGeometry):
            raise TypeError(f"geometry must be a DetectorGeometry, got {type(geometry).__name__}")
        _check_positive("flux_ph_per_s", flux_ph_per_s)
        _check_positive("thickness_cm", thickness_cm)
        if not (isinstance(transmission, (int, float)) and 0 < transmission <= 1):
            raise ValueError(f"transmission must be in (0, 1], got {transmission!r}")
        if not (isinstance(n_q, int) and n_q >= 16):
            raise ValueError(f"n_q must be an integer >= 16, got {n_q!r}")
        self.geometry = geometry
        self.flux_ph_per_s = float(flux_ph_per_s)
        self.transmission = float(transmission)
        self.thickness_cm = float(thickness_cm)
        self.background = background
        self._streams = [np.random.default_rng(stream)
                         for stream in np.random.SeedSequence(seed).spawn(NOISE_STREAMS)]
        self._lock = threading.Lock()

        valid = ~geometry.mask
        q_valid = geometry.q_map_nm[valid]
        q_lo, q_hi = float(q_valid.min()), float(q_valid.max())
        self.q_grid_nm = np.geomspace(q_lo * (1 - 1e-9), q_hi * (1 + 1e-9), n_q)
        index = np.clip(np.searchsorted(self.q_grid_nm, q_valid) - 1, 0, n_q - 2)
        left, right = self.q_grid_nm[index], self.q_grid_nm[index + 1]
        self._valid_flat = np.flatnonzero(valid)
        self._index, self._index_above = index, index + 1
        weight = (q_valid - left) / (right - left)
        # photons per (cm⁻¹ · s) landing in each valid pixel per incident photon/s, split
        # between the grid points either side (linear interpolation)
        counts_per_cm_photon = self.transmission * self.thickness_cm * geometry.solid_angle_sr[valid]
        self._below, self._above = counts_per_cm_photon * (1 - weight), counts_per_cm_photon * weight

    def counts_scale(self, exposure_s: float) -> float:
        """flux · t_exp · transmission · thickness (photons·cm per sr); times ΔΩ·I gives counts.

        Divide a solid-angle-corrected azimuthal average (pyFAI ``correctSolidAngle=True``)
        by ``counts_scale · geometry.reference_solid_angle_sr`` to get I(q) in cm⁻¹.
        """
        _check_positive("exposure_s", exposure_s)
        return self.flux_ph_per_s * exposure_s * self.transmission * self.thickness_cm

    def intensity_cm(self, radius_nm, number_concentration_molar, temperature_c: float) -> np.ndarray:
        """I(q) on :attr:`q_grid_nm`, cm⁻¹: nanocrystals (S2.1 over the distribution) + background."""
        intensity = self.background.intensity_cm(self.q_grid_nm, temperature_c)
        radius = np.asarray(radius_nm, dtype=float)
        if radius.size:
            intensity = intensity + distribution_intensity(self.q_grid_nm, radius,
                                                           number_concentration_molar)
        return intensity

    def expected_counts(self, intensity_on_grid_cm: np.ndarray, exposure_s: float) -> np.ndarray:
        """Noise-free counts per pixel (float64, masked pixels 0) for I(q) given on :attr:`q_grid_nm`."""
        _check_positive("exposure_s", exposure_s)
        grid = np.asarray(intensity_on_grid_cm, dtype=float)
        if grid.shape != self.q_grid_nm.shape:
            raise ValueError(f"intensity_on_grid_cm must have shape {self.q_grid_nm.shape}, got {grid.shape}")
        per_pixel = grid[self._index]
        per_pixel *= self._below
        above = grid[self._index_above]
        above *= self._above
        per_pixel += above
        per_pixel *= self.flux_ph_per_s * exposure_s
        expected = np.zeros(self.geometry.shape, dtype=float)
        expected.ravel()[self._valid_flat] = per_pixel
        return expected

    def noisy(self, expected_counts: np.ndarray) -> np.ndarray:
        """One Poisson realisation of ``expected_counts`` as a ``uint32`` frame (seeded streams,
        one share of the pixels each, drawn in parallel)."""
        expected = np.asarray(expected_counts, dtype=float)
        flat = expected.ravel()
        frame = np.empty(flat.shape, FRAME_DTYPE)
        bounds = np.linspace(0, flat.size, NOISE_STREAMS + 1).astype(int)

        def draw(k: int) -> None:
            share = slice(bounds[k], bounds[k + 1])
            frame[share] = self._streams[k].poisson(flat[share])

        with self._lock:
            list(_noise_threads().map(draw, range(NOISE_STREAMS)))
        return frame.reshape(expected.shape)

    def synthesize(self, radius_nm, number_concentration_molar, temperature_c: float,
                   exposure_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(frame uint32, expected counts float64) for one exposure of the given flask state."""
        intensity = self.intensity_cm(radius_nm, number_concentration_molar, temperature_c)
        expected = self.expected_counts(intensity, exposure_s)
        return self.noisy(expected), expected

def flask_state(world, override: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """(radius_nm, mol/L per cell, °C) of ``world``'s flask as it stands (not advanced: an
    exposure takes it through a probe, :func:`reserve_exposure`), or ``override``'s
    distribution (a test's back door) at the flask's temperature; no reaction: background only."""
    with world.lock:
        flask = world.flask
        temperature = float(flask.temperature_c) if flask is not None else 25.0
        if override is not None:
            return (*override, temperature)
        reaction = world.reaction
        if reaction is None:
            return np.empty(0), np.empty(0), temperature
        radius = np.array(reaction.radius_nm, dtype=float)
        numbers = np.array(reaction.number_density_per_m3, dtype=float) * MOLAR_PER_M3
    return radius, numbers, temperature


@dataclass(frozen=True)
class Exposure:
    """One exposure: its start (epoch s), length (s), the ``wait(then=None)`` of its middle
    and end, reserved on the world clock at the start, and the flask at its middle."""

    t_start: float
    exposure_s: float
    middle: Callable[..., bool]
    end: Callable[..., bool]
    flask: Probe


def reserve_exposure(world, t_start: float, exposure_s: float, cancel: threading.Event,
                     override: Callable[[], tuple | None] = lambda: None) -> Exposure:
    """The exposure starting at ``t_start`` with its middle and end reserved on the world's
    clock and the flask's state at its middle (:func:`flask_state`, ``override()`` then)
    taken when the world passes it (:meth:`~.world.World.probe`): the frame is the same
    however late the thread that synthesises it runs."""
    middle = t_start + exposure_s / 2
    return Exposure(t_start, exposure_s, world.clock.reserve(middle, cancel),
                    world.clock.reserve(t_start + exposure_s, cancel),
                    world.probe(middle, lambda: flask_state(world, override())))


async def while_busy(clock, awaitable):
    """Await ``awaitable`` while a jumping clock holds still (``clock.busy()``)."""
    busy = getattr(clock, "busy", None)
    if busy is None:
        return await awaitable
    with busy():
        return await awaitable


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
