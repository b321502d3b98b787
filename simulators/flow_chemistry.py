"""Chemistry of the continuous-flow reactor: CdSe magic-size clusters and nanocrystals (seed 002).

One plug of precursor flows through the nucleation chamber (temperature T_nuc), then the growth
oven (T_growth); :func:`simulate_plug` integrates its composition (scipy ``solve_ivp``, LSODA:
stiff-safe, it switches to BDF in the nucleation burst).
:class:`FlowReactorModel` is the world model of the reactor outlet, stepped by ``step(dt_s, world)``.

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
    MSC-437 + M → MSC-465       k(465)[437][M]
    MSC-465 + M → NC            k(NC)[465][M]
    MSC-403 + M → NC            k(NC,403)[403][M]  260–300 °C window: NCs from CdSe-403
    MSC-350 + M → NC            k(NC,nuc)[350][M]  high T alternative r(NCs) = k[Nucl][M]
    NC growth                   k_g[NC][M](n/n_ref)^(2/3)    units per L per s, n = units/NC
    MSC-j → N_j M               k_d·s_j[j]·K/(K + [M])       dissolution under monomer depletion

A step from a family of N_a units to one of N_b consumes N_b − N_a monomer units; a new NC
holds ``nc_birth_units``.  So monomer + Σ N_j[j] + NC units is conserved.

All temperature regimes of the seed come from one scheme: the branches' activation energies
select them (see :class:`FlowKineticParameters` for the numbers and what they reproduce).
Interfaces use °C, s, mol/L, nm.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp
from scipy.linalg import toeplitz
from scipy.special import gammaln

from ..analysis.optical import MSC_PEAKS_NM, cdse_diameter_from_units_nm, cdse_diameter_nm, cdse_units
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
         ("k_465", "MSC-437", "MSC-465"), ("k_nc", "MSC-465", "NC"),
         ("k_nc_403", "MSC-403", "NC"), ("k_nc_nuclei", "MSC-350", "NC"))


@dataclass(frozen=True)
class FlowKineticParameters:
    """Rate constants of the flow chemistry (module docstring), Arrhenius about 280 °C.

    Units: k_d in 1/s; k_nuc in (L/mol)^(m−1)/s; the cluster steps in L mol⁻¹ s⁻¹; k_g in CdSe
    units per NC per second per mol/L of monomer at ``nc_reference_units``.  Activation energies
    in kJ/mol; :meth:`Arrhenius.prefactor` gives A.

    The seed gives no rate constants.  These are chosen so that the seed's story holds for a
    0.01 mol/L feed with 1/11 of the reaction time in the chamber (the default reactor);
    tests/test_flow_chemistry.py checks them with margins (percentages: share of the Cd):

    * T ≤ 260 °C, mild: few nuclei, monomer-rich (240 °C: 61 % monomer left at 14 s).  At
      1.5 s (230/230 °C) CdSe-437 holds more Cd than any other species (2.6 %); at 14 s
      (240 °C) NCs (30 %) outweigh all MSCs (9 %), their exciton still near 480 nm.
    * 260–300 °C window: CdSe-437 coexists with NCs at 4.5 s and 14 s (280 °C: 38 % and 37 %)
      while the NCs grow, exciton 510 → 537 nm (seed: 490 → 527 nm); at T_nuc = 280 °C and
      14 s CdSe-437 increases with the growth temperature (Fig. 1).
    * > 300 °C: a nucleation burst (E_a 150 kJ/mol, 4th order) exhausts the monomer (~2 %
      left at 1.5 s, 350 °C), the CdSe-382 route takes over from CdSe-403 (k_382 rises with
      190 kJ/mol, k_403 falls), nuclei turn directly into NCs (the seed's r(NCs) = k[Nucl][M]),
      and the clusters dissolve under monomer depletion (E_a 200 kJ/mol): CdSe-382 and -437 at
      1.5–4.5 s, 1 % of the Cd left in MSCs at 14 s; NCs 4.0 nm at 7.6 s (TEM: 3.6 nm).
    * CdSe-437 persists because the quantized steps have *negative* apparent activation energies
      (k_403 −20, k_437 −40, k_465 −80 kJ/mol; read as an exothermic monomer pre-adsorption
      before the step), so its conversion to CdSe-465 runs at mild temperatures and stalls in
      the window, while NC growth (+150 kJ/mol) speeds up.

    Known gap: the window's upper edge is soft.  At 14 s CdSe-437 peaks at 280–310 °C (~38 %),
    is still 32 % at 320 °C and 1 % at 350 °C; the seed sees none above 300 °C.  Monotonic
    Arrhenius dissolution fast enough for that would also empty the clusters the seed still
    finds at 350 °C and 4.5 s (Fig. 4), which was kept instead.
    """

    reference_temperature_c: float = 280.0
    k_nuc: Arrhenius = Arrhenius(1e4, 150.0)
    k_382: Arrhenius = Arrhenius(200.0, 190.0)
    k_403: Arrhenius = Arrhenius(2e3, -20.0)
    k_437: Arrhenius = Arrhenius(2e3, -40.0)
    k_465: Arrhenius = Arrhenius(5.0, -80.0)
    k_nc: Arrhenius = Arrhenius(2e3, 40.0)
    k_nc_403: Arrhenius = Arrhenius(300.0, 60.0)
    k_nc_nuclei: Arrhenius = Arrhenius(15.0, 200.0)
    k_g: Arrhenius = Arrhenius(3e3, 150.0)
    k_d: Arrhenius = Arrhenius(4.5e-3, 200.0)
    #: Order m of nucleation in [M] (k_nuc in (L/mol)^(m−1)/s): a steep supersaturation
    #: dependence, so nucleation stops once the clusters have used up most of the monomer.
    nucleation_order: float = 4.0
    #: K of the monomer inhibition K/(K + [M]) of dissolution, mol/L.
    dissolution_inhibition_molar: float = 3e-4
    #: Dissolution factor s_j per family (FAMILIES order): CdSe-437 the most stable.
    dissolution_factors: tuple = (1.0, 1.0, 1.0, 0.6, 1.0)
    #: CdSe units of a newly formed NC (just above CdSe-465's 84).
    nc_birth_units: float = 90.0
    #: Size at which k_g applies (growth scales with surface, (n/n_ref)^(2/3)).
    nc_reference_units: float = 100.0
    #: Relative standard deviation of the NC diameter (not modelled; sets spectra and SAXS widths).
    nc_relative_sigma: float = 0.08

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Arrhenius):
                continue
            if item.name == "dissolution_factors":
                if len(value) != len(FAMILIES) or not all(math.isfinite(v) and v >= 0 for v in value):
                    raise ValueError(f"dissolution_factors needs {len(FAMILIES)} finite values >= 0, "
                                     f"got {value!r}")
            elif not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{item.name} must be a finite number, got {value!r}")
        if self.nc_birth_units <= FAMILY_UNITS["MSC-465"]:
            raise ValueError(f"nc_birth_units must exceed the {FAMILY_UNITS['MSC-465']:.1f} units "
                             f"of MSC-465, got {self.nc_birth_units!r}")
        for name in ("dissolution_inhibition_molar", "nc_reference_units", "nc_relative_sigma",
                     "nucleation_order"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def constants(self, temperature_c: float) -> dict:
        """Every rate constant at ``temperature_c`` (°C), by parameter name."""
        return {item.name: getattr(self, item.name).at(temperature_c, self.reference_temperature_c)
                for item in dataclasses.fields(self) if isinstance(getattr(self, item.name), Arrhenius)}


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
    dissolution = [(constants["k_d"] * s, _FAMILY_INDEX[label], n[label])
                   for label, s in zip(FAMILIES, parameters.dissolution_factors)]
    k_nuc, k_g, order = constants["k_nuc"], constants["k_g"], parameters.nucleation_order
    inhibition = parameters.dissolution_inhibition_molar
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
        release = inhibition / (inhibition + monomer)
        for k, i, units in dissolution:
            r = k * max(y[i], 0.0) * release
            dy[i] -= r
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


def _check_number(name, value, minimum=0.0):
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
        residence_chamber_s, residence_oven_s: residence times (s) at the nucleation-chamber and
            growth-oven temperatures (°C).
        precursor_molar: Cd precursor fed (mol/L of CdSe units), all monomer at t = 0.
        series_points: if > 0, ``series`` holds the composition at that many times evenly spread
            over the whole residence (chamber then oven).
        parameters: rate constants (defaults :class:`FlowKineticParameters`); ``**rates``
            replaces fields of it, e.g. ``k_465=Arrhenius(0.0, 0.0)``.
    """
    chamber = _check_number("residence_chamber_s", residence_chamber_s)
    oven = _check_number("residence_oven_s", residence_oven_s)
    t_nuc = _check_number("nucleation_temperature_c", nucleation_temperature_c, -ZERO_CELSIUS_K + 1e-9)
    t_growth = _check_number("growth_temperature_c", growth_temperature_c, -ZERO_CELSIUS_K + 1e-9)
    precursor = _check_number("precursor_molar", precursor_molar)
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
    middle, first = _integrate(start, chamber, t_nuc, params, times[times <= chamber])
    end, second = _integrate(middle, oven, t_growth, params, times[times > chamber] - chamber)
    series = None
    if series_points:
        names = ["monomer_molar", *FAMILIES, "nc_molar", "nc_units_molar"]
        series = {"time_s": times, **dict(zip(names, np.concatenate([first, second], axis=1)))}
    return FlowComposition.from_state(end, params.nc_relative_sigma, series)


#: Relative standard deviation of an MSC family's radius: near-monodisperse (SAXS only).
MSC_RELATIVE_SIGMA = 0.02


def _gaussian_cells(radius_nm: float, sigma_nm: float, count: int):
    """``count`` radii evenly over ±4σ with normalised Gaussian weights."""
    offsets = np.linspace(-4.0, 4.0, count)
    weights = np.exp(-0.5 * offsets**2)
    return radius_nm + sigma_nm * offsets, weights / weights.sum()


def mixture_distribution(composition: FlowComposition, nc_cells: int = 41, msc_cells: int = 7):
    """Discrete size distribution of a composition for SAXS: ``(radius_nm, number_molar)``.

    Each MSC family is a near-monodisperse Gaussian (σ_R = 2 % of R, ``msc_cells`` cells) at the
    radius of its optical diameter (cdse_diameter_nm of its peak; the seed's SAXS finds 1.74,
    1.88, 2.04 nm for 403/437/465, Fig. 4 text); the NCs are Gaussian in radius with the
    composition's relative σ (``nc_cells`` cells).  Both arrays have a fixed length
    5·msc_cells + nc_cells, ready for analysis.scattering.distribution_intensity.
    """
    radii, numbers = [], []
    for label in FAMILIES:
        radius = float(cdse_diameter_nm(MSC_PEAKS_NM[label])) / 2.0
        cells, weights = _gaussian_cells(radius, MSC_RELATIVE_SIGMA * radius, msc_cells)
        radii.append(cells)
        numbers.append(weights * max(composition.families[label], 0.0))
    diameter = composition.nc_diameter_nm
    if not math.isfinite(diameter):  # no NCs: empty cells at the birth size
        diameter = float(cdse_diameter_from_units_nm(FlowKineticParameters.nc_birth_units))
    cells, weights = _gaussian_cells(diameter / 2.0, composition.nc_relative_sigma * diameter / 2.0, nc_cells)
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
        self.chamber_volume_ml = _check_number("chamber_volume_ml", chamber_volume_ml)
        self.oven_volume_ml = _check_number("oven_volume_ml", oven_volume_ml)
        self.transfer_volume_ml = _check_number("transfer_volume_ml", transfer_volume_ml)
        if self.total_volume_ml <= 0:
            raise ValueError("the reactor volumes must not all be zero")
        self.temperature_step_c = _check_number("temperature_step_c", temperature_step_c)
        if self.temperature_step_c <= 0:
            raise ValueError(f"temperature_step_c must be > 0, got {temperature_step_c!r}")
        if isinstance(tanks, bool) or not isinstance(tanks, int) or tanks < 1:
            raise ValueError(f"tanks must be an int >= 1, got {tanks!r}")
        self.parameters = parameters if parameters is not None else FlowKineticParameters()
        self._precursor = _check_number("precursor_molar", precursor_molar)
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
        flow = float(f"{_check_number('flow_rate_ml_min', flow_rate_ml_min):.4g}")
        if flow <= 0:
            raise ValueError(f"flow_rate_ml_min must be > 0 for a steady state, got {flow_rate_ml_min!r}")
        step = self.temperature_step_c
        t_nuc, t_growth = (round(_check_number(name, value, -ZERO_CELSIUS_K) / step) * step
                           for name, value in (("nucleation_temperature_c", nucleation_temperature_c),
                                               ("growth_temperature_c", growth_temperature_c)))
        state = _steady_state(*self.residence_times_s(flow), t_nuc, t_growth, self._precursor,
                              self.parameters)
        return FlowComposition.from_state(state, self.parameters.nc_relative_sigma)

    def step(self, dt_s: float, world=None) -> None:
        """Advance the outlet by ``dt_s`` seconds under the inputs read now."""
        dt = _check_number("dt_s", dt_s)
        flow = _check_number("flow_rate_ml_min", self._flow())
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
        self._precursor = _check_number("precursor_molar", precursor_molar)

    def snapshot(self) -> dict:
        """State for tests and the integrator: inputs of the last step, residence times, outlet."""
        flow, t_nuc, t_growth = self._inputs
        chamber, oven = self.residence_times_s(flow) if flow > 0 else (math.inf, math.inf)
        return {"time_s": self.time_s, "flow_rate_ml_min": flow,
                "nucleation_temperature_c": t_nuc, "growth_temperature_c": t_growth,
                "residence_chamber_s": chamber, "residence_oven_s": oven,
                "precursor_molar": self._precursor, "outlet": self.outlet()}
