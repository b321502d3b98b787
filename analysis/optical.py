"""Optical sizing and counting of CdSe clusters and nanocrystals (seed 002, Fig. 4 and ref. 29).

Pure, vectorised functions.  Units: wavelengths and diameters in nm, concentrations in mol/L of
particles, path lengths in cm, extinction coefficients in L mol⁻¹ cm⁻¹.

* Sizing curve of Yu, Qu, Guo and Peng, *Chem. Mater.* 2003, **15**, 2854 (seed 002 ref. 29),
  first-exciton wavelength λ → diameter D::

      D = 1.6122e-9 λ⁴ − 2.6575e-6 λ³ + 1.6242e-3 λ² − 0.4277 λ + 41.57

  The seed applies it to magic-size clusters as well (Fig. 4 table: 350 → 1.09, 380 → 1.37,
  403 → 1.58, 437 → 1.85, 465 → 2.06 nm).  Accepted here on [340, 650] nm (D ≈ 1.00–7.76 nm):
  the polynomial is monotonic above 285.7 nm, 340 nm keeps the 350 nm clusters with a few nm
  of fitting tolerance, and 650 nm is the large-crystal end (~8 nm) of a CdSe sizing curve.
  Outside, a ValueError.
* Extinction coefficient at the first exciton (same paper): ε = 5857·D^2.65 L mol⁻¹ cm⁻¹.
* Aggregation number N_CdSe (CdSe units per particle): sphere of diameter D at the bulk
  density 5.82 g/cm³ and molar mass 191.37 g/mol.  This is the convention of the seed's
  Fig. 4 table (it reproduces 12, 25, 38, 61, 84 for 350–465 nm to rounding); the zinc-blende
  cell count 4V/a³ (a = 0.6077 nm, DESIGN.md) gives 2.7 % fewer units.
"""
from __future__ import annotations

import math

import numpy as np

AVOGADRO_PER_MOL = 6.02214076e23
CDSE_DENSITY_G_PER_CM3 = 5.82
CDSE_MOLAR_MASS_G_PER_MOL = 191.37
CM3_PER_NM3 = 1e-21

#: The CdSe magic-size-cluster families by their fixed first-exciton maximum, nm (seed Fig. 4
#: table and rate laws; the table lists the second family at 380 nm, the rate laws call it 382).
MSC_PEAKS_NM = {"MSC-350": 350.0, "MSC-382": 382.0, "MSC-403": 403.0, "MSC-437": 437.0,
                "MSC-465": 465.0}

#: Yu et al. 2003 sizing polynomial, highest power first (np.polyval order), D in nm, λ in nm.
YU_SIZING_COEFFICIENTS = (1.6122e-9, -2.6575e-6, 1.6242e-3, -0.4277, 41.57)
#: Wavelength range accepted by the sizing curve, nm.
SIZING_RANGE_NM = (340.0, 650.0)
#: ε = EXTINCTION_PREFACTOR · D^EXTINCTION_EXPONENT (Yu 2003), L mol⁻¹ cm⁻¹ with D in nm.
EXTINCTION_PREFACTOR = 5857.0
EXTINCTION_EXPONENT = 2.65

_UNITS_PER_NM3 = CDSE_DENSITY_G_PER_CM3 * CM3_PER_NM3 / CDSE_MOLAR_MASS_G_PER_MOL * AVOGADRO_PER_MOL


def _finite(name, values):
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return array


def _in_range(name, array, low, high, values):
    if np.any(array < low) or np.any(array > high):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {values!r}")


def cdse_diameter_nm(wavelength_nm):
    """Diameter (nm) of CdSe particles whose first exciton absorbs at ``wavelength_nm`` (Yu 2003)."""
    wavelength = _finite("wavelength_nm", wavelength_nm)
    _in_range("wavelength_nm", wavelength, *SIZING_RANGE_NM, wavelength_nm)
    return np.polyval(YU_SIZING_COEFFICIENTS, wavelength)


_DIAMETER_RANGE_NM = tuple(float(np.polyval(YU_SIZING_COEFFICIENTS, w)) for w in SIZING_RANGE_NM)
_SLOPE_COEFFICIENTS = np.polyder(YU_SIZING_COEFFICIENTS)
_TABLE_WAVELENGTH_NM = np.linspace(*SIZING_RANGE_NM, 3101)
_TABLE_DIAMETER_NM = np.polyval(YU_SIZING_COEFFICIENTS, _TABLE_WAVELENGTH_NM)


def exciton_wavelength_nm(diameter_nm):
    """First-exciton wavelength (nm) of CdSe particles of ``diameter_nm``: inverse of the sizing curve.

    Table interpolation then Newton steps on the polynomial (converged to ~1e-12 nm).  Accepts
    diameters in the image of SIZING_RANGE_NM (≈ 1.00–7.76 nm), else ValueError.
    """
    diameter = _finite("diameter_nm", diameter_nm)
    _in_range("diameter_nm", diameter, *_DIAMETER_RANGE_NM, diameter_nm)
    wavelength = np.interp(diameter, _TABLE_DIAMETER_NM, _TABLE_WAVELENGTH_NM)
    for _ in range(3):
        wavelength = wavelength - ((np.polyval(YU_SIZING_COEFFICIENTS, wavelength) - diameter)
                                   / np.polyval(_SLOPE_COEFFICIENTS, wavelength))
    return wavelength


def cdse_units(diameter_nm):
    """Number of CdSe units in a sphere of ``diameter_nm`` (bulk density; seed Fig. 4 convention)."""
    diameter = _finite("diameter_nm", diameter_nm)
    if np.any(diameter < 0):
        raise ValueError(f"diameter_nm must be >= 0, got {diameter_nm!r}")
    return (math.pi / 6.0) * diameter**3 * _UNITS_PER_NM3


def cdse_diameter_from_units_nm(units):
    """Diameter (nm) of a CdSe sphere holding ``units`` CdSe units: inverse of :func:`cdse_units`."""
    count = _finite("units", units)
    if np.any(count < 0):
        raise ValueError(f"units must be >= 0, got {units!r}")
    return np.cbrt(count / ((math.pi / 6.0) * _UNITS_PER_NM3))


def extinction_coefficient_per_molar_cm(diameter_nm):
    """ε (L mol⁻¹ cm⁻¹, per mole of particles) at the first exciton: 5857·D^2.65 (Yu 2003)."""
    diameter = _finite("diameter_nm", diameter_nm)
    if np.any(diameter <= 0):
        raise ValueError(f"diameter_nm must be > 0, got {diameter_nm!r}")
    return EXTINCTION_PREFACTOR * diameter**EXTINCTION_EXPONENT


def concentration_molar(absorbance, diameter_nm, path_cm):
    """Particle concentration (mol/L) from the first-exciton ``absorbance``: c = A/(ε·l), Beer–Lambert."""
    value = _finite("absorbance", absorbance)
    path = _finite("path_cm", path_cm)
    if np.any(path <= 0):
        raise ValueError(f"path_cm must be > 0, got {path_cm!r}")
    return value / (extinction_coefficient_per_molar_cm(diameter_nm) * path)
