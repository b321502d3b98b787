"""The plug's temperature in the growth oven: relaxation from the chamber's temperature.

A plug leaves the (well-mixed) nucleation chamber at T_nuc and, in the oven's tube, relaxes to
the oven's temperature, T(t) = T_g + (T_n − T_g)·exp(−t/τ) (laminar flow: τ = D²/(4·Nu·α),
``FlowKineticParameters.oven_heat_time_s``).  :func:`oven_entry_segments` cuts that profile into
constant-temperature pieces for :func:`~ncsynth.simulators.flow_chemistry.simulate_plug`.
Units: s, °C.
"""
from __future__ import annotations

import math

import numpy as np

#: Largest temperature change (°C) within one constant-temperature segment of the oven entry.
HEATING_STEP_C = 1.0


def oven_entry_segments(oven_s, nucleation_c, growth_c, heat_time_s):
    """(duration s, temperature °C) segments of the oven residence under the plug's relaxation.

    T(t) = T_g + (T_n − T_g)·exp(−t/τ) is cut where it has moved by ``HEATING_STEP_C``; each
    segment runs at its mean temperature, T_g + ΔT·τ/(t_b − t_a)·(e^(−t_a/τ) − e^(−t_b/τ)).
    """
    change = nucleation_c - growth_c
    if oven_s == 0 or change == 0 or heat_time_s == 0:
        return [(oven_s, growth_c)]
    left = math.exp(-oven_s / heat_time_s)  # the fraction of ΔT left at the oven's end
    count = max(1, math.ceil(abs(change) * (1.0 - left) / HEATING_STEP_C))
    fractions = np.linspace(1.0, left, count + 1)
    edges = -heat_time_s * np.log(fractions)
    edges[-1] = oven_s
    return [(b - a, growth_c + change * (fa - fb) * heat_time_s / (b - a))
            for a, b, fa, fb in zip(edges[:-1], edges[1:], fractions[:-1], fractions[1:])]
