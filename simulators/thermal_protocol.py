"""The §S.1.2 temperature protocol run on the pure thermal models, and the figures the paper gives.

Seed 000 §S.1.2: heat to 290 °C, inject 3.56 g of Cd precursor, set 260 °C; "the temperature,
which had dropped to 230 °C after the injection [...] reached this temperature within 60
seconds [...] oscillated around 260 °C with an amplitude of 6.5 °C and a period of 195 s".

:func:`run_protocol` steps a :class:`~.thermal.ControllerModel` and a
:class:`~.thermal.FlaskThermalModel` by ``dt_s`` as the world does (controller first), and
injects the way the dry run's plan does: once the reading has stayed within ``tolerance_c``
of 290 °C for ``settle_s`` (the heater device's settle), plus ``background_s`` of frames.
:func:`trace_figures` measures the numbers the paper states from the thermocouple trace.
No clock, no world, no servers: a 2-hour trace takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .thermal import ControllerModel, FlaskThermalModel
from .world import SyringeCharge

INJECTION_C, GROWTH_C = 290.0, 260.0


@dataclass(frozen=True)
class ProtocolTrace:
    """Times (s from the injection, negative before it) and temperatures (°C) every ``dt_s``."""

    time_s: np.ndarray
    thermocouple_c: np.ndarray
    liquid_c: np.ndarray
    injected_at_s: float           # world time of the injection, s from the start at ambient


def run_protocol(after_s: float = 7200.0, *, dt_s: float = 0.05, tolerance_c: float = 3.0,
                 settle_s: float = 20.0, background_s: float = 5.0, flask=None,
                 controller=None, charge: SyringeCharge = SyringeCharge(),
                 second: tuple[float, SyringeCharge] | None = None) -> ProtocolTrace:
    """Preheat from ambient to 290 °C, inject ``charge`` once settled, hold 260 °C ``after_s``.

    ``second = (delay_s, charge_b)`` empties a second syringe ``delay_s`` after the first (§S.5).
    """
    flask = flask if flask is not None else FlaskThermalModel()
    controller = controller if controller is not None else ControllerModel()
    world = SimpleNamespace(flask=flask, controller=controller)
    controller.set_target_setpoint(INJECTION_C)
    times, readings, liquid = [], [], []
    t, inside_since, injected_at = 0.0, None, None
    while injected_at is None or t - injected_at < after_s:
        controller.step(dt_s, world)
        flask.step(dt_s, world)
        t += dt_s
        times.append(t)
        readings.append(flask.thermocouple_c)
        liquid.append(flask.temperature_c)
        if injected_at is not None:
            if second is not None and t - injected_at >= second[0]:
                flask.add_liquid(mass_g=second[1].mass_g, temperature_c=second[1].temperature_c,
                                 volume_ml=second[1].volume_ml)
                second = None
            continue
        if abs(flask.thermocouple_c - INJECTION_C) > tolerance_c:
            inside_since = None
        elif inside_since is None:
            inside_since = t
        elif t - inside_since >= settle_s + background_s:
            flask.add_liquid(mass_g=charge.mass_g, temperature_c=charge.temperature_c,
                             volume_ml=charge.volume_ml)
            controller.set_target_setpoint(GROWTH_C)
            injected_at = t
        if t > 4 * 3600.0:
            raise RuntimeError("the flask never settled at 290 °C within 4 h")
    return ProtocolTrace(np.array(times) - injected_at, np.array(readings), np.array(liquid),
                         injected_at)


def trace_figures(trace: ProtocolTrace, cycle_from_s: float = 1200.0) -> dict:
    """The §S.1.2 numbers of a trace (°C, s): preheat peak, dip, recovery, cycle.

    ``preheat_max_c`` highest reading before the injection; ``dip_c`` lowest within 60 s
    after it; ``recovery_s`` first reading >= 260 °C after the dip; ``first_peak_c`` the
    highest reading before the loop next falls below 260 °C; ``amplitude_c`` (half the
    peak-to-peak), ``period_s`` (mean spacing of upward crossings of the mid-level) and
    ``mean_c`` of the cycle after ``cycle_from_s``.
    """
    t, y = trace.time_s, trace.thermocouple_c
    before, after = t < 0, t >= 0
    early = after & (t <= 60.0)
    low = int(np.flatnonzero(early)[np.argmin(y[early])])
    back = low + int(np.argmax(y[low:] >= GROWTH_C))
    below_again = back + int(np.argmax(y[back:] < GROWTH_C))
    cycle = t >= cycle_from_s
    tc, yc = t[cycle], y[cycle]
    middle = 0.5 * (yc.max() + yc.min())
    ups = tc[1:][(yc[:-1] < middle) & (yc[1:] >= middle)]
    return {"preheat_max_c": float(y[before].max()),
            "dip_c": float(y[low]),
            "recovery_s": float(t[back]),
            "first_peak_c": float(y[back:below_again + 1].max()),
            "amplitude_c": float(0.5 * (yc.max() - yc.min())),
            "period_s": float(np.mean(np.diff(ups))),
            "mean_c": float(yc.mean())}
