"""Chemistry of the continuous-flow reactor: CdSe magic-size clusters and nanocrystals (seed 002).

One plug of precursor flows through the nucleation chamber (temperature T_nuc), then the growth
oven, where it relaxes from T_nuc to T_growth (time constant ``oven_heat_time_s``);
:func:`simulate_plug` integrates its composition (scipy ``solve_ivp``, LSODA: stiff-safe, it
switches to BDF in the nucleation burst).
:class:`~ncsynth.simulators.flow_outlet.FlowReactorModel` is the world model of the reactor outlet.

Species (seed 002, "monomer-driven growth" rate laws and Fig. 4 table), concentrations in mol/L:

* M — monomer, mol/L of CdSe units.  The precursor mixture enters as monomer
  (``precursor_molar`` mol/L of Cd): its conversion is taken as fast against the 1.5–14 s
  residence times, so how much monomer is left depends on how much nucleation (strongly
  temperature dependent) has used up — the seed's temperature-dependent monomer source.
* the magic-size-cluster families MSC-350, -382, -403, -437, -465 (mol/L of particles), named by
  their fixed absorption maximum; each holds N = cdse_units(cdse_diameter_nm(λ)) units
  (12.5, 25.8, 37.9, 61.2, 83.9).  The seed's "Nucl." are the smallest clusters, (CdSe)13 of
  the Fig. 4 table, i.e. MSC-350.  (Fig. 4 lists the second family at 380 nm, the rate laws
  call it 382; it is MSC-382 here, absorbing at 382 nm.)
* NC — regular nanocrystals: number (mol/L of particles) and CdSe units held (mol/L); the mean
  size is units per NC, through cdse_diameter_from_units_nm.

Reactions, with every rate constant Arrhenius, k(T) = k_ref·exp[−E_a/R·(1/T − 1/T_ref)]::

    N₃₅₀ M → MSC-350            k_nuc[M]^m                   nucleation (nuclei per L per s)
    MSC-350 + M → MSC-382       k(382)[350][M]    high T: r(382) = k(382)[Nucl][M]
    MSC-350 + M → MSC-403       k(403)[350][M]    T ≤ 300 °C: r(403) = k(403)[Nucl][M]
    MSC-382 + M → MSC-437       k(437)[382][M]    (same k(437) for both parents)
    MSC-403 + M → MSC-437       k(437)[403][M]
    MSC-437 + M → MSC-465       [k(465)·K/(1 + K) + k(465,hot)][437][M]   two channels:
                                T ≤ 260 °C (after a monomer pre-adsorption, equilibrium K)
                                and > 300 °C; the seed lists no r(465) in between
    MSC-465 + M → NC            k(NC)[465][M]
    MSC-403 + M → NC            k(NC,403)[403][M]  260–300 °C window: NCs from CdSe-403
    MSC-350 + M → NC            k(NC,nuc)[350][M]  high T alternative r(NCs) = k[Nucl][M]
    NC growth                   k_g[NC][M](n/n_ref)^(2/3)    units per L per s, n = units/NC
    MSC-j → MSC-(j−1) + ΔN M    k_j[j]·(1 − [M]/S)₊     dissolution under monomer depletion
                                (into the next smaller family, MSC-350 into monomer;
                                k_j = s_j·k_d in series with a limit, 1/k_j = 1/(s_j k_d) + 1/L)

The hot lineage (``FlowKineticParameters.hot_lineage``, on): the share ``hot_route_opening(T)``
of new nuclei (0.15 % at 300 °C, 99 % at 310 °C) follows the seed's "above 300 °C" list wherever
the plug goes — nuclei → 382 → 437 → 465 → NC (k(382), k(437), ``k_465_hot_lineage`` + k(465,hot),
k(NC)) and k(NC,nuc) — and dissolves down its own chain with ``hot_dissolution_factors`` (its
CdSe-403, a fragment of CdSe-437, into monomer).  Each family is the sum of both lineages (same
peak, same size); ``FlowComposition.hot_families`` holds the hot part.

A step from a family of N_a units to one of N_b consumes N_b − N_a monomer units (a
dissolution step releases them); a new NC holds ``nc_birth_units``.  So monomer + Σ N_j[j] +
NC units is conserved.

All temperature regimes of the seed come from one scheme: the branches' activation energies
select them (see :class:`FlowKineticParameters` for the numbers and what they reproduce).
Interfaces use °C, s, mol/L, nm.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from ..analysis.optical import cdse_diameter_from_units_nm
from .flow_chamber import stirred_tank_outlet
from .flow_heating import oven_entry_segments
from .flow_kinetics import (FAMILIES, FAMILY_UNITS, HOT_DISSOLVES_INTO, HOT_STEPS, NUCLEUS, STEPS,
                            Arrhenius, FlowKineticParameters)
from .kinetics_parameters import ZERO_CELSIUS_K

__all__ = ["FAMILIES", "FAMILY_UNITS", "NUCLEUS", "STATE_SIZE", "QUENCH_TEMPERATURE_C", "Arrhenius",
           "FlowComposition", "FlowKineticParameters", "check_number", "simulate_plug"]


# State vector layout: M, the five families (default lineage), NC number, NC units, the five
# families of the hot lineage.
_M, _NC, _U = 0, 1 + len(FAMILIES), 2 + len(FAMILIES)
_FAMILY_INDEX = {label: 1 + i for i, label in enumerate(FAMILIES)}
_HOT_INDEX = {label: 3 + len(FAMILIES) + i for i, label in enumerate(FAMILIES)}
STATE_SIZE = 3 + 2 * len(FAMILIES)


@dataclass(frozen=True)
class FlowComposition:
    """Composition of a plug (mol/L): see the module docstring for the species and their units.

    ``families`` holds each family's particles of both lineages (what absorbs at its peak and
    scatters at its size); ``hot_families`` the hot lineage's part of them (None: none).
    """

    monomer_molar: float
    families: dict
    nc_molar: float
    nc_units_molar: float
    nc_relative_sigma: float = 0.08
    #: Time series when asked for: "time_s" and one array per state entry (same names as here,
    #: families of both lineages together).
    series: dict | None = field(default=None, compare=False, repr=False)
    hot_families: dict | None = None

    @classmethod
    def from_state(cls, state, nc_relative_sigma: float, series: dict | None = None) -> "FlowComposition":
        y = np.asarray(state, dtype=float)
        return cls(float(y[_M]),
                   {label: float(y[_FAMILY_INDEX[label]] + y[_HOT_INDEX[label]]) for label in FAMILIES},
                   float(y[_NC]), float(y[_U]), nc_relative_sigma, series,
                   {label: float(y[_HOT_INDEX[label]]) for label in FAMILIES})

    def state(self) -> np.ndarray:
        """The composition as the integrator's state vector (M, families, NC, NC units, hot
        lineage)."""
        y = np.zeros(STATE_SIZE)
        y[_M], y[_NC], y[_U] = self.monomer_molar, self.nc_molar, self.nc_units_molar
        hot = self.hot_families or {}
        for label, value in self.families.items():
            y[_FAMILY_INDEX[label]] = value - hot.get(label, 0.0)
            y[_HOT_INDEX[label]] = hot.get(label, 0.0)
        return y

    @property
    def nuclei_molar(self) -> float:
        """The seed's [Nucl.]: the (CdSe)13 clusters, MSC-350 (mol/L of particles)."""
        return self.families[NUCLEUS]

    def family_units_molar(self, label: str) -> float:
        """CdSe units (mol/L) held in family ``label``."""
        return self.families[label] * FAMILY_UNITS[label]

    @property
    def cadmium_molar(self) -> float:
        """All Cd in the plug, mol/L of CdSe units: M + Σ N_j[j] + NC units."""
        return (self.monomer_molar + self.nc_units_molar
                + sum(self.family_units_molar(label) for label in FAMILIES))

    @property
    def nc_units_per_particle(self) -> float:
        """Mean CdSe units per NC (nan without NCs)."""
        return self.nc_units_molar / self.nc_molar if self.nc_molar > 0 else math.nan

    @property
    def nc_diameter_nm(self) -> float:
        """Mean NC diameter (nm) from the mean units per NC (nan without NCs)."""
        units = self.nc_units_per_particle
        return float(cdse_diameter_from_units_nm(units)) if math.isfinite(units) else math.nan


