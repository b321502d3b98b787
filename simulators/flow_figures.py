"""What seed 002 states about the flow reactor's clusters, measured on the pure plug chemistry.

Each entry of :data:`STATEMENTS` is one statement of Palencia et al. (seed 002) with the bound
the simulator must meet; :func:`flow_figures` measures them on :func:`~ncsynth.simulators.
flow_chemistry.simulate_plug` in the default reactor (chamber 1/11 of the reaction time,
0.01 mol/L of Cd, growth at the nucleation temperature unless said).  Shares are fractions of
the fed Cd; a family "is seen" when it holds >= 1 % of it.  benchmarks/paper_vs_simulator.py
prints the table and tests/test_flow_chemistry.py asserts every bound.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..analysis.optical import exciton_wavelength_nm
from .flow_chemistry import FAMILIES, FAMILY_UNITS, simulate_plug
from .flow_outlet import FlowReactorModel

PRECURSOR_MOLAR = 0.01
#: A family holding at least this share of the fed Cd counts as present.
SEEN_SHARE = 0.01
_REACTOR = FlowReactorModel(lambda: 1.0, lambda: 280.0, lambda: 280.0)


class Statement(NamedTuple):
    key: str
    label: str     # where the seed says it
    paper: str     # what the seed says (as printed)
    low: float | None
    high: float | None
    unit: str = ""


#: The seed's statements on the flow reactor, in the order the paper makes them.
STATEMENTS = (
    Statement("cdse437_14s_window_min", "Fig.1: CdSe-437 at 14 s, T 270-300 C (min share)",
              "seen", 0.10, None),
    Statement("msc_14s_outside_max", "Fig.1: MSCs at 14 s, T 240-260/310-350 C (max)",
              "none", None, 0.05),
    Statement("cdse437_growth_rises", "Fig.1: CdSe-437 rises with growth T (T_nuc 280, 14 s)",
              "rises", 3, 3, "/3"),
    Statement("nc_over_msc_14s_mild_min", "Fig.1: T<=260 C, 14 s: NCs rather than MSCs",
              ">1", 2.0, None, "x"),
    Statement("msc_4p5s_min", "Fig.S2: MSCs at 4.5 s, 260/280/350 C (min share)", "seen",
              0.05, None),
    Statement("nc_exciton_280_4p5_nm", "Text: NC exciton 280 C, 4.5 s", "490", 480.0, 500.0,
              "nm"),
    Statement("nc_exciton_280_14_nm", "Text: NC exciton 280 C, 14 s", "527", 517.0, 537.0,
              "nm"),
    Statement("nc_diameter_350_7p6_nm", "TEM: NC diameter 350 C, 7.6 s", "3.6", 3.3, 3.9,
              "nm"),
    Statement("msc_1p5s_230", "Fig.2: MSCs at 1.5 s, 230 C (share)", "seen", SEEN_SHARE, None),
    Statement("families_at_350_4p5", "Fig.4: families seen at 350 C, 4.5 s", "5", 5, 5),
    Statement("fig2_dominant_1p5s", "Fig.2: 1.5 s, oven 230: MSC <=230 C, NC >=250 C",
              "9/9", 9, 9, "/9"),
    Statement("cdse437_14s_below_diagonal_max", "Fig.1: CdSe-437 14 s, T_nuc 310-350/oven 270-300",
              "none", None, 0.05),
    Statement("fig2_steps_1p5s", "Fig.2: 1.5 s, oven 230: 403, 437, then 465 shoulder",
              "8/8", 8, 8, "/8"),
)
#: Families SAXS resolves (seed 002: "sizes below ~1.6 nm could not be accessed"), beside NCs.
SAXS_FAMILIES = ("MSC-403", "MSC-437", "MSC-465")
#: Fig. 2's nucleation temperatures (°C) and what dominates there: 240 °C, where the seed's
#: r = 1.02 nm shoulder is "fully pronounced" beside CdSe-437, is left out.
FIG2_DOMINANT = {**{t: "MSC" for t in (190, 200, 210, 220, 230)},
                 **{t: "NC" for t in (250, 260, 270, 280)}}
#: Fig. 2's quantized steps: the largest SAXS-visible family by nucleation temperature (°C) —
#: r = 0.87 nm (CdSe-403, d 1.74 nm) at 190 °C, 0.94 nm (CdSe-437) from 200 °C, "the mean
#: radius does not change until 230 °C".
FIG2_LARGEST_FAMILY = {190: "MSC-403", 200: "MSC-437", 210: "MSC-437", 220: "MSC-437"}
#: The r = 1.02 nm shoulder (CdSe-465, d 2.04 nm) "formed at 230 °C ... fully pronounced at
#: 240 °C": CdSe-465 below this fraction of CdSe-437's Cd at 200-220 °C, at least it at 240 °C.
FIG2_SHOULDER_RATIO = 0.5


def plug(nucleation_c: float, growth_c: float, reaction_time_s: float, parameters=None):
    """A plug after ``reaction_time_s`` in the default reactor (chamber's share of the volume);
    ``parameters``: FlowKineticParameters, None for the defaults."""
    flow = (_REACTOR.chamber_volume_ml + _REACTOR.oven_volume_ml) / reaction_time_s * 60.0
    chamber, oven = _REACTOR.residence_times_s(flow)
    return simulate_plug(chamber, oven, nucleation_c, growth_c, PRECURSOR_MOLAR,
                         parameters=parameters)


def family_share(composition, label: str) -> float:
    """Fraction of the fed Cd held in family ``label``."""
    return composition.families[label] * FAMILY_UNITS[label] / PRECURSOR_MOLAR


def msc_share(composition) -> float:
    """Fraction of the fed Cd held in all MSC families."""
    return sum(family_share(composition, label) for label in FAMILIES)


def nc_share(composition) -> float:
    """Fraction of the fed Cd held in NCs."""
    return composition.nc_units_molar / PRECURSOR_MOLAR


def saxs_dominant(composition) -> str:
    """"NC" if the NCs hold more of a plug's Cd (∝ volume) than its largest SAXS-visible family."""
    largest_family = max(family_share(composition, label) for label in SAXS_FAMILIES)
    return "NC" if nc_share(composition) > largest_family else "MSC"


def fig2_steps(oven_c: float = 230.0, parameters=None) -> int:
    """How many of Fig. 2's 8 quantized-growth checks hold at 1.5 s (FIG2_LARGEST_FAMILY: 4,
    the CdSe-465 shoulder absent at 200/210/220 °C and pronounced at 240 °C: 4)."""
    plugs = {t: plug(t, oven_c, 1.5, parameters) for t in (190, 200, 210, 220, 240)}
    largest = sum(max(SAXS_FAMILIES, key=lambda f: family_share(plugs[t], f)) == family
                  for t, family in FIG2_LARGEST_FAMILY.items())
    ratio = {t: family_share(c, "MSC-465") / family_share(c, "MSC-437") for t, c in plugs.items()}
    shoulder = sum(ratio[t] < FIG2_SHOULDER_RATIO for t in (200, 210, 220))
    return int(largest + shoulder + (ratio[240] >= FIG2_SHOULDER_RATIO))


def flow_figures(parameters=None) -> dict:
    """The simulator's value for every key of :data:`STATEMENTS` (``parameters``:
    FlowKineticParameters, None for the defaults)."""
    at = functools.partial(plug, parameters=parameters)
    at_14 = {t: at(t, t, 14.0) for t in range(240, 360, 10)}
    window = [family_share(c, "MSC-437") for t, c in at_14.items() if 270 <= t <= 300]
    outside = [msc_share(c) for t, c in at_14.items() if not 265 <= t <= 305]
    mild = [nc_share(c) / msc_share(c) for t, c in at_14.items() if t <= 260]
    rising = np.diff([family_share(at(280.0, g, 14.0), "MSC-437") for g in (250, 260, 270, 280)])
    at_280 = {t: at(280.0, 280.0, t) for t in (4.5, 14.0)}
    hot = at(350.0, 350.0, 4.5)
    return {"cdse437_14s_window_min": min(window),
            "msc_14s_outside_max": max(outside),
            "cdse437_growth_rises": int(np.sum(rising > 0)),
            "nc_over_msc_14s_mild_min": min(mild),
            "msc_4p5s_min": min(msc_share(c) for c in (at(260.0, 260.0, 4.5), at_280[4.5], hot)),
            **{f"nc_exciton_280_{name}_nm": float(exciton_wavelength_nm(at_280[t].nc_diameter_nm))
               for name, t in (("4p5", 4.5), ("14", 14.0))},
            "nc_diameter_350_7p6_nm": at(350.0, 350.0, 7.6).nc_diameter_nm,
            "msc_1p5s_230": msc_share(at(230.0, 230.0, 1.5)),
            "families_at_350_4p5": sum(family_share(hot, f) >= SEEN_SHARE for f in FAMILIES),
            "fig2_dominant_1p5s": sum(saxs_dominant(at(t, 230.0, 1.5)) == seen
                                      for t, seen in FIG2_DOMINANT.items()),
            "cdse437_14s_below_diagonal_max": max(
                family_share(at(t_nuc, t_growth, 14.0), "MSC-437")
                for t_nuc in range(310, 360, 10) for t_growth in range(270, 310, 10)),
            "fig2_steps_1p5s": fig2_steps(parameters=parameters)}
