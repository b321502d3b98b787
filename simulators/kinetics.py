"""Reaction kinetics of the simulated flask: the population-balance model of seed 000 §S.6.

Two entry points share one integrator:

* :class:`ReactionState` — the incremental form the simulated world uses.  A flask
  starts without precursor; :meth:`ReactionState.add_precursor` is an injection and
  :meth:`ReactionState.step` advances by any dt at a given temperature (°C).
* :func:`simulate_synthesis` — a pure function running a whole hot-injection
  synthesis (Fig. 5 of the paper) by driving a :class:`ReactionState`.

Model: S6.2 (population balance, nucleation + growth), S4.8 with S6.16 (growth rate,
Kelvin desorption term), S6.3/S6.4 (critical radius, nucleation rate), S6.5 (monomer
balance, solved implicitly, see :mod:`.kinetics_scheme`), S6.6 (precursor).  The
growth-only mode (S6.14/S6.15, no nucleation) reproduces Fig. S6.2.
Interfaces use nm, mol/L, °C and s; internals are SI (see DESIGN.md).
"""

from __future__ import annotations

import copy as _copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .kinetics_parameters import (AVOGADRO_PER_MOL, DEFAULT_GROWTH_EXPONENT, GridOptions,
                                  KineticParameters, ZERO_CELSIUS_K)
from .kinetics_scheme import RadiusGrid, StepCoefficients, TrialStep

__all__ = ["KineticParameters", "GridOptions", "ReactionState", "SynthesisResult",
           "simulate_synthesis", "DEFAULT_GROWTH_EXPONENT"]

_NANOMETRE = 1e-9
_LITRE_PER_M3 = 1000.0
_FIRST_SUBSTEP_S = 1e-6
_SMALLEST_SUBSTEP_S = 1e-14
_MAX_SUBSTEP_S = 50.0
_NUCLEATION_TOLERANCE = 0.05


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_temperature_c(name: str, value) -> float:
    value = _check_real(name, value)
    if value <= -ZERO_CELSIUS_K:
        raise ValueError(f"{name} must be above absolute zero, got {value!r} °C")
    return value


