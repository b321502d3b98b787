"""The flow reactor's steady-state points and their checks, without bluesky or ophyd (seed 002).

:class:`ReactorSpec` (volumes in mL, limits), :class:`FlowPoint` (zone temperatures in °C,
reaction time in s), :func:`grid_points` (the serpentine nucleation × growth grid) and
:func:`check_points` (each point against the zones' and pumps' limits, ValueError naming
what is wrong). The plans of :mod:`ncsynth.plans.flow` call them before anything moves; the
``ncsynth flow dry-run`` command calls them on its arguments before it imports the plans'
libraries (:mod:`ncsynth.command_line`).

Flow: the total flow Q (mL/min) for a reaction time τ (s) is Q = 60·(V_chamber + V_oven)/τ,
split equally between the pumps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple, Sequence

from ncsynth.validation import is_finite_number

#: The pumps of the ``[flow]`` configuration (they share the total flow equally).
PUMPS = ("pump_cd", "pump_se")
#: Default grid (°C): nucleation 240–300, growth 240–300 with growth <= nucleation: 28 points.
DEFAULT_GRID = {"nucleation_c": tuple(range(240, 301, 10)), "growth_c": tuple(range(240, 301, 10))}
#: Default reaction time, s (seed Fig. 1).
DEFAULT_RESIDENCE_S = 14.0


def _positive(value) -> bool:
    return is_finite_number(value) and value > 0


@dataclass(frozen=True)
class ReactorSpec:
    """What the plans need to know of the reactor: volumes (mL) and limits.

    ``chamber_volume_ml`` + ``oven_volume_ml`` is the reaction volume (residence time =
    reaction volume / flow); ``transfer_volume_ml`` the line to the flow cells (flushed with the
    rest).  ``max_rate_ml_min``: largest rate of one pump (its syringe at the pump's plunger-speed
    limit); ``min_temperature_c``: lowest zone setpoint a point may ask for.
    """

    chamber_volume_ml: float = 0.05
    oven_volume_ml: float = 0.5
    transfer_volume_ml: float = 0.1
    max_rate_ml_min: float = 28.0
    min_temperature_c: float = 25.0

    @classmethod
    def from_config(cls, flow: dict) -> "ReactorSpec":
        """The reactor of a configuration's ``[flow]`` sections: ``[flow.reactor]``, and the
        smaller of the pumps' ``max_rate_ml_min``."""
        return cls(**flow["reactor"], max_rate_ml_min=min(flow[key]["max_rate_ml_min"]
                                                          for key in PUMPS))

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name != "min_temperature_c" and not _positive(value):
                raise ValueError(f"ReactorSpec.{name} must be a positive number, got {value!r}")
        if not is_finite_number(self.min_temperature_c):
            raise ValueError(f"ReactorSpec.min_temperature_c must be finite, "
                             f"got {self.min_temperature_c!r}")

    @property
    def reaction_volume_ml(self) -> float:
        return self.chamber_volume_ml + self.oven_volume_ml

    @property
    def total_volume_ml(self) -> float:
        return self.reaction_volume_ml + self.transfer_volume_ml

    def flow_ml_min(self, residence_s: float) -> float:
        """Total flow (mL/min) giving ``residence_s`` of reaction time (chamber + oven)."""
        return 60.0 * self.reaction_volume_ml / residence_s


@dataclass(frozen=True)
class FlowPoint:
    """One steady-state condition: zone temperatures (°C) and reaction time (s)."""

    nucleation_c: float
    growth_c: float
    residence_s: float


class ZoneLimit(NamedTuple):
    """What :func:`check_point` reads of a heating zone (a
    :class:`~ncsynth.devices.HeatingController` has both): its name and highest setpoint, °C."""

    name: str
    max_temperature_c: float


def check_point(point: FlowPoint, chamber, oven, reactor: ReactorSpec, n_pumps: int) -> FlowPoint:
    """``point`` if the zones and pumps can run it, else ValueError naming what is wrong."""
    for name, value, zone in (("nucleation_c", point.nucleation_c, chamber),
                              ("growth_c", point.growth_c, oven)):
        highest = getattr(zone, "max_temperature_c", math.inf)
        if not is_finite_number(value) or not reactor.min_temperature_c <= value <= highest:
            raise ValueError(f"{name}={value!r} °C is outside the limits of {zone.name}: "
                             f"{reactor.min_temperature_c:g} to {highest:g} °C")
    if point.growth_c > point.nucleation_c:
        raise ValueError(f"growth_c={point.growth_c!r} °C must not exceed nucleation_c="
                         f"{point.nucleation_c!r} °C (the oven grows what the chamber nucleated)")
    if not _positive(point.residence_s):
        raise ValueError(f"residence_s must be a positive number of seconds, got "
                         f"{point.residence_s!r}")
    per_pump = reactor.flow_ml_min(point.residence_s) / n_pumps
    if per_pump > reactor.max_rate_ml_min:
        raise ValueError(f"residence_s={point.residence_s!r} needs {per_pump:.3g} mL/min per pump, "
                         f"above max_rate_ml_min={reactor.max_rate_ml_min:g}")
    return point


def check_points(points: Sequence[FlowPoint], chamber, oven, reactor: ReactorSpec,
                 n_pumps: int) -> list[FlowPoint]:
    """Every point through :func:`check_point`; ValueError if there is none."""
    if not points:
        raise ValueError("no point to measure: check the temperatures (growth_c <= nucleation_c)")
    return [check_point(p, chamber, oven, reactor, n_pumps) for p in points]


ABSOLUTE_ZERO_C = -273.15


def _temperatures(name: str, values) -> list[float]:
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of temperatures (°C), got {values!r}") from None
    if not all(math.isfinite(v) and v > ABSOLUTE_ZERO_C for v in values):
        raise ValueError(f"{name} must be finite temperatures above absolute zero "
                         f"({ABSOLUTE_ZERO_C} °C), got {values!r}")
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{name} must hold distinct temperatures, got {values!r}")
    return values


def grid_points(nucleation_c: Sequence[float], growth_c: Sequence[float],
                residence_s: float) -> list[FlowPoint]:
    """Every (nucleation, growth) pair with growth <= nucleation, in acquisition order.

    Nucleation temperatures ascending; the growth temperatures of successive rows alternate
    between ascending and descending (serpentine), so the oven moves by one step between
    points and the chamber by one step between rows.
    """
    rows = sorted(_temperatures("nucleation_c", nucleation_c))
    columns = sorted(_temperatures("growth_c", growth_c))
    points = []
    for k, nucleation in enumerate(rows):
        row = [g for g in columns if g <= nucleation]
        for growth in (row if k % 2 == 0 else reversed(row)):
            points.append(FlowPoint(nucleation, growth, residence_s))
    return points
