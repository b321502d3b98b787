"""Scattering of dilute CdSe nanocrystal spheres: seed 000 §S.2.2, eqs. S2.1–S2.4.

sasmodels-style pure, vectorised model functions.  Units at the interface: q in nm⁻¹,
radii in nm, concentrations in mol/L, intensities in cm⁻¹ (absolute).

Absolute scale (checked against sasmodels' ``sphere`` in tests/test_scattering.py)::

    I(q) = n · Δρ² · V² · F(qR)²,   F(x) = 3 (sin x − x cos x) / x³,   n = c · N_A / 1000

with n in cm⁻³ (mol/L → per cm³), Δρ in cm⁻² and V in cm³, so I is in cm⁻¹.  Seed eq. S2.2
prints the prefactor as 36π; the standard sphere form factor is 9·Δρ²·V²·[(sin x − x cos x)/x³]²,
which is what F² above gives (DESIGN.md, known pitfalls).

Gaussian polydispersity (S2.3) is integrated over R0 ± 5σ, truncated at R > 0 and renormalised
over that window (as sasmodels does).  The quadrature lives on fixed radius grids
r_k = k·h (h = BASE_STEP_NM·2^level) so that all the (R0, σ) dependence sits in the node
weights: a fitter can tabulate V²F²(q r_k) once per q array (``RadiusGridKernel``) and then an
evaluation, with its analytic derivatives, is one small matrix product.  Distributions narrower
than NARROW_SIGMA_NM (0.005 nm) use 5 Gauss–Hermite nodes instead.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

AVOGADRO_PER_MOL = 6.02214076e23
CM3_PER_LITRE = 1000.0
CM_PER_NM = 1e-7
CM2_PER_A2 = 1e16

#: Scattering length densities at 18 keV and 260 °C (seed 000 §S.2.2, below eq. S2.4), Å⁻².
SLD_CDSE_PER_A2 = 40.7e-6
SLD_REACTION_MIXTURE_PER_A2 = 5.5e-6
#: Contrast Δρ = ρ_CdSe − ρ_mixture (eq. S2.4), cm⁻².
CONTRAST_CDSE_PER_CM2 = (SLD_CDSE_PER_A2 - SLD_REACTION_MIXTURE_PER_A2) * CM2_PER_A2

#: Half-width of the integrated Gaussian, in standard deviations (±3σ biases σ by ~2 %).
POLYDISPERSITY_NSIGMA = 5.0
#: Finest radius-grid step, nm.  Coarser levels double it; see ``gaussian_radius_weights``.
BASE_STEP_NM = 0.0025

#: sasmodels-style parameter table: [name, units, default, [lower, upper], description].
parameters = [
    ["radius_nm", "nm", 2.0, [0.0, math.inf], "mean radius R0 of the Gaussian distribution (S2.3)"],
    ["sigma_nm", "nm", 0.2, [0.0, math.inf], "standard deviation σ_R of the radius (S2.3)"],
    ["concentration_molar", "mol/L", 1e-5, [0.0, math.inf], "nanocrystal concentration c_NC,tot (S2.1)"],
    ["background_cm", "cm^-1", 0.0, [-math.inf, math.inf], "constant background added to S2.1"],
    ["contrast_per_cm2", "cm^-2", CONTRAST_CDSE_PER_CM2, [-math.inf, math.inf], "Δρ = ρ_CdSe − ρ_mixture (S2.4)"],
]

def molar_to_per_cm3(concentration_molar):
    """Number density in cm⁻³ of particles at ``concentration_molar`` mol/L (c·N_A/1000, S2.1)."""
    return np.asarray(concentration_molar, dtype=float) * (AVOGADRO_PER_MOL / CM3_PER_LITRE)


def sphere_volume_cm3(radius_nm):
    """Volume 4/3·π·R³ of a sphere of radius ``radius_nm`` nm, in cm³."""
    return (4.0 / 3.0 * math.pi) * (np.asarray(radius_nm, dtype=float) * CM_PER_NM) ** 3


def sphere_amplitude(x):
    """Normalised sphere amplitude F(x) = 3 (sin x − x cos x)/x³, F(0) = 1 (series below x = 0.01)."""
    x = np.asarray(x, dtype=float)
    flat = x.reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # x = 0 is replaced by the series below
        amplitude = np.sin(flat)  # 3 (sin x − x cos x) / x³ in place: no (q × r) temporaries
        amplitude -= flat * np.cos(flat)
        amplitude *= 3.0
        amplitude /= flat**3
    small = np.abs(flat) < 1e-2
    if small.any():
        x2 = flat[small]
        x2 = x2 * x2
        amplitude[small] = 1.0 - x2 / 10.0 + x2 * x2 / 280.0
    return amplitude.reshape(x.shape)


def sphere_form_factor(q_nm, radius_nm, contrast_per_cm2=CONTRAST_CDSE_PER_CM2):
    """Scattering power P(q) = Δρ²·V²·F(qR)² of one sphere, in cm² (corrected eq. S2.2).

    ``q_nm`` (nm⁻¹) and ``radius_nm`` (nm) broadcast against each other.
    """
    q = np.asarray(q_nm, dtype=float)
    r = np.asarray(radius_nm, dtype=float)
    power = sphere_amplitude(q * r)
    np.square(power, out=power)
    power *= contrast_per_cm2**2 * sphere_volume_cm3(r) ** 2
    return power


_DISTRIBUTION_KERNELS: OrderedDict = OrderedDict()
_DISTRIBUTION_CACHE_SIZE = 4


def recent(cache: OrderedDict, key, build, size: int):
    """``cache[key]``, built with ``build()`` when missing; keeps the ``size`` latest keys."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = build()
        if len(cache) > size:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