class ReactionState:
    """State of the reacting flask: precursor, monomer and the nanocrystal distribution c(r).

    Args:
        parameters: physical parameters (Table S6.1 defaults).
        grid: numerical set-up (§S.6.5 defaults: 0-4 nm, 502 cells).
        growth_only: use the growth-only law S6.14/S6.15 without nucleation (§S.6.4).
        initial_distribution_per_m4: c(r) at the cell centres (1/m⁴, length n_cells) to
            start from, e.g. an existing batch for growth-only runs; default empty.
        nucleation_tolerance: largest relative change of the nucleation rate (weighted by
            its share of the monomer budget) a sub-step may make; the step controller's
            accuracy knob (default 0.05). Smaller is more accurate and slower.

    The flask holds no precursor until :meth:`add_precursor`.
    """

    def __init__(self, parameters: KineticParameters | None = None,
                 grid: GridOptions | None = None, *, growth_only: bool = False,
                 initial_distribution_per_m4=None,
                 nucleation_tolerance: float = _NUCLEATION_TOLERANCE):
        tolerance = _check_real("nucleation_tolerance", nucleation_tolerance)
        if not 0.0 < tolerance <= 1.0:
            raise ValueError(f"nucleation_tolerance must be in (0, 1], got {tolerance!r}")
        self._nucleation_tolerance = tolerance
        self._params = parameters if parameters is not None else KineticParameters()
        if not isinstance(self._params, KineticParameters):
            raise TypeError(f"parameters must be KineticParameters, got {parameters!r}")
        options = grid if grid is not None else GridOptions()
        if not isinstance(options, GridOptions):
            raise TypeError(f"grid must be GridOptions, got {grid!r}")
        self._grid = RadiusGrid(options)
        self._growth_only = bool(growth_only)
        self._first_active = self._grid.first_active_cell
        n_active = options.n_cells - self._first_active
        self._c = np.zeros(n_active)
        if initial_distribution_per_m4 is not None:
            initial = np.asarray(initial_distribution_per_m4, dtype=float)
            if initial.shape != (options.n_cells,):
                raise ValueError(f"initial_distribution_per_m4 must have shape "
                                 f"({options.n_cells},), got {initial.shape}")
            if not np.all(np.isfinite(initial)) or np.any(initial < 0):
                raise ValueError("initial_distribution_per_m4 must be finite and >= 0")
            if np.any(initial[:self._first_active] > 0):
                raise ValueError("initial_distribution_per_m4 must be 0 below the absorbing "
                                 f"radius {options.absorbing_radius_nm} nm")
            self._c = initial[self._first_active:].copy()
        self._time_s = 0.0
        self._precursor = 0.0
        self._monomer = 0.0
        # Material ever put in (mol/m³ of the current volume): the initial batch + injections.
        self._material_added = self._nanocrystal_mol_per_m3()
        self._next_substep_s = _FIRST_SUBSTEP_S
        self._coefficients: dict[float, StepCoefficients] = {}
        self._substeps = 0

    # ----------------------------------------------------------------- constructors
    @classmethod
    def growth_only_from_gaussian(cls, parameters: KineticParameters | None = None,
                                  grid: GridOptions | None = None, *,
                                  mean_radius_nm: float = 1.2, std_radius_nm: float = 0.1,
                                  concentration_molar: float = 1e-5) -> "ReactionState":
        """Growth-only flask (S6.14/S6.15) holding a Gaussian batch, as in Fig. S6.2."""
        mean = _check_real("mean_radius_nm", mean_radius_nm)
        std = _check_real("std_radius_nm", std_radius_nm)
        conc = _check_real("concentration_molar", concentration_molar)
        if std <= 0 or mean <= 0 or conc <= 0:
            raise ValueError("mean_radius_nm, std_radius_nm and concentration_molar must be > 0, "
                             f"got {mean!r}, {std!r}, {conc!r}")
        options = grid if grid is not None else GridOptions()
        centres_nm = RadiusGrid(options).centres_m / _NANOMETRE
        # Cut at ±6σ: exact zeros outside the batch keep the fast, empty small-radius
        # edges of S6.15 from limiting the step.
        offsets = (centres_nm - mean) / std
        shape = np.where(np.abs(offsets) <= 6.0, np.exp(-0.5 * offsets ** 2), 0.0)
        shape[:RadiusGrid(options).first_active_cell] = 0.0
        if shape.sum() == 0:
            raise ValueError(f"mean_radius_nm={mean!r} puts the batch outside the grid")
        width_m = RadiusGrid(options).cell_width_m
        number = conc * _LITRE_PER_M3 * AVOGADRO_PER_MOL
        return cls(parameters, options, growth_only=True,
                   initial_distribution_per_m4=shape * number / (shape.sum() * width_m))

    # ---------------------------------------------------------------------- actions
    def add_precursor(self, concentration_molar: float, dilution: float = 1.0) -> None:
        """Inject precursor: everything present × ``dilution`` (<= 1), then [P] += concentration.

        Args:
            concentration_molar: precursor added, in mol/L of the final volume.
            dilution: factor (0, 1] by which the added volume dilutes what was there.
        """
        conc = _check_real("concentration_molar", concentration_molar)
        dil = _check_real("dilution", dilution)
        if conc < 0:
            raise ValueError(f"concentration_molar must be >= 0, got {conc!r}")
        if not 0 < dil <= 1:
            raise ValueError(f"dilution must be in (0, 1], got {dil!r}")
        added = conc * _LITRE_PER_M3
        self._c *= dil
        self._monomer *= dil
        self._precursor = self._precursor * dil + added
        self._material_added = self._material_added * dil + added
        self._next_substep_s = _FIRST_SUBSTEP_S

    def step(self, dt_s: float, temperature_c: float) -> None:
        """Advance by ``dt_s`` seconds at constant ``temperature_c`` (°C).

        Sub-steps adaptively: Courant number <= 0.9 on the growth fluxes, bounded change
        of the nucleation rate (weighted by its share of the monomer budget) and k1·dt <= 0.5.
        """
        dt = _check_real("dt_s", dt_s)
        if dt < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt!r}")
        coefficients = self._coefficients_at(_check_temperature_c("temperature_c", temperature_c))
        end_time = self._time_s + dt
        remaining = dt
        while remaining > 0.0:
            proposal = min(self._next_substep_s, _MAX_SUBSTEP_S)
            final = proposal >= remaining * (1.0 - 1e-12)
            trial_dt = remaining if final else proposal
            outcome = TrialStep(self._c, self._supersaturation(), self._precursor, coefficients,
                                self._grid, self._params, trial_dt
                                ).solve(self._nucleation_tolerance)
            if outcome is None or outcome.error_ratio > 1.0:
                ratio = 10.0 if outcome is None else outcome.error_ratio
                self._next_substep_s = trial_dt * max(0.1, 0.8 / ratio)
                if self._next_substep_s < _SMALLEST_SUBSTEP_S:
                    raise RuntimeError(f"kinetics sub-step underflow at t = {self._time_s} s "
                                       f"(T = {temperature_c} °C)")
                continue
            self._c = outcome.distribution_per_m4
            self._monomer = outcome.monomer_mol_per_m3
            self._precursor = outcome.precursor_mol_per_m3
            self._substeps += 1
            suggestion = trial_dt * min(2.0, 0.9 / max(outcome.error_ratio, 1e-12))
            if final:
                remaining = 0.0
                self._next_substep_s = max(self._next_substep_s if proposal > trial_dt else 0.0,
                                           suggestion)
            else:
                self._time_s += trial_dt
                remaining -= trial_dt
                self._next_substep_s = suggestion
        self._time_s = float(end_time)

    def copy(self) -> "ReactionState":
        """An independent snapshot of this state."""
        duplicate = _copy.copy(self)
        duplicate._c = self._c.copy()
        duplicate._coefficients = dict(self._coefficients)
        return duplicate

    # ------------------------------------------------------------------- internals
    def _coefficients_at(self, temperature_c: float) -> StepCoefficients:
        cached = self._coefficients.get(temperature_c)
        if cached is None:
            if len(self._coefficients) > 64:
                self._coefficients.clear()
            cached = StepCoefficients.build(self._params, self._grid, temperature_c,
                                            self._growth_only)
            self._coefficients[temperature_c] = cached
        return cached

    def _supersaturation(self) -> float:
        return max(self._monomer, 0.0) / self._params.solubility_mol_per_m3

    def _nanocrystal_mol_per_m3(self) -> float:
        cell_mol = (4.0 / 3.0 * math.pi * self._grid.active_centres_m ** 3
                    / self._params.molar_volume_m3_per_mol)
        return float(self._c @ cell_mol) * self._grid.cell_width_m

    def _full(self, active: np.ndarray) -> np.ndarray:
        return np.concatenate((np.zeros(self._first_active), active))

    # ------------------------------------------------------------------ read-outs
    @property
    def parameters(self) -> KineticParameters:
        return self._params

    @property
    def growth_only(self) -> bool:
        return self._growth_only

    @property
    def time_s(self) -> float:
        """Reaction time advanced so far (s)."""
        return self._time_s

    @property
    def next_substep_s(self) -> float:
        """The sub-step (s) the step controller would try next: how long the state may be left
        alone by a caller that steps it coarsely without losing accuracy to the temperature."""
        return min(self._next_substep_s, _MAX_SUBSTEP_S)

    @property
    def substeps(self) -> int:
        """Number of accepted internal sub-steps so far (a cost figure)."""
        return self._substeps

    @property
    def radius_nm(self) -> np.ndarray:
        """Cell centres (nm), the whole 0-4 nm domain."""
        return self._grid.centres_m / _NANOMETRE

    @property
    def cell_width_nm(self) -> float:
        return self._grid.cell_width_m / _NANOMETRE

    @property
    def distribution_per_m4(self) -> np.ndarray:
        """c(r) of S6.2 at the cell centres (nanocrystals per m³ per m of radius)."""
        return self._full(self._c)

    @property
    def number_density_per_m3(self) -> np.ndarray:
        """Nanocrystals per m³ in each cell: c(r)·Δr."""
        return self._full(self._c) * self._grid.cell_width_m

    @property
    def mean_radius_nm(self) -> float:
        """Number-weighted mean radius (nm); nan without nanocrystals."""
        total = self._c.sum()
        if total <= 0:
            return math.nan
        return float(self._c @ self._grid.active_centres_m / total) / _NANOMETRE

    @property
    def std_radius_nm(self) -> float:
        """Number-weighted standard deviation of the radius (nm); nan without nanocrystals."""
        total = self._c.sum()
        if total <= 0:
            return math.nan
        r = self._grid.active_centres_m
        mean = self._c @ r / total
        return math.sqrt(max(float(self._c @ (r - mean) ** 2 / total), 0.0)) / _NANOMETRE

    @property
    def concentration_molar(self) -> float:
        """Nanocrystal concentration (mol/L)."""
        return float(self._c.sum()) * self._grid.cell_width_m / AVOGADRO_PER_MOL / _LITRE_PER_M3

    @property
    def nanocrystal_material_molar(self) -> float:
        """Monomer units held in nanocrystals (mol/L), S6.9 divided by N_A."""
        return self._nanocrystal_mol_per_m3() / _LITRE_PER_M3

    @property
    def yield_fraction(self) -> float:
        """Fraction of all precursor ever added that sits in nanocrystals (0 before injection)."""
        if self._material_added <= 0:
            return 0.0
        return self._nanocrystal_mol_per_m3() / self._material_added

    @property
    def supersaturation(self) -> float:
        """S = [M]/[M]0."""
        return self._supersaturation()

    @property
    def precursor_molar(self) -> float:
        return self._precursor / _LITRE_PER_M3

    @property
    def monomer_molar(self) -> float:
        return self._monomer / _LITRE_PER_M3

    @property
    def material_balance_error(self) -> float:
        """(precursor + monomer + nanocrystals - material added) / material added; 0 is exact."""
        if self._material_added <= 0:
            return 0.0
        held = self._precursor + self._monomer + self._nanocrystal_mol_per_m3()
        return (held - self._material_added) / self._material_added


