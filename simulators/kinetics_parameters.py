"""Parameters of the population-balance model of the simulated flask (seed 000 §S.6).

Everything is SI inside; every field name carries its unit.  The defaults are
Table S6.1 of seed 000 with its loose units made explicit (see DESIGN.md pitfalls):

* ``k1_per_s`` is a *first-order* rate constant (1/s) of S6.6, not m/s.
* ``adsorption_a_m_per_s`` (A of S6.16) is a *velocity* (m/s), so that D/k_a is a
  length: D/A = 5e-10 m²/s / (1/22 m/s) = 11 nm at r = r_c0.  The table's m²/s
  would make S4.8 dimensionally wrong.

The Table values hold at ``reference_temperature_c`` (260 °C, the growth temperature
of §S.5.5).  Temperature enters through R·T in S4.8 (Kelvin term), S6.3 and S6.4,
and through Arrhenius factors exp[-E_a/R·(1/T - 1/T_ref)] on k1 and A.  The seed
gives no activation energies; the defaults are plausible assumptions, not fits:
80 kJ/mol for precursor conversion (the rate-determining chemistry; ~3× slower at
230 °C than at 260 °C) and 40 kJ/mol for the surface adsorption step.  D and the
monomer solubility [M]0 are taken temperature independent.

The default growth exponent n = 4 was chosen so that the Table S6.1 set ends the
2276 s synthesis of Fig. 5 (§S.6.6 snapshots) at a mean radius of ~2 nm (1.93 nm;
n = 2 gives 2.35 nm, n = 6 gives 1.66 nm), as §S.6.5 says A was tuned to do.  n = 4
is also the superfocusing exponent of Fig. S5.4.  That set stays the default of
:class:`KineticParameters` and of :func:`~.kinetics.simulate_synthesis` (Fig. 5, §S.6.5).

The simulated beamline's flask uses a separate set, :data:`SIMULATED_FLASK`, chosen so
that the §S.1.2 synthesis — driven by the simulated flask's own temperature trace (dip to
231 °C, limit cycle about 257 °C, see :mod:`.thermal`) at [P]i = 28 mM (4.5 mL of 0.1 M
Cd into 11.5 mL hot charge) — ends like the experiment.  §S.6.5 itself says "reaction
simulations with somewhat different combination of parameter settings may yield a
synthesis development with a similar outcome"; the seed leaves these open:

* ``growth_exponent`` n = 5: with n > 2 growth raises S and prolongs nucleation (§S.6.4);
  n = 5 makes nucleation last ~18 % of the time to 98 % yield ("nucleation lasting ~15-20 %
  of the reaction", §S.3 with the SAXS data); n = 4 ends it at ~10 %.
* ``adsorption_a_m_per_s`` A = 0.185 m/s (Table: 1/22): "A was chosen such that [...] the
  nanocrystal radius reaches ~2 nm [...] in line with the CdSe synthesis studied through
  SAXS" (§S.6.5); that synthesis ends at 2.36 nm and ~24 µM at 260 °C (§S.1.3).
* ``k1_per_s`` = 2.8e-3 1/s at 260 °C (Table: 4e-3): "set in line with the experimental
  reaction rate" (§S.6.5); with the loop's mean 257 °C it gives 98 % yield after ~27 min,
  the time base of the nucleation fraction above.
* activation energies as in :class:`KineticParameters` (80 and 40 kJ/mol; the seed gives
  none), so the injection dip slows conversion ~3x for the first minute.

Measured (benchmarks/paper_vs_simulator.py): 2.44 nm, 25.8 µM, nucleation fraction 0.185.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

AVOGADRO_PER_MOL = 6.02214076e23
GAS_CONSTANT_J_PER_MOL_K = 8.314462618
ZERO_CELSIUS_K = 273.15

DEFAULT_GROWTH_EXPONENT = 4.0


def _check_finite(owner: str, name: str, value, *, minimum: float | None = None,
                  strictly_positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    if strictly_positive and value <= 0:
        raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class KineticParameters:
    """Physical parameters of S4.8 and S6.2-S6.6/S6.14-S6.16 (Table S6.1 defaults, SI).

    Attributes (units in the names):
        diffusion_m2_per_s: monomer diffusion coefficient D.
        monomer_volume_m3: volume v0 of one CdSe unit; V_m = v0·N_A.
        solubility_mol_per_m3: monomer solubility [M]0 (S = [M]/[M]0).
        k1_per_s: first-order precursor conversion rate constant (S6.6) at T_ref.
        precursor_initial_mol_per_m3: [P]i injected by a standard synthesis.
        surface_tension_j_per_m2: gamma of S4.8/S6.3/S6.4.
        adsorption_a_m_per_s: A of S6.16 (and S6.15) at T_ref, a velocity.
        adsorption_b_m: B of S6.16.
        adsorption_rc0_m: r_c0 of S6.15/S6.16.
        growth_exponent: n of S6.15/S6.16 (dimensionless, >= 0).
        growth_only_cutoff_m: r0 of the Heaviside step in S6.15.
        reference_temperature_c: temperature at which k1 and A hold.
        activation_energy_k1_j_per_mol: Arrhenius activation energy of k1.
        activation_energy_adsorption_j_per_mol: Arrhenius activation energy of A.
    """

    diffusion_m2_per_s: float = 5e-10
    monomer_volume_m3: float = 5.59e-29
    solubility_mol_per_m3: float = 1e-7
    k1_per_s: float = 4e-3
    precursor_initial_mol_per_m3: float = 27.0
    surface_tension_j_per_m2: float = 0.2
    adsorption_a_m_per_s: float = 1.0 / 22.0
    adsorption_b_m: float = 0.2e-9
    adsorption_rc0_m: float = 0.8e-9
    growth_exponent: float = DEFAULT_GROWTH_EXPONENT
    growth_only_cutoff_m: float = 0.5e-9
    reference_temperature_c: float = 260.0
    activation_energy_k1_j_per_mol: float = 80e3
    activation_energy_adsorption_j_per_mol: float = 40e3

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "reference_temperature_c":
                _check_finite(owner, field.name, value, minimum=-ZERO_CELSIUS_K + 1.0)
            elif field.name in ("growth_exponent", "activation_energy_k1_j_per_mol",
                                "activation_energy_adsorption_j_per_mol",
                                "adsorption_b_m", "growth_only_cutoff_m"):
                _check_finite(owner, field.name, value, minimum=0.0)
            else:
                _check_finite(owner, field.name, value, strictly_positive=True)

    @property
    def molar_volume_m3_per_mol(self) -> float:
        """V_m = v0·N_A (m³/mol), the molar volume of the condensed phase."""
        return self.monomer_volume_m3 * AVOGADRO_PER_MOL

    @property
    def reference_temperature_k(self) -> float:
        return self.reference_temperature_c + ZERO_CELSIUS_K

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))


#: The simulated beamline flask's parameters (module docstring: the seed statement each reproduces).
SIMULATED_FLASK = KineticParameters(growth_exponent=5.0, adsorption_a_m_per_s=0.185,
                                    k1_per_s=2.8e-3)


@dataclass(frozen=True)
class GridOptions:
    """Numerical set-up of §S.6.5: the radius grid and how nuclei are deposited.

    Attributes:
        n_cells: number of uniform cells on [0, radius_max_nm] (502 in §S.6.5).
        radius_max_nm: top of the radius domain; its edge is closed (no flux).
        absorbing_radius_nm: below this radius matter is absorbed and returned to
            the monomer pool (§S.6.5 "absorbing boundary" from 0 to 0.2 nm).
        nucleus_offset_nm: nuclei are deposited this far above r_c (S6.3).
        nucleus_width_nm: standard deviation of the Gaussian nucleation kernel.
    """

    n_cells: int = 502
    radius_max_nm: float = 4.0
    absorbing_radius_nm: float = 0.2
    nucleus_offset_nm: float = 0.3
    nucleus_width_nm: float = 0.02

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if isinstance(self.n_cells, bool) or not isinstance(self.n_cells, int):
            raise TypeError(f"{owner}.n_cells must be an int, got {self.n_cells!r}")
        if self.n_cells < 50:
            raise ValueError(f"{owner}.n_cells must be >= 50, got {self.n_cells!r}")
        for name in ("radius_max_nm", "nucleus_offset_nm", "nucleus_width_nm"):
            _check_finite(owner, name, getattr(self, name), strictly_positive=True)
        _check_finite(owner, "absorbing_radius_nm", self.absorbing_radius_nm, minimum=0.0)
        if self.absorbing_radius_nm >= 0.5 * self.radius_max_nm:
            raise ValueError(f"{owner}.absorbing_radius_nm must be < radius_max_nm/2, "
                             f"got {self.absorbing_radius_nm!r}")
        if self.radius_max_nm / self.n_cells > self.nucleus_width_nm:
            raise ValueError(f"{owner}.n_cells={self.n_cells!r} is too coarse: the cell width "
                             f"must not exceed nucleus_width_nm={self.nucleus_width_nm!r}")


#: The simulated flask's grid: §S.6.5's cell width (4 nm / 502) over twice its range. With
#: growth exponents n <= 2 the first set of a §S.5 double injection outgrows 4 nm ~130-260 s
#: after piston B and would pile up at §S.6.5's closed edge (σ -> 0); on [0, 8] nm it reaches
#: 4.8 nm (n = 2) and 6.8 nm (n = 1) 30 min after B. Where nothing passes 4 nm the results
#: equal §S.6.5's grid (the default dry run's flask to the last digit).
FLASK_GRID = GridOptions(n_cells=1004, radius_max_nm=8.0)
