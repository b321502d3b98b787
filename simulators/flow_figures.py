"""What seed 002 states about the flow reactor's clusters, measured on the pure plug chemistry.

Fig. 4: five MSC families (350-467 nm) isolated from the mixture at 350 °C nucleation and 4.5 s;
Fig. 1: at 14 s CdSe-437 only for nucleation temperatures 270-300 °C (growth at the same
temperature here); "MSCs can be observed at reaction times as short as 1.5 s, 4.5 s or 14 s"
(1.5 s: SAXS at 230 °C growth; 4.5 s: Fig. S2 at 260, 280 and 350 °C). Shares are of the fed Cd.
"""

from __future__ import annotations

from .flow_chemistry import FAMILIES, FAMILY_UNITS, simulate_plug
from .flow_reactor import FlowReactorModel

PRECURSOR_MOLAR = 0.01
_REACTOR = FlowReactorModel(lambda: 1.0, lambda: 280.0, lambda: 280.0)


def plug(nucleation_c: float, growth_c: float, reaction_time_s: float):
    """A plug after ``reaction_time_s`` in the default reactor (chamber's share of the volume)."""
    flow = (_REACTOR.chamber_volume_ml + _REACTOR.oven_volume_ml) / reaction_time_s * 60.0
    chamber, oven = _REACTOR.residence_times_s(flow)
    return simulate_plug(chamber, oven, nucleation_c, growth_c, PRECURSOR_MOLAR)


def family_share(composition, label: str) -> float:
    return composition.families[label] * FAMILY_UNITS[label] / PRECURSOR_MOLAR


def msc_share(composition) -> float:
    return sum(family_share(composition, label) for label in FAMILIES)


def flow_figures() -> dict:
    """The numbers of the seed's statements (shares of the fed Cd)."""
    hot = plug(350.0, 350.0, 4.5)
    at_14 = {t: family_share(plug(t, t, 14.0), "MSC-437") for t in range(240, 360, 10)}
    window = [share for t, share in at_14.items() if 270 <= t <= 300]
    outside = [share for t, share in at_14.items() if not 265 <= t <= 305]
    return {"families_at_350_4p5": sum(family_share(hot, f) >= 0.01 for f in FAMILIES),
            "cdse437_14s_window_min": min(window),
            "cdse437_14s_outside_max": max(outside),
            "msc_1p5s_230": msc_share(plug(230.0, 230.0, 1.5)),
            "msc_4p5s_min": min(msc_share(plug(t, t, 4.5)) for t in (260.0, 280.0, 350.0))}