# --------------------------------------------------------------------------- pure function
@dataclass(frozen=True)
class SynthesisResult:
    """Time traces of :func:`simulate_synthesis` (arrays aligned with ``times_s``).

    ``distributions`` maps each requested distribution time (s) to the number density per
    cell (1/m³) on ``radius_nm``; ``material_balance_error`` is the final relative error of
    precursor + monomer + nanocrystal material.
    """

    times_s: np.ndarray
    mean_radius_nm: np.ndarray
    std_radius_nm: np.ndarray
    concentration_molar: np.ndarray
    yield_fraction: np.ndarray
    supersaturation: np.ndarray
    precursor_molar: np.ndarray
    radius_nm: np.ndarray
    cell_width_nm: float
    distributions: dict
    material_balance_error: float
    substeps: int


def _default_sample_times(t_end_s: float) -> np.ndarray:
    if t_end_s == 0:
        return np.array([0.0])
    return np.concatenate(([0.0], np.geomspace(min(0.1, t_end_s), t_end_s, 200)))


def _check_times(name: str, values, t_end_s: float) -> np.ndarray:
    times = np.atleast_1d(np.asarray(values, dtype=float))
    if times.ndim != 1 or not np.all(np.isfinite(times)):
        raise ValueError(f"{name} must be a 1-D sequence of finite times, got {values!r}")
    if np.any(times < 0) or np.any(times > t_end_s):
        raise ValueError(f"{name} must lie in [0, t_end_s={t_end_s}], got {values!r}")
    return times