def _distribution_kernel(q, radius):
    """(n_q, n_r) matrix of V²F²(q r) in cm⁶; the last few (q, radius) pairs are cached."""
    return recent(_DISTRIBUTION_KERNELS, (q.tobytes(), radius.tobytes()),
                  lambda: sphere_form_factor(q[:, None], radius[None, :], contrast_per_cm2=1.0),
                  _DISTRIBUTION_CACHE_SIZE)


def distribution_intensity(q_nm, radius_nm, number_concentration_molar,
                           contrast_per_cm2=CONTRAST_CDSE_PER_CM2):
    """I(q) in cm⁻¹ of an arbitrary discrete size distribution (S2.1 summed over sizes).

    ``radius_nm``: radii of the size cells (nm); ``number_concentration_molar``: molar
    concentration of particles in each cell (mol/L), same length.  The V²F² matrix is cached
    on the (q, radius) arrays, so a simulator calling with a fixed grid pays one matrix-vector
    product per frame.
    """
    q = _as_1d_finite("q_nm", q_nm)
    radius = _as_1d_finite("radius_nm", radius_nm)
    numbers = _as_1d_finite("number_concentration_molar", number_concentration_molar)
    if radius.shape != numbers.shape:
        raise ValueError(
            f"radius_nm and number_concentration_molar must have the same length, "
            f"got {radius.size} and {numbers.size}")
    if np.any(radius < 0):
        raise ValueError(f"radius_nm must be >= 0, got min {radius.min()}")
    kernel = _distribution_kernel(q, radius)
    return contrast_per_cm2**2 * (kernel @ molar_to_per_cm3(numbers))


#: Below this σ the Gaussian average uses Gauss–Hermite nodes instead of the radius grid.
NARROW_SIGMA_NM = 2.0 * BASE_STEP_NM
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(5)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum()


