"""Rate constants of the flow reactor's chemistry (seed 002): the MSC families and their Arrhenius laws.

:class:`FlowKineticParameters` holds every rate constant of the scheme that
:mod:`~ncsynth.simulators.flow_chemistry` integrates (its docstring lists the reactions), each
documented with the seed statement it reproduces.  :data:`FAMILIES` and :data:`FAMILY_UNITS`
name the magic-size-cluster families by their absorption maximum and the CdSe units each holds
(Fig. 4 table through the sizing curve).  Units: °C, s, mol/L, kJ/mol.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from scipy.special import expit

from ..analysis.optical import MSC_PEAKS_NM, cdse_diameter_nm, cdse_units
from .kinetics_parameters import GAS_CONSTANT_J_PER_MOL_K, ZERO_CELSIUS_K

#: MSC family labels (analysis.optical.MSC_PEAKS_NM) and the CdSe units each particle holds.
FAMILIES = tuple(MSC_PEAKS_NM)
FAMILY_UNITS = {label: float(cdse_units(cdse_diameter_nm(peak))) for label, peak in MSC_PEAKS_NM.items()}
NUCLEUS = "MSC-350"


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
#: The hot lineage's steps (nuclei formed above the switch, the seed's > 300 °C list): no
#: CdSe-403 route, 437 -> 465 without the pre-adsorption.
HOT_STEPS = (("k_382", "MSC-350", "MSC-382"), ("k_437", "MSC-382", "MSC-437"),
             ("k_465_hot_lineage", "MSC-437", "MSC-465"), ("k_465_hot", "MSC-437", "MSC-465"),
             ("k_nc", "MSC-465", "NC"), ("k_nc_nuclei", "MSC-350", "NC"))
#: What a hot-lineage family dissolves into (None: monomer): down its own chain; its CdSe-403
#: (a fragment of CdSe-437, not on the > 300 °C list) falls apart into monomer.
HOT_DISSOLVES_INTO = {"MSC-350": None, "MSC-382": "MSC-350", "MSC-403": None,
                      "MSC-437": "MSC-403", "MSC-465": "MSC-437"}


@dataclass(frozen=True)
class FlowKineticParameters:
    """Rate constants of the flow chemistry (flow_chemistry's docstring), Arrhenius about 280 °C.

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
      (k_465 = 102.5 L/mol/s at 280 °C while the monomer pre-adsorption K is saturated) and
      NCs (k_nc): 240–260 °C keep 2.2–3.8 % of the Cd in MSCs, NCs 36–61 %.
    * Fig. 1 / rate laws 260 < T ≤ 300 °C: CdSe-437 accumulates; the seed lists no r(465)
      there.  Reproduced by the exothermic pre-adsorption before 437 → 465
      (K = 0.06 at 280 °C, −400 kJ/mol: K = 1 at 263 °C, so the step is on below 260 °C and
      ~94 % off at 280 °C) and by the faster nucleation using up the monomer: CdSe-437 holds
      12 / 27 / 26 / 11 % at 270 / 280 / 290 / 300 °C and 14 s, coexisting with NCs (the
      window's r(NCs) = k[403][M], ``k_nc_403``, 78 kJ/mol); at 280 °C the NC exciton moves
      498 → 519 nm from 4.5 to 14 s (seed: 490 → 527 nm) and CdSe-437 rises with the growth
      temperature.
    * > 300 °C (rate laws and text: high nucleation, little monomer, "monomer depletion,
      together with the high temperatures, is the driving force that causes the dissolution
      of MSCs"): clusters dissolve only while [M] is below ``monomer_solubility_molar``, each
      into the next smaller family plus monomer (the fragments the seed cites), at
      k_d(T)·s_j with a steep k_d (400 kJ/mol: 2 %/s at 280 °C, CdSe-437 s = 1, the others
      20) in series with ``dissolution_limit_per_s`` (1/k = 1/(s_j·k_d) + 1/limit), so the
      dissolution switches on between 300 and 310 °C but is no faster than 1/s above: at 14 s
      at most 1 % of the Cd is left in MSCs from 310 °C on.  CdSe-437 is the
      most stable family (s = 1; the seed: "most persistent MSC").
    * Fig. 4, 350 °C and 4.5 s: five families (350, 382, 403, 437, 465 nm) each hold
      1.2–3.2 % of the Cd: the nucleation burst carries clusters up the chain in the chamber
      (CdSe-382 route, k_382 190 kJ/mol; 437 → 465 by a thermally activated channel
      ``k_465_hot``, 310 kJ/mol, the seed's high-temperature r(465)), and the cascade
      dissolution refills the smaller families while NCs take up the monomer.
    * TEM, 350 °C and 7.6 s: NCs 3.7 nm (seed 3.6; ``k_nc_nuclei`` 238 kJ/mol, the seed's
      high-temperature r(NCs) = k[Nucl][M], sets their number; k_g 201 kJ/mol their growth).
    * Fig. 2, 1.5 s at 230 °C: MSCs seen (2.4 % of the Cd, CdSe-437 the largest family).  With
      the oven at 230 °C the nucleation temperature matters through the plug's relaxation into
      the oven (``oven_heat_time_s``, 0.75 s): MSCs hold most of the SAXS-visible Cd up to
      T_nuc 230 °C, NCs from 240 °C (seed: continuous NC growth from 250 °C).  The first
      quantized step, r = 0.87 nm (CdSe-403) at T_nuc 190 °C and 0.94 nm (CdSe-437) from
      200 °C: CdSe-403 + M → CdSe-437 is mildly activated (``k_437`` 383 L/mol/s at 280 °C,
      34 kJ/mol: 184 at 230 °C, so a CdSe-403 lives ~0.5 s in the oven's 9.9 mM monomer, not
      the ~20 ms of a fast step), and a plug from a colder chamber stays colder through its
      first half second in the oven: CdSe-403/437 is 1.08 at 190 °C, 0.93 / 0.80 / 0.67 at
      200 / 210 / 220 °C (found by a search of ~10 000 variants, issue 14; of the 26 ±5 % moves
      of one of the 13 numbers changed for it, only k_g's activation energy 5 % lower loses a
      statement (Fig. 4's CdSe-350 below 1 %); the step flips at a 7 % change of
      CdSe-403/437).  The r = 1.02 nm shoulder (CdSe-465) "formed at 230 °C ... fully
      pronounced at 240 °C": CdSe-465 passes on to NCs fast enough (``k_nc`` = 211 L/mol/s at
      230 °C, the seed's r(NCs) = k(NCs)[465][M]) to stay below half of CdSe-437's Cd up to
      T_nuc 220 °C (0.39 / 0.42 / 0.46 at 200 / 210 / 220 °C) and reach it at 240 °C (0.54).

    * Fig. 1, 14 s, T_nuc 310–350 °C and oven 270–300 °C: no CdSe-437 (the window is one of
      nucleation temperature).  The seed gives two rate-law lists: "Temperatures above 300 °C"
      r(382) = k(382)[Nucl.][M], r(437) = k(437)[382][M], r(465) = k(465)[437][M], r(NCs) =
      k(NCs)[465][M]; in the window r(403) = k(403)[Nucl.][M], r(437) = k(437)[403][M], and
      CdSe-437 persists there ("the higher stability of CdSe-437 and the temperatures").  The
      hot lineage (``hot_lineage``, on) reads the lists as two kinds of clusters: nuclei formed
      where the switch is open (``hot_route_opening``: 0.15 % at 300 °C, 99 % at 310 °C) follow
      the first list wherever they go — CdSe-382, then CdSe-437 that grows on to CdSe-465
      without the pre-adsorption (``k_465_hot_lineage``) and dissolves under monomer depletion
      with factor 200 (``hot_dissolution_factors``; the default's CdSe-437 has 1; a hot
      CdSe-403, a fragment of CdSe-437, falls apart into monomer; the hot nuclei's 0.002 keeps
      CdSe-350 at 1.4 % at 350 °C, 4.5 s) — so a 270–300 °C oven after a hot chamber keeps
      no CdSe-437 (2.3 % at most, 31 % without), while the window's plugs (nuclei from
      <= 300 °C) change by < 1 %.  Same optical peaks and sizes; that the two lists are two
      structures is our reading (the seed: "The existence of a certain MSC family (i.e.
      CdSe-437) is the result of the interplay between its stability and formation rate"),
      and the settings were chosen by hand (~60 variants), not measured.

    What was tried before these constants (Fig. 2's first quantized step; the below-diagonal
    attempts before the hot lineage: the stirred chamber, the hot route, a switched CdSe-437
    stability) is in docs/flow_reactor.md.

    The hot route (``k_nc_nuclei_hot``, off by default: 0) is the seed's rate-law list for
    "Temperatures above 300 °C": "r(NCs) = k(NCs) × [Nucl.] × [M]" — nuclei growing straight
    into NCs, a law the seed gives only there ("Temperatures above 300 °C induce a high
    nucleation rate, and consequently the concentration of MSCs formed is high and the
    monomer concentration is low"), beside the chain through the clusters.  It opens as
    K/(1 + K), K = exp[ΔH/R·(1/T_half − 1/T)] (T_half ``hot_route_half_c``, ΔH
    ``hot_route_enthalpy_kj_per_mol``: a cooperative switch, e.g. the nuclei's ligand shell
    letting go; our reading, the seed gives no mechanism), so a chamber at >= 310 °C makes
    NCs, not clusters, and Fig. 1's window ends at 300 °C at every growth temperature.  With
    k = 3e4 L/mol/s and without the hot lineage (measured before it; tests/test_flow_chemistry.py
    checks the same with it): CdSe-437 below the diagonal 0.031 (bound <= 0.05; 0.336 off), the
    window's minimum 0.111, but at 350 °C it empties the clusters too: no family >= 1 % at
    4.5 s (Fig. 4: 5), MSCs 1.2 % (Fig. S2: >= 5 %), NCs 3.06 nm at 7.6 s (TEM 3.6): so it
    stays off.
    """

    reference_temperature_c: float = 280.0
    k_nuc: Arrhenius = Arrhenius(1e4, 150.0)
    k_382: Arrhenius = Arrhenius(200.0, 190.0)
    k_403: Arrhenius = Arrhenius(2e3, -20.0)
    k_437: Arrhenius = Arrhenius(383.0, 34.0)
    k_465: Arrhenius = Arrhenius(102.5, -4.2)
    #: Equilibrium constant K of the monomer pre-adsorption on CdSe-437 (activation: the
    #: adsorption enthalpy): the low-temperature step 437 → 465 runs at k_465·K/(1 + K).
    k_465_adsorption: Arrhenius = Arrhenius(0.06, -400.0)
    #: The high-temperature channel of 437 → 465 (rate laws above 300 °C).
    k_465_hot: Arrhenius = Arrhenius(5.0, 310.0)
    k_nc: Arrhenius = Arrhenius(185.0, -6.0)
    k_nc_403: Arrhenius = Arrhenius(101.5, 78.0)
    k_nc_nuclei: Arrhenius = Arrhenius(6.93, 237.8)
    #: The hot route's r(NCs) = k[Nucl][M] once open (L/mol/s; 0: off), added to k_nc_nuclei
    #: times its opening K/(1 + K) (class docstring).
    k_nc_nuclei_hot: Arrhenius = Arrhenius(0.0, 0.0)
    #: Temperature (°C) at which the hot route is half open, and the enthalpy (kJ/mol) of its
    #: opening: 3000 kJ/mol opens it from 0.15 % at 300 °C to 99 % at 310 °C.
    hot_route_half_c: float = 306.0
    hot_route_enthalpy_kj_per_mol: float = 3000.0
    #: True: nuclei formed where the switch (hot_route_opening) is open start the hot lineage
    #: (class docstring); False: every nucleus follows STEPS as before.
    hot_lineage: bool = True
    #: The hot lineage's CdSe-437 + M → CdSe-465 (L/mol/s), no pre-adsorption (seed: r(465) =
    #: k(465)[437][M] in the > 300 °C list); k_465_hot adds to it.
    k_465_hot_lineage: Arrhenius = Arrhenius(300.0, 0.0)
    #: Dissolution factors of the hot lineage (FAMILIES order, like dissolution_factors): its
    #: CdSe-403/437 fall apart 10x faster than the default's clusters, its nuclei hardly.
    hot_dissolution_factors: tuple = (0.002, 20.0, 200.0, 200.0, 20.0)
    k_g: Arrhenius = Arrhenius(2090.0, 201.4)
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
    #: 0.75 s for D ≈ 0.94 mm (our choice; seed 002 gives no tube data).  Only plugs with
    #: T_nuc ≠ T_growth feel it; it lets the nucleation temperature matter at 1.5 s (Fig. 2).
    oven_heat_time_s: float = 0.75
    #: True runs the nucleation chamber as a stirred tank (simulators/flow_chamber.py, seed
    #: 002's "nucleation chamber" of a continuous hot injection); False, the default, as a plug
    #: like the oven.  The tank (without the hot lineage) moves Fig. 1's below-diagonal CdSe-437
    #: from 34 % to 10 % but breaks Fig. 4 and the TEM size at 350 °C (docs/flow_reactor.md).
    chamber_stirred: bool = False

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Arrhenius):
                continue
            if item.name in ("chamber_stirred", "hot_lineage"):
                if not isinstance(value, bool):
                    raise ValueError(f"{item.name} must be True or False, got {value!r}")
            elif item.name in ("dissolution_factors", "hot_dissolution_factors"):
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
        """Every rate constant at ``temperature_c`` (°C), by parameter name, and
        ``hot_lineage_share``: the share of new nuclei that start the hot lineage."""
        constants = {item.name: getattr(self, item.name).at(temperature_c, self.reference_temperature_c)
                     for item in dataclasses.fields(self)
                     if isinstance(getattr(self, item.name), Arrhenius)}
        adsorbed = constants.pop("k_465_adsorption")
        constants["k_465"] *= adsorbed / (1.0 + adsorbed)
        opening = self.hot_route_opening(temperature_c)
        constants["k_nc_nuclei"] += constants.pop("k_nc_nuclei_hot") * opening
        constants["hot_lineage_share"] = opening if self.hot_lineage else 0.0
        return constants

    def hot_route_opening(self, temperature_c: float) -> float:
        """K/(1 + K) of the hot route at ``temperature_c`` (°C), K = exp[ΔH/R·(1/T_half − 1/T)]."""
        inverse_difference = (1.0 / (self.hot_route_half_c + ZERO_CELSIUS_K)
                              - 1.0 / (temperature_c + ZERO_CELSIUS_K))
        return float(expit(self.hot_route_enthalpy_kj_per_mol * 1e3 / GAS_CONSTANT_J_PER_MOL_K
                           * inverse_difference))
