"""The simulated flask's synthesis on the pure models: §S.1.2 and the §S.5 double injection.

The population balance (:class:`~.kinetics.ReactionState`, :data:`~.kinetics_parameters.
SIMULATED_FLASK`) is driven by the liquid temperature of the pure thermal protocol
(:func:`~.thermal_protocol.run_protocol`), stepped every ``step_s`` at the mean liquid
temperature over the step, as :class:`~.world.World` steps it; injections dilute as
:meth:`~.world.World.deliver` does. No clock, no servers: the figures the seeds state
(§S.1.3 radius and concentration, the nucleation fraction of §S.3's 98 % rule, §S.5's
second set catching up) in seconds, for tests and benchmarks/paper_vs_simulator.py.
"""

from __future__ import annotations

import numpy as np

from .beamline import HOT_FLASK_VOLUME_ML
from .kinetics import ReactionState
from .kinetics_parameters import FLASK_GRID, SIMULATED_FLASK, KineticParameters
from .kinetics_rates import growth_rate_m_per_s
from .thermal_protocol import run_protocol
from .world import SyringeCharge

#: §S.5.1: piston B after 4 min; syringe B as the superfocusing dry run fills it for n >= 4
SECOND_DELAY_S = 240.0
SECOND_CHARGE = SyringeCharge(cd_molar=0.123)


def _deliver(state: ReactionState, volume_ml: float, charge: SyringeCharge) -> float:
    total = volume_ml + charge.volume_ml
    state.add_precursor(charge.cd_molar * charge.volume_ml / total, dilution=volume_ml / total)
    return total


def _t98(times: np.ndarray, values: np.ndarray) -> float:
    return float(times[np.argmax(values >= 0.98 * values[-1])])


def run_synthesis(duration_s: float = 7200.0, *,
                  parameters: KineticParameters = SIMULATED_FLASK, step_s: float = 0.5) -> dict:
    """§S.1.2 on the pure models: final radius (nm), concentration (mol/L), yield, and the
    nucleation fraction t98(concentration)/t98(yield) of §S.3 (98 % of the final values)."""
    trace = run_protocol(duration_s)
    after = trace.time_s >= 0
    times, liquid = trace.time_s[after], trace.liquid_c[after]
    state = ReactionState(parameters, FLASK_GRID)
    _deliver(state, HOT_FLASK_VOLUME_ML, SyringeCharge())
    edges = np.arange(0.0, duration_s + step_s / 2, step_s)
    mean_t = np.interp(0.5 * (edges[:-1] + edges[1:]), times, liquid)
    conc, yields = [], []
    for temperature in mean_t:
        state.step(step_s, float(temperature))
        conc.append(state.concentration_molar)
        yields.append(state.yield_fraction)
    t = edges[1:]
    return {"mean_radius_nm": state.mean_radius_nm,
            "concentration_molar": state.concentration_molar,
            "yield_fraction": state.yield_fraction,
            "nucleation_fraction": _t98(t, np.array(conc)) / _t98(t, np.array(yields))}


def run_double_injection(after_b_s: float = 600.0, *,
                         parameters: KineticParameters = SIMULATED_FLASK,
                         step_s: float = 0.5, delay_s: float = SECOND_DELAY_S,
                         charge_b: SyringeCharge = SECOND_CHARGE) -> dict:
    """§S.5 on the pure models: the two sets' number-weighted mean radii (nm) after piston B.

    The sets are told apart by the growth characteristic from the smallest crystal of the
    first set at the second injection (characteristics of S6.2 never cross): ``times_s``
    after B, ``first_nm``, ``second_nm``, and ``second_fraction`` (second set's share of
    the nanocrystals at the end).
    """
    trace = run_protocol(delay_s + after_b_s, second=(delay_s, charge_b))
    after = trace.time_s >= 0
    times, liquid = trace.time_s[after], trace.liquid_c[after]
    state = ReactionState(parameters, FLASK_GRID)
    volume = _deliver(state, HOT_FLASK_VOLUME_ML, SyringeCharge())
    radius_m = state.radius_nm * 1e-9
    boundary_m, rows = None, []
    for start in np.arange(0.0, delay_s + after_b_s, step_s):
        if boundary_m is None and start >= delay_s:
            counts = state.number_density_per_m3
            smallest = radius_m[np.argmax(counts > 1e-3 * counts.max())]
            boundary_m = smallest - 0.5e-9 * state.cell_width_nm
            volume = _deliver(state, volume, charge_b)
        temperature = float(np.interp(start + step_s / 2, times, liquid))
        if boundary_m is not None:
            boundary_m += step_s * float(growth_rate_m_per_s(
                boundary_m, state.supersaturation, parameters, temperature + 273.15))
        state.step(step_s, temperature)
        if boundary_m is not None:
            counts = state.number_density_per_m3
            first, second = radius_m >= boundary_m, radius_m < boundary_m
            rows.append((start + step_s - delay_s,
                         counts[first] @ radius_m[first] / counts[first].sum() * 1e9,
                         counts[second] @ radius_m[second]
                         / max(counts[second].sum(), 1e-300) * 1e9,
                         counts[second].sum() / counts.sum()))
    table = np.array(rows)
    return {"times_s": table[:, 0], "first_nm": table[:, 1], "second_nm": table[:, 2],
            "second_fraction": float(table[-1, 3])}
