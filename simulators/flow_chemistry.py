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

from ..analysis.optical import MSC_PEAKS_NM, cdse_diameter_from_units_nm, cdse_diameter_nm, cdse_units
from .flow_chamber import stirred_tank_outlet
from .flow_heating import oven_entry_segments
from .kinetics_parameters import GAS_CONSTANT_J_PER_MOL_K, ZERO_CELSIUS_K

#: MSC family labels (analysis.optical.MSC_PEAKS_NM) and the CdSe units each particle holds.
FAMILIES = tuple(MSC_PEAKS_NM)
FAMILY_UNITS = {label: float(cdse_units(cdse_diameter_nm(peak))) for label, peak in MSC_PEAKS_NM.items()}
NUCLEUS = "MSC-350"

# State vector layout: M, the five families, NC number, NC units.
_M, _NC, _U = 0, 1 + len(FAMILIES), 2 + len(FAMILIES)
_FAMILY_INDEX = {label: 1 + i for i, label in enumerate(FAMILIES)}
STATE_SIZE = 3 + len(FAMILIES)


@dataclass(frozen=True)
class Arrhenius:
    """k(T) = ``at_reference``·exp[−E_a/R·(1/T − 1/T_ref)]; units of ``at_reference`` per step."""

    at_reference: float
    activation_kj_per_mol: float

    def __post_init__(self):
        if not (math.isfinite(self.at_reference) and self.at_reference >= 0):
            raise ValueError(f"Arrhenius.at_reference must be finite and >= 0, got {self.at_reference!r}")
        if not math.isfinite(self.activation_kj_per_mol):
            raise ValueError(f"Arrhenius.activation_kj_per_mol must be finite, "
                             f"got {self.activation_kj_per_mol!r}")

    def at(self, temperature_c: float, reference_c: float) -> float:
        """Rate constant at ``temperature_c`` (°C) given the reference temperature (°C)."""
        inverse_difference = (1.0 / (temperature_c + ZERO_CELSIUS_K)
                              - 1.0 / (reference_c + ZERO_CELSIUS_K))
        return self.at_reference * math.exp(-self.activation_kj_per_mol * 1e3
                                            / GAS_CONSTANT_J_PER_MOL_K * inverse_difference)

    def prefactor(self, reference_c: float) -> float:
        """The Arrhenius prefactor A = k_ref·exp(E_a/(R·T_ref)), same units as ``at_reference``."""
        return self.at_reference * math.exp(self.activation_kj_per_mol * 1e3
                                            / (GAS_CONSTANT_J_PER_MOL_K * (reference_c + ZERO_CELSIUS_K)))


#: Cluster-to-cluster and cluster-to-NC steps: (parameter name, source, product).
STEPS = (("k_382", "MSC-350", "MSC-382"), ("k_403", "MSC-350", "MSC-403"),
         ("k_437", "MSC-382", "MSC-437"), ("k_437", "MSC-403", "MSC-437"),
         ("k_465", "MSC-437", "MSC-465"), ("k_465_hot", "MSC-437", "MSC-465"),
         ("k_nc", "MSC-465", "NC"),
         ("k_nc_403", "MSC-403", "NC"), ("k_nc_nuclei", "MSC-350", "NC"))