def gaussian_radius_weights(radius_nm, sigma_nm, q_max_nm):
    """Trapezoid quadrature of the truncated Gaussian of S2.3 on the grid r_k = k·h.

    Returns ``(step_nm, first_index, weights)``: nodes are r = (first_index + i)·step_nm and
    ``weights`` has shape (3, m): the normalised weights and their derivatives d/dR0 and d/dσ
    (nm⁻¹), so that ⟨f⟩ = Σ w_i f(r_i) for any f tabulated on the grid.  The step is the
    largest BASE_STEP_NM·2^level with h ≤ σ/4 and h well under the Nyquist step π/q_max of V²F²,
    where the trapezoid rule on a Gaussian is accurate to far better than 1e-6.  Needs
    σ ≥ NARROW_SIGMA_NM.
    """
    if not (radius_nm > 0 and sigma_nm >= NARROW_SIGMA_NM):
        raise ValueError(f"need radius_nm > 0 and sigma_nm >= {NARROW_SIGMA_NM}, got {radius_nm}, {sigma_nm}")
    lo = max(radius_nm - POLYDISPERSITY_NSIGMA * sigma_nm, 0.0)
    hi = radius_nm + POLYDISPERSITY_NSIGMA * sigma_nm
    max_step = min(sigma_nm / 4.0, 2.0 * math.pi / (2.0 * q_max_nm + 8.0 / sigma_nm))
    level = max(0, math.floor(math.log2(max_step / BASE_STEP_NM)))
    step = BASE_STEP_NM * 2.0**level
    first = math.ceil(lo / step)
    last = math.floor(hi / step)
    u = (np.arange(first, last + 1) * step - radius_nm) / sigma_nm
    g = np.exp(-0.5 * u * u)
    if first == 0:  # the cut at R = 0 is a trapezoid end point
        g[0] *= 0.5
    w = g / g.sum()
    u2 = u * u
    weights = np.empty((3, u.size))
    weights[0] = w
    weights[1] = w * (u - w @ u) / sigma_nm
    weights[2] = w * (u2 - w @ u2) / sigma_nm
    return step, first, weights


def _sphere_power_and_slope(q_nm, radius_nm):
    """V²F²(qR) in cm⁶ and its derivative d/dR in cm⁶/nm (unit contrast); q, R broadcast."""
    x = q_nm * radius_nm
    amplitude = sphere_amplitude(x)
    small = np.abs(x) < 1e-2
    xs = np.where(small, 1.0, x)
    slope = np.where(small, -x / 5.0 + x**3 / 70.0, 3.0 * np.sin(xs) / xs**2 - 3.0 * amplitude / xs)
    volume = sphere_volume_cm3(radius_nm)
    power = volume**2 * amplitude**2
    return power, 6.0 * power / radius_nm + volume**2 * 2.0 * amplitude * slope * q_nm


def narrow_gaussian_average(q_nm, radius_nm, sigma_nm):
    """(3, n_q): ⟨V²F²⟩ (cm⁶) over a narrow Gaussian and its d/dR0, d/dσ, by 5-point Gauss–Hermite.

    For σ < NARROW_SIGMA_NM (q·σ ≤ 0.03 here) the error is far below 1e-9; the ±5σ and R > 0
    truncations change nothing at that width.
    """
    radii = radius_nm + sigma_nm * _HERMITE_NODES
    power, slope = _sphere_power_and_slope(np.asarray(q_nm)[None, :], radii[:, None])
    return np.vstack([_HERMITE_WEIGHTS @ power,
                      _HERMITE_WEIGHTS @ slope,
                      (_HERMITE_WEIGHTS * _HERMITE_NODES) @ slope])