def _rates_function(constants: dict, parameters: FlowKineticParameters):
    """dy/dt of the scheme for fixed rate constants (one temperature)."""
    n = FAMILY_UNITS
    steps = []
    for step_list, index in ((STEPS, _FAMILY_INDEX), (HOT_STEPS, _HOT_INDEX)):
        for name, source, product in step_list:
            target_units = parameters.nc_birth_units if product == "NC" else n[product]
            steps.append((constants[name], index[source],
                          _NC if product == "NC" else index[product], target_units - n[source]))
    limit, solubility = parameters.dissolution_limit_per_s, parameters.monomer_solubility_molar
    dissolution = []  # (k, family, smaller family or None for monomer, units released)
    for j, label in enumerate(FAMILIES):
        for factor, index, smaller in (
                (parameters.dissolution_factors[j], _FAMILY_INDEX, FAMILIES[j - 1] if j else None),
                (parameters.hot_dissolution_factors[j], _HOT_INDEX, HOT_DISSOLVES_INTO[label])):
            k_d = factor * constants["k_d"]
            dissolution.append((k_d * limit / (k_d + limit) if k_d > 0 else 0.0, index[label],
                                index[smaller] if smaller else None,
                                n[label] - (n[smaller] if smaller else 0.0)))
    k_nuc, k_g, order = constants["k_nuc"], constants["k_g"], parameters.nucleation_order
    n_ref, n_nucleus, birth = parameters.nc_reference_units, n[NUCLEUS], parameters.nc_birth_units
    i_nucleus, i_hot_nucleus = _FAMILY_INDEX[NUCLEUS], _HOT_INDEX[NUCLEUS]
    hot_share = constants["hot_lineage_share"]

    def rates(_t, y):
        monomer = max(y[_M], 0.0)
        dy = np.zeros_like(y)
        nucleation = k_nuc * monomer**order
        dy[_M] = -n_nucleus * nucleation
        dy[i_nucleus] += (1.0 - hot_share) * nucleation
        dy[i_hot_nucleus] += hot_share * nucleation
        for k, i_from, i_to, consumed in steps:
            r = k * max(y[i_from], 0.0) * monomer
            dy[i_from] -= r
            dy[i_to] += r
            dy[_M] -= consumed * r
            if i_to == _NC:
                dy[_U] += birth * r
        if y[_NC] > 0:
            units = max(y[_U], 0.0) / y[_NC]
            growth = k_g * y[_NC] * monomer * (units / n_ref) ** (2.0 / 3.0)
            dy[_U] += growth
            dy[_M] -= growth
        undersaturation = max(1.0 - monomer / solubility, 0.0)
        for k, i, i_smaller, units in dissolution:
            r = k * max(y[i], 0.0) * undersaturation
            dy[i] -= r
            if i_smaller is not None:
                dy[i_smaller] += r
            dy[_M] += units * r
        return dy

    return rates


