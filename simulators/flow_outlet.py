"""The flow reactor's outlet as a world model, and its particles as a size distribution for SAXS.

:class:`FlowReactorModel` feeds the plug composition of :func:`~ncsynth.simulators.
flow_chemistry.simulate_plug` (seed 002's chemistry) through tanks in series to the flow cells;
:func:`mixture_distribution` turns a composition into the radii and number concentrations the
SAXS simulator scatters from.  Units: mL, mL/min, s, °C, mol/L, nm.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.linalg import toeplitz
from scipy.special import gammaln

from ..analysis.optical import MSC_PEAKS_NM, cdse_diameter_from_units_nm, cdse_diameter_nm
from .flow_chemistry import (FAMILIES, STATE_SIZE, FlowComposition, FlowKineticParameters,
                             check_number, simulate_plug)
from .kinetics_parameters import ZERO_CELSIUS_K

#: Relative standard deviation of an MSC family's radius: near-monodisperse (SAXS only).
MSC_RELATIVE_SIGMA = 0.02


def _gaussian_cells(volume_radius_nm: float, relative_sigma: float, count: int):
    """``count`` radii evenly over ±4σ of a Gaussian with relative width ``relative_sigma``
    and normalised weights, whose mean volume is that of a sphere of ``volume_radius_nm``.

    The chemistry holds a population's CdSe units and particle count, i.e. its mean particle
    volume: centring the Gaussian on the radius of that volume instead would scatter from
    (1 + 3σ²/R²) times the CdSe there is (+1.9 % for the NCs' σ/R = 0.08), which the flow dry
    run's McSAS volume fractions then showed against the outlet's."""
    offsets = np.linspace(-4.0, 4.0, count)
    weights = np.exp(-0.5 * offsets**2)
    weights /= weights.sum()
    shape = 1.0 + relative_sigma * offsets
    centre = volume_radius_nm / np.cbrt(weights @ shape**3)
    return centre * shape, weights


def mixture_distribution(composition: FlowComposition, nc_cells: int = 41, msc_cells: int = 7):
    """Discrete size distribution of a composition for SAXS: ``(radius_nm, number_molar)``.

    Each MSC family is a near-monodisperse Gaussian (σ_R = 2 % of R, ``msc_cells`` cells) with
    the volume of a sphere of its optical diameter (cdse_diameter_nm of its peak; the seed's SAXS
    finds 1.74, 1.88, 2.04 nm for 403/437/465, Fig. 4 text); the NCs are Gaussian in radius with
    the composition's relative σ (``nc_cells`` cells) and its mean CdSe units per particle as
    their mean volume.  Both arrays have a fixed length
    5·msc_cells + nc_cells, ready for analysis.scattering.distribution_intensity.
    """
    radii, numbers = [], []
    for label in FAMILIES:
        radius = float(cdse_diameter_nm(MSC_PEAKS_NM[label])) / 2.0
        cells, weights = _gaussian_cells(radius, MSC_RELATIVE_SIGMA, msc_cells)
        radii.append(cells)
        numbers.append(weights * max(composition.families[label], 0.0))
    diameter = composition.nc_diameter_nm
    if not math.isfinite(diameter):  # no NCs: empty cells at the birth size
        diameter = float(cdse_diameter_from_units_nm(FlowKineticParameters.nc_birth_units))
    cells, weights = _gaussian_cells(diameter / 2.0, composition.nc_relative_sigma, nc_cells)
    radii.append(cells)
    numbers.append(weights * max(composition.nc_molar, 0.0))
    return np.concatenate(radii), np.concatenate(numbers)


@functools.lru_cache(maxsize=512)
def _steady_state(chamber_s, oven_s, nucleation_c, growth_c, precursor_molar, parameters):
    state = simulate_plug(chamber_s, oven_s, nucleation_c, growth_c, precursor_molar,
                          parameters=parameters).state()
    state.setflags(write=False)
    return state


class FlowReactorModel:
    """The reactor outlet as a world model: ``step(dt_s, world)`` (see simulators/world.py).

    Inputs are callables read at every step, so the integrator can wire them to the pump and
    temperature-controller models: ``flow_rate_ml_min()`` (mL/min, >= 0),
    ``nucleation_temperature_c()`` and ``growth_temperature_c()`` (°C).

    Volumes (mL; the seed only says "very low volume nucleation chamber and a larger volume
    growth oven"): chamber 0.05, oven 0.5, transfer line to the flow cells 0.1.  Residence
    times are volume / flow rate, so 1.5 s, 4.5 s and 14 s of reaction time (chamber + oven,
    the seed's times) take 22, 7.3 and 2.4 mL/min.  The transfer line is taken as quenched
    (no chemistry), it only delays and disperses.

    Outlet: the composition a plug would have under the current conditions (:func:`simulate_plug`,
    cached per conditions rounded to ``temperature_step_c`` and 4 significant digits of flow) is
    fed to ``tanks`` equal stirred tanks in series holding the whole volume V (chamber + oven +
    transfer); the outlet is the last tank.  The tanks are advanced exactly for constant inputs
    over a step (Poisson weights of Q·dt/V_tank), so any dt is fine.  After k residence volumes
    V/Q the outlet is within P(Poisson(k·N) < N) of the steady state (N = 10, k = 3: 1e-5).
    Zero flow holds everything.  The reactor starts full of solvent (all zero).

    Back door for tests: :meth:`snapshot`, :meth:`set_precursor`.
    """

    def __init__(self, flow_rate_ml_min, nucleation_temperature_c, growth_temperature_c, *,
                 chamber_volume_ml: float = 0.05, oven_volume_ml: float = 0.5,
                 transfer_volume_ml: float = 0.1, precursor_molar: float = 0.01,
                 parameters: FlowKineticParameters | None = None, tanks: int = 10,
                 temperature_step_c: float = 0.1):
        for name, value in (("flow_rate_ml_min", flow_rate_ml_min),
                            ("nucleation_temperature_c", nucleation_temperature_c),
                            ("growth_temperature_c", growth_temperature_c)):
            if not callable(value):
                raise TypeError(f"{name} must be a callable returning a number, got {value!r}")
        self._flow, self._t_nuc, self._t_growth = (flow_rate_ml_min, nucleation_temperature_c,
                                                   growth_temperature_c)
        self.chamber_volume_ml = check_number("chamber_volume_ml", chamber_volume_ml)
        self.oven_volume_ml = check_number("oven_volume_ml", oven_volume_ml)
        self.transfer_volume_ml = check_number("transfer_volume_ml", transfer_volume_ml)
        if self.total_volume_ml <= 0:
            raise ValueError("the reactor volumes must not all be zero")
        self.temperature_step_c = check_number("temperature_step_c", temperature_step_c)
        if self.temperature_step_c <= 0:
            raise ValueError(f"temperature_step_c must be > 0, got {temperature_step_c!r}")
        if isinstance(tanks, bool) or not isinstance(tanks, int) or tanks < 1:
            raise ValueError(f"tanks must be an int >= 1, got {tanks!r}")
        self.parameters = parameters if parameters is not None else FlowKineticParameters()
        self._precursor = check_number("precursor_molar", precursor_molar)
        self._tanks = np.zeros((tanks, STATE_SIZE))
        self.time_s = 0.0
        self._inputs = (0.0, math.nan, math.nan)

    @property
    def total_volume_ml(self) -> float:
        return self.chamber_volume_ml + self.oven_volume_ml + self.transfer_volume_ml

    def residence_times_s(self, flow_rate_ml_min: float) -> tuple[float, float]:
        """(chamber, oven) residence times in s at ``flow_rate_ml_min`` (> 0)."""
        seconds_per_ml = 60.0 / flow_rate_ml_min
        return self.chamber_volume_ml * seconds_per_ml, self.oven_volume_ml * seconds_per_ml

    def steady_state(self, flow_rate_ml_min: float, nucleation_temperature_c: float,
                     growth_temperature_c: float) -> FlowComposition:
        """The plug composition the outlet tends to under these conditions (cached, rounded)."""
        flow = float(f"{check_number('flow_rate_ml_min', flow_rate_ml_min):.4g}")
        if flow <= 0:
            raise ValueError(f"flow_rate_ml_min must be > 0 for a steady state, got {flow_rate_ml_min!r}")
        step = self.temperature_step_c
        t_nuc, t_growth = (round(check_number(name, value, -ZERO_CELSIUS_K) / step) * step
                           for name, value in (("nucleation_temperature_c", nucleation_temperature_c),
                                               ("growth_temperature_c", growth_temperature_c)))
        state = _steady_state(*self.residence_times_s(flow), t_nuc, t_growth, self._precursor,
                              self.parameters)
        return FlowComposition.from_state(state, self.parameters.nc_relative_sigma)

    def step(self, dt_s: float, world=None) -> None:
        """Advance the outlet by ``dt_s`` seconds under the inputs read now."""
        dt = check_number("dt_s", dt_s)
        flow = check_number("flow_rate_ml_min", self._flow())
        t_nuc, t_growth = self._t_nuc(), self._t_growth()
        self._inputs = (flow, t_nuc, t_growth)
        self.time_s += dt
        if flow == 0 or dt == 0:
            return
        feed = self.steady_state(flow, t_nuc, t_growth).state()
        tanks = len(self._tanks)
        washed = flow / 60.0 * dt / (self.total_volume_ml / tanks)  # tank volumes flushed
        k = np.arange(tanks)
        poisson = np.exp(-washed + k * math.log(washed) - gammaln(k + 1.0))
        deviation = self._tanks - feed
        self._tanks = feed + toeplitz(poisson, np.zeros(tanks)) @ deviation

    def outlet(self) -> FlowComposition:
        """Composition at the flow cells now."""
        return FlowComposition.from_state(self._tanks[-1], self.parameters.nc_relative_sigma)

    def mixture_distribution(self, **options):
        """:func:`mixture_distribution` of the outlet: ``(radius_nm, number_molar)`` for SAXS."""
        return mixture_distribution(self.outlet(), **options)

    # ------------------------------------------------------------------ back door
    def set_precursor(self, precursor_molar: float) -> None:
        """Feed ``precursor_molar`` (mol/L Cd) from now on; the outlet follows by washout."""
        self._precursor = check_number("precursor_molar", precursor_molar)

    def snapshot(self) -> dict:
        """State for tests and the integrator: inputs of the last step, residence times, outlet."""
        flow, t_nuc, t_growth = self._inputs
        chamber, oven = self.residence_times_s(flow) if flow > 0 else (math.inf, math.inf)
        return {"time_s": self.time_s, "flow_rate_ml_min": flow,
                "nucleation_temperature_c": t_nuc, "growth_temperature_c": t_growth,
                "residence_chamber_s": chamber, "residence_oven_s": oven,
                "precursor_molar": self._precursor, "outlet": self.outlet()}