class RadiusGridKernel:
    """V²F²(q r_k) tabulated for one q array on the radius grids of ``gaussian_radius_weights``.

    Rows are computed lazily, in blocks of 16 radii inside chunks of 256 per grid level, and
    kept, so work and memory follow the radii actually visited (a cold start's scan of the
    (R0, σ) plane touches about half of its chunks' rows) and repeated evaluations of the
    polydisperse model for the same q cost one (3, m) × (m, n_q) product.
    """

    def __init__(self, q_nm, contrast_per_cm2=CONTRAST_CDSE_PER_CM2):
        self.q_nm = _as_1d_finite("q_nm", q_nm).copy()
        self.q_nm.setflags(write=False)
        self.q_max_nm = float(np.max(np.abs(self.q_nm))) if self.q_nm.size else 0.0
        self.scale = float(molar_to_per_cm3(1.0)) * contrast_per_cm2**2
        #: (step, chunk index) -> (rows (256, n_q), which rows are computed: 256 bools)
        self._chunks: dict[tuple[float, int], tuple[np.ndarray, list[bool]]] = {}
        #: ((R0, σ), read-only result) of the last evaluation: a fit's errors need the model at
        #: the point where its search ended, which the search has just evaluated
        self._last = (None, None)

    _CHUNK_ROWS = 256
    _BLOCK_ROWS = 16

    def _chunk(self, step, index, start, stop):
        """Chunk ``index`` of grid ``step`` with at least its rows start..stop−1 computed."""
        entry = self._chunks.get((step, index))
        if entry is None:
            entry = self._chunks[(step, index)] = (np.empty((self._CHUNK_ROWS, self.q_nm.size)),
                                                  [False] * self._CHUNK_ROWS)
        chunk, done = entry
        if not all(done[start:stop]):
            block = self._BLOCK_ROWS
            low, high = start - start % block, -(-stop // block) * block
            missing = np.array([row for row in range(low, high) if not done[row]])
            radii = (index * self._CHUNK_ROWS + missing) * step
            chunk[missing] = sphere_form_factor(self.q_nm[None, :], radii[:, None], contrast_per_cm2=1.0)
            for row in missing.tolist():
                done[row] = True
        return chunk

    def _rows(self, step, first, count):
        """Rows r = (first .. first+count−1)·step; a view when they sit in one chunk."""
        size = self._CHUNK_ROWS
        first_chunk, last_chunk = first // size, (first + count - 1) // size
        if first_chunk == last_chunk:
            start = first - first_chunk * size
            return self._chunk(step, first_chunk, start, start + count)[start:start + count]
        stop = first + count
        pieces = []
        for index in range(first_chunk, last_chunk + 1):
            start, end = max(first - index * size, 0), min(stop - index * size, size)
            pieces.append(self._chunk(step, index, start, end)[start:end])
        return np.concatenate(pieces)

    def evaluate(self, radius_nm, sigma_nm):
        """(3, n_q) read-only array: ⟨I⟩ per unit concentration (cm⁻¹ per mol/L) and its d/dR0, d/dσ."""
        key, result = self._last
        if key == (radius_nm, sigma_nm):
            return result
        if sigma_nm < NARROW_SIGMA_NM:
            result = narrow_gaussian_average(self.q_nm, radius_nm, sigma_nm)
        else:
            step, first, weights = gaussian_radius_weights(radius_nm, sigma_nm, self.q_max_nm)
            result = weights @ self._rows(step, first, weights.shape[1])
        result *= self.scale
        result.setflags(write=False)
        self._last = ((radius_nm, sigma_nm), result)
        return result


def sphere_intensity(q_nm, radius_nm, sigma_nm, concentration_molar, background_cm=0.0,
                     contrast_per_cm2=CONTRAST_CDSE_PER_CM2):
    """I(q) in cm⁻¹ of Gaussian-polydisperse spheres plus a constant background (S2.1 + S2.3).

    ``radius_nm``: mean radius R0 (nm); ``sigma_nm``: standard deviation σ_R (nm), 0 means
    monodisperse; ``concentration_molar``: c_NC,tot (mol/L); ``background_cm``: cm⁻¹.
    """
    q = _as_1d_finite("q_nm", q_nm)
    _check_scalar("radius_nm", radius_nm, minimum=0.0, inclusive=False)
    _check_scalar("sigma_nm", sigma_nm, minimum=0.0)
    _check_scalar("concentration_molar", concentration_molar)
    _check_scalar("background_cm", background_cm)
    if sigma_nm < NARROW_SIGMA_NM:
        average = narrow_gaussian_average(q, radius_nm, sigma_nm)[0]
    else:
        q_max = float(np.max(np.abs(q))) if q.size else 0.0
        step, first, weights = gaussian_radius_weights(radius_nm, sigma_nm, q_max)
        radii = (first + np.arange(weights.shape[1])) * step
        average = sphere_form_factor(q[:, None], radii[None, :], contrast_per_cm2=1.0) @ weights[0]
    return contrast_per_cm2**2 * molar_to_per_cm3(concentration_molar) * average + background_cm


def _as_1d_finite(name, values):
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(array))} non-finite values")
    return array


def _check_scalar(name, value, minimum=None, inclusive=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (not inclusive and value == minimum)):
        relation = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