#: Below this temperature (°C) the mixture is taken as quenched: nothing reacts. The chemistry of
#: seed 002 runs at 200–350 °C; extrapolating its Arrhenius laws (some with negative apparent
#: activation energies) to room temperature is meaningless and makes the system extremely stiff.
QUENCH_TEMPERATURE_C = 150.0


def _integrate(state, duration_s, temperature_c, parameters, t_eval):
    """(end state, states at ``t_eval`` as columns) after ``duration_s`` at ``temperature_c``."""
    if duration_s == 0 or temperature_c < QUENCH_TEMPERATURE_C:
        return state, np.repeat(state[:, None], len(t_eval), axis=1)
    result = solve_ivp(_rates_function(parameters.constants(temperature_c), parameters),
                       (0.0, duration_s), state, method="LSODA", rtol=1e-8,
                       atol=1e-13 * max(state.sum(), 1e-30), dense_output=len(t_eval) > 0)
    if not result.success:
        raise RuntimeError(f"flow chemistry integration failed at {temperature_c} °C: {result.message}")
    columns = result.sol(t_eval) if len(t_eval) else np.zeros((len(state), 0))
    return result.y[:, -1], columns


def check_number(name, value, minimum=0.0):
    """``value`` as a float if it is a finite real number >= ``minimum``; else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be finite and >= {minimum}, got {value!r}")
    return float(value)


def simulate_plug(residence_chamber_s: float, residence_oven_s: float,
                  nucleation_temperature_c: float, growth_temperature_c: float,
                  precursor_molar: float = 0.01, *, series_points: int = 0,
                  parameters: FlowKineticParameters | None = None, **rates) -> FlowComposition:
    """Composition of a plug after the nucleation chamber and the growth oven.

    Args:
        residence_chamber_s, residence_oven_s: residence times (s) in the nucleation chamber (at
            its temperature, °C; a plug, or a stirred tank if ``chamber_stirred``) and the
            growth oven (the plug relaxing from the chamber's to the oven's temperature with
            time constant ``oven_heat_time_s``: oven_entry_segments).
        precursor_molar: Cd precursor fed (mol/L of CdSe units), all monomer at t = 0.
        series_points: if > 0, ``series`` holds the composition at that many times evenly spread
            over the whole residence (chamber then oven).
        parameters: rate constants (defaults :class:`FlowKineticParameters`); ``**rates``
            replaces fields of it, e.g. ``k_465=Arrhenius(0.0, 0.0)``.
    """
    chamber = check_number("residence_chamber_s", residence_chamber_s)
    oven = check_number("residence_oven_s", residence_oven_s)
    t_nuc = check_number("nucleation_temperature_c", nucleation_temperature_c, -ZERO_CELSIUS_K + 1e-9)
    t_growth = check_number("growth_temperature_c", growth_temperature_c, -ZERO_CELSIUS_K + 1e-9)
    precursor = check_number("precursor_molar", precursor_molar)
    if isinstance(series_points, bool) or not isinstance(series_points, int) or series_points < 0:
        raise ValueError(f"series_points must be an int >= 0, got {series_points!r}")
    params = parameters if parameters is not None else FlowKineticParameters()
    if rates:
        params = dataclasses.replace(params, **rates)
    start = np.zeros(STATE_SIZE)
    start[_M] = precursor
    if precursor == 0:
        return FlowComposition.from_state(start, params.nc_relative_sigma)
    times = np.linspace(0.0, chamber + oven, series_points)
    oven_stages = oven_entry_segments(oven, t_nuc, t_growth, params.oven_heat_time_s)
    if params.chamber_stirred:  # uniform content: the feed at t = 0, then the tank's outlet
        state = start if t_nuc < QUENCH_TEMPERATURE_C else stirred_tank_outlet(
            start, chamber, _rates_function(params.constants(t_nuc), params))
        inside = times[times <= chamber]
        columns = [np.where(inside == 0, start[:, None], state[:, None])]
        stages, begin = oven_stages, chamber
    else:
        state, columns, begin = start, [], 0.0
        stages = [(chamber, t_nuc), *oven_stages]
    for index, (duration, temperature) in enumerate(stages):
        inside = (times > begin) | (index == 0 and not columns)
        if index < len(stages) - 1:
            inside &= times <= begin + duration
        state, part = _integrate(state, duration, temperature, params, times[inside] - begin)
        columns.append(part)
        begin += duration
    series = None
    if series_points:
        rows = np.concatenate(columns, axis=1)
        names = ["monomer_molar", *FAMILIES, "nc_molar", "nc_units_molar"]
        series = {"time_s": times, **dict(zip(names, rows))}
        for label in FAMILIES:
            series[label] = series[label] + rows[_HOT_INDEX[label]]
    return FlowComposition.from_state(state, params.nc_relative_sigma, series)
