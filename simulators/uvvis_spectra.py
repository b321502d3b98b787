"""Absorbance spectra of the flow reactor's outlet (seed 002, Fig. 1, Fig. 4, Fig. S2).

:func:`absorbance_spectrum` turns a :class:`~ncsynth.simulators.flow_chemistry.FlowComposition`
(or anything with ``families``, ``nc_molar``, ``nc_diameter_nm``, ``nc_relative_sigma``) into
absorbance against wavelength.  Every particle species (each MSC family, the NC ensemble)
contributes, with c its particle concentration (mol/L), l the path (cm), D its diameter and
N its CdSe units (analysis.optical)::

    first exciton      ε(D)·c·l · exp[−ln2·((λ − λ₁)/w)²]           (Yu 2003 ε, seed ref. 29)
    higher transition  f·ε(D)·c·l · exp[−ln2·((E − E₁ − ΔE)/W)²]    (broad, in energy)
    continuum          N·c·l · ε_u · W_c·ln(1 + exp((E − E₁ − δ)/W_c))  (rises into the UV)

* MSC families: λ₁ fixed at the family's maximum (350, 382, 403, 437, 465 nm), narrow
  w = MSC_HWHM_NM (seed: "relatively small FWHM and static position").
* NCs: λ₁ = exciton_wavelength_nm(mean D), shifting as they grow; w from the size dispersion,
  |dλ/dD|·σ_D·√(2 ln 2), added in quadrature to a homogeneous NC_HOMOGENEOUS_HWHM_NM.
* Higher transition: ΔE = 0.35 eV, W = 0.12 eV HWHM, f = 0.3 of the first exciton.
* Continuum: bulk-like absorption per CdSe unit growing linearly (softplus-smoothed) above
  E₁ + δ, δ = 0.15 eV, W_c = 0.1 eV, ε_u = 1000 L mol⁻¹ cm⁻¹ per unit per eV: at 350 nm a
  3.6 nm NC then absorbs ~3× its exciton peak, CdSe-437 ~1×, as typical CdSe spectra.
These shape constants are the simulator's choices (the seed shows spectra, not a model).
Monomer and precursor are taken as transparent above 340 nm.

What ε(D)·c·l is the absorbance *of*, as each species' amount is measured:

* NCs: the ensemble's whole absorbance at its first-exciton maximum λ₁ (exciton, higher
  transition and continuum together) is ε(D)·c·l, the convention of Yu 2003's calibration (the
  absorbance at the first exciton peak of spectra of purified NCs of known concentration); the
  exciton Gaussian's height is what is left of it after the continuum and the higher
  transition at λ₁ (~4 % of it for 2.3–3.6 nm NCs).
* MSC families: the narrow peak's height above the cluster's own broad absorption is
  ε(D)·c·l; a 4 nm HWHM peak is measured above the local baseline under it
  (:mod:`ncsynth.analysis.clusters`), which takes up that broad absorption.
"""
from __future__ import annotations

import math

import numpy as np

from ..analysis.optical import (MSC_PEAKS_NM, YU_SIZING_COEFFICIENTS, cdse_diameter_nm, cdse_units,
                                exciton_wavelength_nm, extinction_coefficient_per_molar_cm)

HC_EV_NM = 1239.84198
#: HWHM of an MSC family's first-exciton peak, nm.
MSC_HWHM_NM = 4.0
#: Homogeneous HWHM of the NC exciton (what a monodisperse ensemble would show), nm.
NC_HOMOGENEOUS_HWHM_NM = 6.0
HIGHER_TRANSITION_OFFSET_EV = 0.35
HIGHER_TRANSITION_HWHM_EV = 0.12
HIGHER_TRANSITION_FRACTION = 0.3
CONTINUUM_OFFSET_EV = 0.15
CONTINUUM_WIDTH_EV = 0.1
CONTINUUM_PER_UNIT_EV = 1000.0

_SIZING_SLOPE = np.polyder(YU_SIZING_COEFFICIENTS)


def nc_exciton_hwhm_nm(diameter_nm: float, relative_sigma: float) -> float:
    """HWHM (nm) of the NC first exciton: size dispersion through the sizing curve ⊕ homogeneous."""
    wavelength = float(exciton_wavelength_nm(diameter_nm))
    sigma_nm = relative_sigma * diameter_nm / float(np.polyval(_SIZING_SLOPE, wavelength))
    return math.hypot(math.sqrt(2.0 * math.log(2.0)) * sigma_nm, NC_HOMOGENEOUS_HWHM_NM)


def species_lines(composition) -> list[tuple[str, float, float, float, float]]:
    """(label, first-exciton λ nm, HWHM nm, diameter nm, concentration mol/L) per species present."""
    lines = []
    for label, peak in MSC_PEAKS_NM.items():
        concentration = composition.families.get(label, 0.0)
        if concentration > 0:
            lines.append((label, peak, MSC_HWHM_NM, float(cdse_diameter_nm(peak)), concentration))
    diameter = composition.nc_diameter_nm
    if composition.nc_molar > 0 and math.isfinite(diameter):
        lines.append(("NC", float(exciton_wavelength_nm(diameter)),
                      nc_exciton_hwhm_nm(diameter, composition.nc_relative_sigma), diameter,
                      composition.nc_molar))
    return lines


def absorbance_spectrum(wavelength_nm, composition, path_cm: float) -> np.ndarray:
    """Absorbance (base 10) at ``wavelength_nm`` of ``composition`` in a cell of ``path_cm`` cm."""
    wavelength = np.asarray(wavelength_nm, dtype=float)
    if not np.all(np.isfinite(wavelength)) or np.any(wavelength <= 0):
        raise ValueError(f"wavelength_nm must be finite and > 0, got {wavelength_nm!r}")
    if not (isinstance(path_cm, (int, float)) and math.isfinite(path_cm) and path_cm > 0):
        raise ValueError(f"path_cm must be a positive number, got {path_cm!r}")
    energy = HC_EV_NM / wavelength
    total = np.zeros_like(wavelength)
    for label, peak, hwhm, diameter, concentration in species_lines(composition):
        calibrated = float(extinction_coefficient_per_molar_cm(diameter)) * concentration * path_cm
        first_energy = HC_EV_NM / peak
        continuum_per_ev = float(cdse_units(diameter)) * concentration * path_cm * CONTINUUM_PER_UNIT_EV

        def continuum(photon_ev):
            onset = (photon_ev - first_energy - CONTINUUM_OFFSET_EV) / CONTINUUM_WIDTH_EV
            return continuum_per_ev * CONTINUUM_WIDTH_EV * np.logaddexp(0.0, onset)

        def higher(photon_ev):
            return HIGHER_TRANSITION_FRACTION * np.exp(
                -math.log(2.0) * ((photon_ev - first_energy - HIGHER_TRANSITION_OFFSET_EV)
                                  / HIGHER_TRANSITION_HWHM_EV) ** 2)

        exciton = calibrated
        if label == "NC":  # the whole absorbance at λ₁ is ε·c·l (module docstring)
            exciton = (calibrated - float(continuum(first_energy))) / (1.0 + float(higher(first_energy)))
        total += exciton * (np.exp(-math.log(2.0) * ((wavelength - peak) / hwhm) ** 2)
                            + higher(energy))
        total += continuum(energy)
    return total
