"""The nucleation chamber as a continuously stirred tank: its steady outlet composition.

Seed 002: "The reactor transforms the classical hot-injection approach into a continuous
process by separating nucleation and growth spatially between a very low volume nucleation
chamber and a larger volume growth oven."  In hot injection the cold precursor is shot into a
hot, stirred volume; the chamber makes that continuous: the two precursor lines meet in a small
stirred volume at T_nuc whose content is already reacting, so fresh monomer meets the clusters
and nanocrystals formed there before (the oven is a tube: plug flow).  The seed gives no mixing
data; the ideal stirred tank (CSTR: uniform content, exponential residence-time distribution
with mean τ = V/Q, micromixed) is our reading of "chamber".  simulate_plug uses it when
``FlowKineticParameters.chamber_stirred`` (off by default: what it does to seed 002's
statements is in docs/flow_reactor.md).

Its content c obeys dc/dt = (c_feed − c)/τ + r(c); :func:`stirred_tank_outlet` returns the
steady state (dc/dt = 0) the chamber reaches after start-up full of solvent (c = 0), which is
what the outlet carries into the oven.  Units: s, mol/L.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

#: Tank turnovers τ integrated per stretch while seeking the steady state, and the most stretches.
TURNOVERS_PER_STRETCH = 10.0
MAX_STRETCHES = 20
#: Steady when a stretch changes no entry by more than this fraction of the fed total.
STEADY_TOLERANCE = 1e-9


def stirred_tank_outlet(feed, residence_s: float, rates, *, rtol: float = 1e-8) -> np.ndarray:
    """Steady content (= outlet) of a stirred tank fed ``feed`` with mean residence ``residence_s``.

    Args:
        feed: composition fed (state vector, mol/L).
        residence_s: τ = V/Q (s); 0 passes the feed through.
        rates: ``rates(t, c)`` → dc/dt of the chemistry at the tank's temperature (mol/L/s).

    Integrates the tank from solvent (c = 0) in stretches of ``TURNOVERS_PER_STRETCH`` τ until a
    stretch changes no entry by more than ``STEADY_TOLERANCE`` of the fed total (RuntimeError
    after ``MAX_STRETCHES``: a tank that does not settle, e.g. oscillating nucleation bursts).
    """
    feed = np.asarray(feed, dtype=float)
    total = max(float(feed.sum()), 1e-30)
    if residence_s == 0 or total == 1e-30:
        return feed.copy()
    flush = 1.0 / residence_s

    def balance(t, content):
        return (feed - content) * flush + rates(t, content)

    content = np.zeros_like(feed)
    for _ in range(MAX_STRETCHES):
        result = solve_ivp(balance, (0.0, TURNOVERS_PER_STRETCH * residence_s), content,
                           method="LSODA", rtol=rtol, atol=1e-13 * total)
        if not result.success:
            raise RuntimeError(f"stirred-tank integration failed: {result.message}")
        change = np.max(np.abs(result.y[:, -1] - content)) / total
        content = result.y[:, -1]
        if change <= STEADY_TOLERANCE:
            return content
    raise RuntimeError(f"the stirred tank did not settle within "
                       f"{MAX_STRETCHES * TURNOVERS_PER_STRETCH:g} turnovers (τ = {residence_s:g} s)")
