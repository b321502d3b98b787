"""Rate laws of the population-balance model (seed 000 §S.4.1, §S.6.3-§S.6.5), SI units.

Pure, vectorised functions of radius (m), supersaturation S (dimensionless) and
absolute temperature (K).  Growth rates are returned in the split form

    j_G(r) = a(r) · (S - K(r))        [m/s]

so that a time-stepper can evaluate j_G for many trial S cheaply: a(r) (m/s) and
the Kelvin factor K(r) (dimensionless) depend on r and T only.
"""

from __future__ import annotations

import math

import numpy as np

from .kinetics_parameters import AVOGADRO_PER_MOL, GAS_CONSTANT_J_PER_MOL_K, KineticParameters


def arrhenius_factor(activation_energy_j_per_mol: float, temperature_k: float,
                     reference_temperature_k: float) -> float:
    """exp[-E_a/R · (1/T - 1/T_ref)]: 1 at T_ref, < 1 below it."""
    return math.exp(-activation_energy_j_per_mol / GAS_CONSTANT_J_PER_MOL_K
                    * (1.0 / temperature_k - 1.0 / reference_temperature_k))


def precursor_rate_constant_per_s(params: KineticParameters, temperature_k: float) -> float:
    """k1(T) of S6.6 (1/s, first order)."""
    return params.k1_per_s * arrhenius_factor(params.activation_energy_k1_j_per_mol,
                                              temperature_k, params.reference_temperature_k)


def adsorption_a_m_per_s(params: KineticParameters, temperature_k: float) -> float:
    """A(T) of S6.15/S6.16 (m/s)."""
    return params.adsorption_a_m_per_s * arrhenius_factor(
        params.activation_energy_adsorption_j_per_mol, temperature_k,
        params.reference_temperature_k)


def kelvin_length_m(params: KineticParameters, temperature_k: float) -> float:
    """2·gamma·V_m/(R·T) (m): the Kelvin factor is exp(kelvin_length/r) (S4.9)."""
    return (2.0 * params.surface_tension_j_per_m2 * params.molar_volume_m3_per_mol
            / (GAS_CONSTANT_J_PER_MOL_K * temperature_k))


def adsorption_rate_constant_m_per_s(radius_m, params: KineticParameters,
                                     temperature_k: float) -> np.ndarray:
    """k_a(r) = A·(r_c0 + B)^n / (r + B)^n of S6.16 (m/s)."""
    r = np.asarray(radius_m, dtype=float)
    ratio = (params.adsorption_rc0_m + params.adsorption_b_m) / (r + params.adsorption_b_m)
    return adsorption_a_m_per_s(params, temperature_k) * ratio ** params.growth_exponent


def growth_rate_coefficients(radius_m, params: KineticParameters,
                             temperature_k: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, K) of the reaction/diffusion growth law S4.8 with k_a from S6.16.

    j_G = D·V_m·[M]0·(S - exp(2γV_m/(rRT))) / (D/k_a(r) + r) = a·(S - K).
    """
    r = np.asarray(radius_m, dtype=float)
    ka = adsorption_rate_constant_m_per_s(r, params, temperature_k)
    d = params.diffusion_m2_per_s
    a = d * params.molar_volume_m3_per_mol * params.solubility_mol_per_m3 / (d / ka + r)
    kelvin = np.exp(kelvin_length_m(params, temperature_k) / r)
    return a, kelvin


def growth_only_rate_coefficients(radius_m, params: KineticParameters,
                                  temperature_k: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, K) of the growth-only law S6.14/S6.15: j_G = V_m·[M]0·S·k_g(r), K = 0.

    k_g(r) = A·(r_c0/r)^n·θ(r - r0); no diffusion limitation, no desorption.
    """
    r = np.asarray(radius_m, dtype=float)
    above = r > params.growth_only_cutoff_m
    safe_r = np.where(above, r, params.adsorption_rc0_m)
    kg = np.where(above, adsorption_a_m_per_s(params, temperature_k)
                  * (params.adsorption_rc0_m / safe_r) ** params.growth_exponent, 0.0)
    a = params.molar_volume_m3_per_mol * params.solubility_mol_per_m3 * kg
    return a, np.zeros_like(a)


def growth_rate_m_per_s(radius_m, supersaturation: float, params: KineticParameters,
                        temperature_k: float) -> np.ndarray:
    """j_G(r) of S4.8 (m/s); negative below the critical radius (dissolution)."""
    a, kelvin = growth_rate_coefficients(radius_m, params, temperature_k)
    return a * (supersaturation - kelvin)


def critical_radius_m(supersaturation: float, params: KineticParameters,
                      temperature_k: float) -> float:
    """r_c = 2γV_m/(RT·ln S) of S6.3 (m); inf for S <= 1."""
    if supersaturation <= 1.0:
        return math.inf
    return kelvin_length_m(params, temperature_k) / math.log(supersaturation)


def nucleation_constants(params: KineticParameters,
                         temperature_k: float) -> tuple[float, float]:
    """(prefactor in 1/(m³·s), barrier coefficient) of S6.4: J_N = P·exp(-b/ln²S)."""
    prefactor = 2.0 * params.diffusion_m2_per_s / params.monomer_volume_m3 ** (5.0 / 3.0)
    rt = GAS_CONSTANT_J_PER_MOL_K * temperature_k
    barrier = (16.0 * math.pi * params.surface_tension_j_per_m2 ** 3
               * params.molar_volume_m3_per_mol ** 2 * AVOGADRO_PER_MOL / (3.0 * rt ** 3))
    return prefactor, barrier


def nucleation_rate_per_m3_s(supersaturation: float, params: KineticParameters,
                             temperature_k: float) -> float:
    """J_N of S6.4 (nuclei per m³ per s); 0 for S <= 1."""
    if supersaturation <= 1.0:
        return 0.0
    prefactor, barrier = nucleation_constants(params, temperature_k)
    return prefactor * math.exp(-barrier / math.log(supersaturation) ** 2)