def simulate_synthesis(t_end_s: float, growth_exponent: float = DEFAULT_GROWTH_EXPONENT,
                       temperature_c: float | Callable[[float], float] = 260.0,
                       sample_times_s=None, distribution_times_s=(), n_cells: int = 502,
                       **parameters) -> SynthesisResult:
    """Run a hot-injection synthesis (Fig. 5 of seed 000): inject [P]i at t = 0 and react.

    Args:
        t_end_s: duration (s), e.g. 2276 for the §S.6.6 snapshots.
        growth_exponent: n of S6.16.
        temperature_c: constant °C, or a callable t_s -> °C (a temperature program,
            sampled at the middle of chunks of at most 1 s).
        sample_times_s: times (s) of the returned traces; default 0 plus 200 log-spaced.
        distribution_times_s: times (s) at which to keep the whole distribution.
        n_cells: radius cells on 0-4 nm.
        **parameters: any other :class:`KineticParameters` field, by name.

    Raises:
        ValueError/TypeError naming the bad argument, before anything is computed.
    """
    t_end = _check_real("t_end_s", t_end_s)
    if t_end < 0:
        raise ValueError(f"t_end_s must be >= 0, got {t_end!r}")
    unknown = sorted(set(parameters) - set(KineticParameters.field_names()))
    if unknown:
        raise ValueError(f"unknown kinetic parameter(s) {unknown}; known: "
                         f"{', '.join(KineticParameters.field_names())}")
    if "growth_exponent" in parameters:
        raise ValueError("pass growth_exponent as its own argument")
    _check_real("growth_exponent", growth_exponent)
    params = KineticParameters(growth_exponent=growth_exponent, **parameters)
    grid = GridOptions(n_cells=n_cells)
    if callable(temperature_c):
        temperature_at = temperature_c
        max_chunk_s = 1.0
    else:
        constant = _check_temperature_c("temperature_c", temperature_c)
        temperature_at = lambda _t: constant  # noqa: E731
        max_chunk_s = math.inf
    samples = (_default_sample_times(t_end) if sample_times_s is None
               else _check_times("sample_times_s", sample_times_s, t_end))
    snapshots = _check_times("distribution_times_s", distribution_times_s, t_end)
    _check_temperature_c("temperature_c(0)", temperature_at(0.0))

    state = ReactionState(params, grid)
    state.add_precursor(params.precursor_initial_mol_per_m3 / _LITRE_PER_M3)
    stops = np.unique(np.concatenate((samples, snapshots, [t_end])))
    traces = {key: [] for key in ("mean_radius_nm", "std_radius_nm", "concentration_molar",
                                  "yield_fraction", "supersaturation", "precursor_molar")}
    at_stop = {}
    for stop in stops:
        while stop - state.time_s > 1e-9 * max(1.0, stop):
            chunk = min(stop - state.time_s, max_chunk_s)
            temperature = _check_temperature_c(
                "temperature_c(t)", temperature_at(state.time_s + 0.5 * chunk))
            state.step(chunk, temperature)
        at_stop[float(stop)] = {key: getattr(state, key) for key in traces}
        if np.any(snapshots == stop):
            at_stop[float(stop)]["distribution"] = state.number_density_per_m3
    return SynthesisResult(
        times_s=samples.copy(),
        **{key: np.array([at_stop[float(t)][key] for t in samples]) for key in traces},
        radius_nm=state.radius_nm, cell_width_nm=state.cell_width_nm,
        distributions={float(t): at_stop[float(t)]["distribution"] for t in snapshots},
        material_balance_error=state.material_balance_error, substeps=state.substeps)