@dataclass(frozen=True)
class FlowKineticParameters:
    """Rate constants of the flow chemistry (module docstring), Arrhenius about 280 °C.

    Units: k_d and the dissolution limit in 1/s; k_nuc in (L/mol)^(m−1)/s; the cluster steps in
    L mol⁻¹ s⁻¹; k_g in CdSe units per NC per second per mol/L of monomer at
    ``nc_reference_units``; K (``k_465_adsorption``) dimensionless.  Activation energies (and
    the adsorption enthalpy) in kJ/mol; :meth:`Arrhenius.prefactor` gives A.

    Seed 002 gives no rate constants.  These are chosen so that its statements hold for a
    0.01 mol/L feed with 1/11 of the reaction time in the chamber (the default reactor,
    growth at the nucleation temperature); simulators/flow_figures.py measures each statement
    and tests/test_flow_chemistry.py asserts its bound (shares are of the fed Cd):

    * Fig. 1 / text, T ≤ 260 °C, 14 s: "regular NCs rather than MSCs" — few nuclei
      (k_nuc 150 kJ/mol, 4th order), monomer-rich, and CdSe-437 grows on to CdSe-465
      (k_465 = 100 L/mol/s while the monomer pre-adsorption K is saturated) and NCs
      (k_nc): 240–260 °C keep 2.1–3.9 % of the Cd in MSCs, NCs 36–61 %.
    * Fig. 1 / rate laws 260 < T ≤ 300 °C: CdSe-437 accumulates; the seed lists no r(465)
      there.  Reproduced by the exothermic pre-adsorption before 437 → 465
      (K = 0.06 at 280 °C, −400 kJ/mol: K = 1 at 263 °C, so the step is on below 260 °C and
      ~94 % off at 280 °C) and by the faster nucleation using up the monomer: CdSe-437 holds
      14 / 30 / 28 / 12 % at 270 / 280 / 290 / 300 °C and 14 s, coexisting with NCs (the
      window's r(NCs) = k[403][M], ``k_nc_403``); at 280 °C the NC exciton moves 498 → 519 nm
      from 4.5 to 14 s (seed: 490 → 527 nm) and CdSe-437 rises with the growth temperature.
    * > 300 °C (rate laws and text: high nucleation, little monomer, "monomer depletion,
      together with the high temperatures, is the driving force that causes the dissolution
      of MSCs"): clusters dissolve only while [M] is below ``monomer_solubility_molar``, each
      into the next smaller family plus monomer (the fragments the seed cites), at
      k_d(T)·s_j with a steep k_d (400 kJ/mol: 2 %/s at 280 °C, CdSe-437 s = 1, the others
      20) in series with ``dissolution_limit_per_s`` (1/k = 1/(s_j·k_d) + 1/limit), so the
      dissolution switches on between 300 and 310 °C but is no faster than 1/s above: at 14 s
      3.6 % of the Cd is left in MSCs at 310 °C, ≤ 0.8 % from 320 °C on.  CdSe-437 is the
      most stable family (s = 1; the seed: "most persistent MSC").
    * Fig. 4, 350 °C and 4.5 s: five families (350, 382, 403, 437, 465 nm) each hold
      1.2–3.7 % of the Cd: the nucleation burst carries clusters up the chain in the chamber
      (CdSe-382 route, k_382 190 kJ/mol; 437 → 465 by a thermally activated channel
      ``k_465_hot``, 310 kJ/mol, the seed's high-temperature r(465)), and the cascade
      dissolution refills the smaller families while NCs take up the monomer.
    * TEM, 350 °C and 7.6 s: NCs 3.6 nm (``k_nc_nuclei`` 240 kJ/mol, the seed's
      high-temperature r(NCs) = k[Nucl][M], sets their number; k_g 200 kJ/mol their growth).
    * Fig. 2, 1.5 s at 230 °C: MSCs seen (2.5 % of the Cd, CdSe-437 the largest family).  With
      the oven at 230 °C the nucleation temperature matters through the plug's relaxation into
      the oven (``oven_heat_time_s``): MSCs hold most of the SAXS-visible Cd up to T_nuc 230 °C,
      NCs from 240 °C (seed: continuous NC growth from 250 °C).  The r = 1.02 nm shoulder
      (CdSe-465) "formed at 230 °C ... fully pronounced at 240 °C": CdSe-465 passes on to NCs
      fast enough (``k_nc`` = 220 L/mol/s, the seed's r(NCs) = k(NCs)[465][M]) to stay below
      half of CdSe-437's Cd up to T_nuc 220 °C (0.40 / 0.42 / 0.46 at 200 / 210 / 220 °C) and
      reach it at 240 °C (0.54); with 150 L/mol/s it was 0.48 / 0.52 / 0.57 and 0.70.

    Known gaps, with what was tried (the stirred chamber too): simulators/flow_figures.py
    KNOWN_GAPS (Fig. 2's first quantized step; Fig. 1's CdSe-437 below the diagonal).
    """

    reference_temperature_c: float = 280.0
    k_nuc: Arrhenius = Arrhenius(1e4, 150.0)
    k_382: Arrhenius = Arrhenius(200.0, 190.0)
    k_403: Arrhenius = Arrhenius(2e3, -20.0)
    k_437: Arrhenius = Arrhenius(2e3, -40.0)
    k_465: Arrhenius = Arrhenius(100.0, 0.0)
    #: Equilibrium constant K of the monomer pre-adsorption on CdSe-437 (activation: the
    #: adsorption enthalpy): the low-temperature step 437 → 465 runs at k_465·K/(1 + K).
    k_465_adsorption: Arrhenius = Arrhenius(0.06, -400.0)
    #: The high-temperature channel of 437 → 465 (rate laws above 300 °C).
    k_465_hot: Arrhenius = Arrhenius(5.0, 310.0)
    k_nc: Arrhenius = Arrhenius(220.0, 0.0)
    k_nc_403: Arrhenius = Arrhenius(250.0, 60.0)
    k_nc_nuclei: Arrhenius = Arrhenius(7.0, 240.0)
    k_g: Arrhenius = Arrhenius(2.2e3, 200.0)
    k_d: Arrhenius = Arrhenius(0.02, 400.0)
    #: Order m of nucleation in [M] (k_nuc in (L/mol)^(m−1)/s): a steep supersaturation
    #: dependence, so nucleation stops once the clusters have used up most of the monomer.
    nucleation_order: float = 4.0
    #: Upper limit of a family's dissolution rate constant, 1/s (in series with s_j·k_d).
    dissolution_limit_per_s: float = 1.0
    #: Clusters dissolve only while the monomer is below this concentration, mol/L, at a rate
    #: ∝ 1 − [M]/S (monomer depletion drives the dissolution).
    monomer_solubility_molar: float = 1e-3
    #: Dissolution factor s_j per family (FAMILIES order): CdSe-437 the most stable.
    dissolution_factors: tuple = (20.0, 20.0, 20.0, 1.0, 20.0)
    #: CdSe units of a newly formed NC (just above CdSe-465's 84).
    nc_birth_units: float = 90.0
    #: Size at which k_g applies (growth scales with surface, (n/n_ref)^(2/3)).
    nc_reference_units: float = 100.0
    #: Relative standard deviation of the NC diameter (not modelled; sets spectra and SAXS widths).
    nc_relative_sigma: float = 0.08
    #: Thermal time constant τ (s) of the plug entering the growth oven: it leaves the (well
    #: mixed) chamber at T_nuc and relaxes as T_growth + (T_nuc − T_growth)·exp(−t/τ).  Laminar
    #: flow in a tube of bore D: τ = D²/(4·Nu·α), Nu = 3.66, α ≈ 8e-8 m²/s for octadecene, so
    #: 0.4 s for D ≈ 0.7 mm (our choice; seed 002 gives no tube data).  Only plugs with
    #: T_nuc ≠ T_growth feel it; it lets the nucleation temperature matter at 1.5 s (Fig. 2).
    oven_heat_time_s: float = 0.4
    #: True runs the nucleation chamber as a stirred tank (simulators/flow_chamber.py, seed
    #: 002's "nucleation chamber" of a continuous hot injection); False, the default, as a plug
    #: like the oven.  The tank with these rate constants moves Fig. 1's below-diagonal CdSe-437
    #: from 34 % to 10 % but breaks Fig. 4 and the TEM size at 350 °C (KNOWN_GAPS).
    chamber_stirred: bool = False

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Arrhenius):
                continue
            if item.name == "chamber_stirred":
                if not isinstance(value, bool):
                    raise ValueError(f"chamber_stirred must be True or False, got {value!r}")
            elif item.name == "dissolution_factors":
                if len(value) != len(FAMILIES) or not all(math.isfinite(v) and v >= 0 for v in value):
                    raise ValueError(f"{item.name} needs {len(FAMILIES)} finite values >= 0, "
                                     f"got {value!r}")
            elif not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{item.name} must be a finite number, got {value!r}")
        if self.nc_birth_units <= FAMILY_UNITS["MSC-465"]:
            raise ValueError(f"nc_birth_units must exceed the {FAMILY_UNITS['MSC-465']:.1f} units "
                             f"of MSC-465, got {self.nc_birth_units!r}")
        for name in ("nc_reference_units", "nc_relative_sigma", "nucleation_order",
                     "dissolution_limit_per_s", "monomer_solubility_molar"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.oven_heat_time_s < 0:
            raise ValueError(f"oven_heat_time_s must be >= 0, got {self.oven_heat_time_s!r}")

    def constants(self, temperature_c: float) -> dict:
        """Every rate constant at ``temperature_c`` (°C), by parameter name."""
        constants = {item.name: getattr(self, item.name).at(temperature_c, self.reference_temperature_c)
                     for item in dataclasses.fields(self)
                     if isinstance(getattr(self, item.name), Arrhenius)}
        adsorbed = constants.pop("k_465_adsorption")
        constants["k_465"] *= adsorbed / (1.0 + adsorbed)
        return constants


@dataclass(frozen=True)
class FlowComposition:
    """Composition of a plug (mol/L): see the module docstring for the species and their units."""

    monomer_molar: float
    families: dict
    nc_molar: float
    nc_units_molar: float
    nc_relative_sigma: float = 0.08
    #: Time series when asked for: "time_s" and one array per state entry (same names as here).
    series: dict | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_state(cls, state, nc_relative_sigma: float, series: dict | None = None) -> "FlowComposition":
        y = np.asarray(state, dtype=float)
        return cls(float(y[_M]),
                   {label: float(y[_FAMILY_INDEX[label]]) for label in FAMILIES},
                   float(y[_NC]), float(y[_U]), nc_relative_sigma, series)

    def state(self) -> np.ndarray:
        """The composition as the integrator's state vector (M, families, NC, NC units)."""
        y = np.zeros(STATE_SIZE)
        y[_M], y[_NC], y[_U] = self.monomer_molar, self.nc_molar, self.nc_units_molar
        for label, value in self.families.items():
            y[_FAMILY_INDEX[label]] = value
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
    for name, source, product in STEPS:
        target_units = parameters.nc_birth_units if product == "NC" else n[product]
        steps.append((constants[name], _FAMILY_INDEX[source],
                      _NC if product == "NC" else _FAMILY_INDEX[product], target_units - n[source]))
    limit, solubility = parameters.dissolution_limit_per_s, parameters.monomer_solubility_molar
    dissolution = []  # (k, family, next smaller family or None for monomer, units released)
    for j, (label, factor) in enumerate(zip(FAMILIES, parameters.dissolution_factors)):
        smaller = FAMILIES[j - 1] if j else None
        k_d = factor * constants["k_d"]
        dissolution.append((k_d * limit / (k_d + limit) if k_d > 0 else 0.0, _FAMILY_INDEX[label],
                            _FAMILY_INDEX[smaller] if smaller else None,
                            n[label] - (n[smaller] if smaller else 0.0)))
    k_nuc, k_g, order = constants["k_nuc"], constants["k_g"], parameters.nucleation_order
    n_ref, n_nucleus, birth = parameters.nc_reference_units, n[NUCLEUS], parameters.nc_birth_units
    i_nucleus = _FAMILY_INDEX[NUCLEUS]

    def rates(_t, y):
        monomer = max(y[_M], 0.0)
        dy = np.zeros_like(y)
        nucleation = k_nuc * monomer**order
        dy[_M] = -n_nucleus * nucleation
        dy[i_nucleus] += nucleation
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
        names = ["monomer_molar", *FAMILIES, "nc_molar", "nc_units_molar"]
        series = {"time_s": times, **dict(zip(names, np.concatenate(columns, axis=1)))}
    return FlowComposition.from_state(state, params.nc_relative_sigma, series)
