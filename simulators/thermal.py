"""World models of the heated flask and of its temperature controller (seed 000 §S.1.2, §S.1.4).

Two models, stepped by :class:`ncsynth.simulators.world.World` with ``step(dt_s, world)``:

:class:`FlaskThermalModel`
    A lumped model with three heat capacities and one conduction delay (SI inside: W, J/K,
    s; °C at the interface):

    * the **heating element** of the ribbon, whose power ``P = output/100 * max_power_w``
      reaches the ribbon's mass on the glass only ``ribbon_delay_s`` later (a transport
      lag: heat conducted through the ribbon's braided glass-fibre sleeve, ~3 mm at
      α ~ 3e-7 m²/s gives d²/α ~ 30 s; the heat in transit is held, not lost);
    * the **ribbon** on the glass (heat capacity ``C_r``), passing heat to the flask through
      ``G_rf`` and losing ``G_ra`` to ambient;
    * the **liquid** together with the glass wall it wets (``C_l = m·c_p + C_wall``),
      losing ``G_la`` to ambient (necks, top, stirring plate);
    * the **thermocouple** junction, a first-order lag ``tau_tc`` behind the liquid.

        C_r dT_r/dt = P(t - L) - G_rf (T_r - T_l) - G_ra (T_r - T_amb)
        C_l dT_l/dt = G_rf (T_r - T_l) - G_la (T_l - T_amb)
        tau_tc dT_tc/dt = T_l - T_tc

    Injecting cold liquid (:meth:`FlaskThermalModel.add_liquid`) is an instant energy
    balance: ``T = (C_l T_l + m c_p T_in) / (C_l + m c_p)``. The charge is that of §S.1.2
    — 0.81 g TOPO + 2.33 g ODA + 3.78 g Se precursor = 6.92 g, c_p ~2 J/(g K) — in a
    small flask whose wetted wall adds 6.5 J/K: 3.56 g of 25 °C Cd precursor injected at
    290 °C drops the liquid to ~221 °C and the thermocouple (2 s lag) bottoms out near
    231 °C (paper: 230 °C).

:class:`ControllerModel`
    The controller's own loop, as a Eurotherm 3200 runs it: the working setpoint follows
    the target setpoint at the setpoint rate limit (°C/min, 0 = step), a PID on the
    thermocouple reading in the ideal form with the proportional band in °C,

        OP = 100/PB · (e + 1/Ti ∫e dt − Td dPV/dt),  e = SP_w − PV,  0 ≤ OP ≤ 100 %

    with the integral frozen while the output is saturated and pushed further into
    saturation (anti-windup), derivative on PV. Manual mode holds the manual output.
    A high alarm (alarm 1, full-scale high) is raised while PV > ``high_alarm_c``; an
    open thermocouple is a sensor break: the output goes to the sensor-break output
    level (0 %) in auto mode, and the process value is unavailable.

Why the loop oscillates (§S.1.2: ±6.5 °C, 195 s). The default tuning (PB 3 °C, Ti 150 s,
Td 14 s) is tight for the ribbon's 30 s conduction delay: the linear loop is unstable at
small signals, and the output, which can only heat (clamped at 0 and 100 %), swings
between its limits; that saturation bounds the growth into a limit cycle (describing
function of the clamp) whose period is set by the delay and the ribbon/liquid lags and
whose amplitude by the ribbon's power (51 W) against the liquid's heat capacity. The
derivative action anticipates large heating rates, so the approach to a setpoint from far
below (preheat, recovery after the injection) switches the power off before the stored
heat overshoots. Measured on the pure models (tests/test_thermal.py,
benchmarks/paper_vs_simulator.py): preheat peaks at ~290.2 °C; after injection 231 °C,
260 °C again after ~63 s, first peak ~264.5 °C; then ±6.3 °C with a ~190 s period whose
mean sits ~3 °C below the setpoint (most of the cycle is spent saturated, where the
integral is frozen). Paper: 230 °C, within 60 s, ±6.5 °C, 195 s.
"""

from __future__ import annotations

import math
import numbers
from collections import deque


def _require_positive(name: str, value: float) -> float:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _require_finite(name: str, value: float) -> float:
    if not (isinstance(value, numbers.Real) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class TransportDelay:
    """A pure delay of ``delay_s`` (>= 0) seconds on a piecewise-constant signal, for any steps.

    :meth:`push` takes the value held over the next ``dt_s`` and returns the mean value
    leaving the line over that same interval (what entered ``delay_s`` earlier; ``initial``
    before anything did). The line holds (duration, value) segments, so the result does
    not depend on how the time is cut into steps.
    """

    def __init__(self, delay_s: float, initial: float = 0.0):
        if not (isinstance(delay_s, numbers.Real) and math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"delay_s must be a finite number >= 0, got {delay_s!r}")
        self.delay_s = float(delay_s)
        self._segments: deque[list[float]] = deque([[self.delay_s, float(initial)]])

    def push(self, dt_s: float, value: float) -> float:
        if self.delay_s == 0:
            return float(value)
        self._segments.append([dt_s, float(value)])
        needed, leaving = dt_s, 0.0
        while needed > 1e-12 * max(dt_s, 1.0):
            segment = self._segments[0]
            taken = min(segment[0], needed)
            leaving += taken * segment[1]
            needed -= taken
            segment[0] -= taken
            if segment[0] <= 1e-12 * max(dt_s, 1.0):
                self._segments.popleft()
        return leaving / dt_s if dt_s > 0 else self._segments[0][1]

    def fill(self, value: float) -> None:
        """The whole line holds ``value`` (a steady state)."""
        self._segments = deque([[self.delay_s, float(value)]])


class FlaskThermalModel:
    """Flask + heating ribbon + thermocouple, see the module docstring for the equations.

    Parameters (units in the names): the liquid charge ``liquid_mass_g`` with heat capacity
    ``heat_capacity_j_per_g_k`` and room-temperature volume ``liquid_volume_ml``; the
    wetted glass ``wall_heat_capacity_j_per_k`` (C_wall); the ribbon
    ``ribbon_heat_capacity_j_per_k`` (C_r) and ``ribbon_max_power_w``; conductances
    ``ribbon_to_liquid_w_per_k`` (G_rf), ``ribbon_loss_w_per_k`` (G_ra),
    ``liquid_loss_w_per_k`` (G_la); ``thermocouple_lag_s`` (tau_tc); ``ambient_c``.
    Everything starts at ambient. State: ``temperature_c`` (liquid), ``ribbon_c``,
    ``thermocouple_c``, ``volume_ml``, ``heater_power_w`` (the element's, now),
    ``thermocouple_open``, ``elapsed_s`` (time stepped, which the controller samples by).
    """

    def __init__(self, *, liquid_mass_g: float = 6.92, heat_capacity_j_per_g_k: float = 2.0,
                 liquid_volume_ml: float = 8.0, wall_heat_capacity_j_per_k: float = 6.5,
                 ribbon_heat_capacity_j_per_k: float = 57.5, ribbon_max_power_w: float = 51.0,
                 ribbon_delay_s: float = 30.0, ribbon_to_liquid_w_per_k: float = 0.55,
                 ribbon_loss_w_per_k: float = 0.09, liquid_loss_w_per_k: float = 0.054,
                 thermocouple_lag_s: float = 2.0, ambient_c: float = 25.0):
        self.liquid_mass_g = _require_positive("liquid_mass_g", liquid_mass_g)
        self.heat_capacity_j_per_g_k = _require_positive("heat_capacity_j_per_g_k",
                                                         heat_capacity_j_per_g_k)
        self.volume_ml = _require_positive("liquid_volume_ml", liquid_volume_ml)
        self.wall_heat_capacity_j_per_k = _require_positive("wall_heat_capacity_j_per_k",
                                                            wall_heat_capacity_j_per_k)
        self.ribbon_heat_capacity_j_per_k = _require_positive("ribbon_heat_capacity_j_per_k",
                                                              ribbon_heat_capacity_j_per_k)
        self.ribbon_max_power_w = _require_positive("ribbon_max_power_w", ribbon_max_power_w)
        self._element = TransportDelay(ribbon_delay_s)
        self.ribbon_to_liquid_w_per_k = _require_positive("ribbon_to_liquid_w_per_k",
                                                          ribbon_to_liquid_w_per_k)
        self.ribbon_loss_w_per_k = _require_positive("ribbon_loss_w_per_k", ribbon_loss_w_per_k)
        self.liquid_loss_w_per_k = _require_positive("liquid_loss_w_per_k", liquid_loss_w_per_k)
        self.thermocouple_lag_s = _require_positive("thermocouple_lag_s", thermocouple_lag_s)
        self.ambient_c = _require_finite("ambient_c", ambient_c)
        self.temperature_c = self.ambient_c
        self.ribbon_c = self.ambient_c
        self.thermocouple_c = self.ambient_c
        self.elapsed_s = 0.0  # time stepped so far: when the thermocouple reading is from, s
        self.thermocouple_open = False
        self.heater_power_w = 0.0

    @property
    def ribbon_delay_s(self) -> float:
        """Conduction delay of the element's power to the ribbon's mass on the glass, s."""
        return self._element.delay_s

    @property
    def liquid_heat_capacity_j_per_k(self) -> float:
        """Heat capacity of the liquid plus the wetted wall, J/K."""
        return self.liquid_mass_g * self.heat_capacity_j_per_g_k + self.wall_heat_capacity_j_per_k

    def step(self, dt_s: float, world) -> None:
        """Advance by ``dt_s`` seconds with the ribbon power the controller asks for."""
        controller = getattr(world, "controller", None)
        output = controller.output_percent if controller is not None else 0.0
        self.heater_power_w = self.ribbon_max_power_w * min(max(output, 0.0), 100.0) / 100.0
        self.elapsed_s += dt_s
        reaching_ribbon_w = self._element.push(dt_s, self.heater_power_w)
        to_liquid = self.ribbon_to_liquid_w_per_k * (self.ribbon_c - self.temperature_c)
        ribbon_loss = self.ribbon_loss_w_per_k * (self.ribbon_c - self.ambient_c)
        liquid_loss = self.liquid_loss_w_per_k * (self.temperature_c - self.ambient_c)
        self.ribbon_c += dt_s * (reaching_ribbon_w - to_liquid - ribbon_loss) \
            / self.ribbon_heat_capacity_j_per_k
        self.temperature_c += dt_s * (to_liquid - liquid_loss) / self.liquid_heat_capacity_j_per_k
        # exact first-order response: stable for any dt
        self.thermocouple_c += (self.temperature_c - self.thermocouple_c) \
            * -math.expm1(-dt_s / self.thermocouple_lag_s)

    def add_liquid(self, mass_g: float, temperature_c: float, volume_ml: float) -> None:
        """Mix in ``mass_g`` of liquid at ``temperature_c`` (energy balance, same c_p)."""
        mass_g = _require_positive("mass_g", mass_g)
        temperature_c = _require_finite("temperature_c", temperature_c)
        volume_ml = _require_positive("volume_ml", volume_ml)
        added_j_per_k = mass_g * self.heat_capacity_j_per_g_k
        held_j_per_k = self.liquid_heat_capacity_j_per_k
        self.temperature_c = (held_j_per_k * self.temperature_c + added_j_per_k * temperature_c) \
            / (held_j_per_k + added_j_per_k)
        self.liquid_mass_g += mass_g
        self.volume_ml += volume_ml

    # -- back door ----------------------------------------------------------------------
    def open_thermocouple(self, is_open: bool = True) -> None:
        """Break (True) or reconnect (False) the thermocouple wire."""
        self.thermocouple_open = bool(is_open)

    def set_temperature(self, temperature_c: float) -> None:
        """Put liquid, ribbon and thermocouple at ``temperature_c`` at once (no heat in transit)."""
        temperature_c = _require_finite("temperature_c", temperature_c)
        self.temperature_c = self.ribbon_c = self.thermocouple_c = temperature_c
        self._element.fill(0.0)


class ControllerModel:
    """The Eurotherm's PID loop, setpoint ramp, alarms and auto/manual (module docstring).

    Parameters: ``proportional_band_c`` (°C), ``integral_time_s``, ``derivative_time_s``
    (0 = off), ``high_alarm_c`` (alarm 1 threshold), ``setpoint_c`` (initial target),
    ``ramp_rate_c_per_min`` (0 = no limit), ``sensor_break_output_percent``.
    """

    MIN_SAMPLE_S = 0.01  # shortest interval between two samples of the loop, s

    def __init__(self, *, proportional_band_c: float = 3.0, integral_time_s: float = 150.0,
                 derivative_time_s: float = 14.0, high_alarm_c: float = 320.0,
                 setpoint_c: float = 25.0, ramp_rate_c_per_min: float = 0.0,
                 sensor_break_output_percent: float = 0.0):
        self.proportional_band_c = _require_positive("proportional_band_c", proportional_band_c)
        self.integral_time_s = _require_positive("integral_time_s", integral_time_s)
        if not (math.isfinite(derivative_time_s) and derivative_time_s >= 0):
            raise ValueError(f"derivative_time_s must be >= 0, got {derivative_time_s!r}")
        self.derivative_time_s = float(derivative_time_s)
        self.high_alarm_c = _require_finite("high_alarm_c", high_alarm_c)
        self.sensor_break_output_percent = self._check_percent(
            "sensor_break_output_percent", sensor_break_output_percent)
        self.target_setpoint_c = _require_finite("setpoint_c", setpoint_c)
        self.working_setpoint_c = self.target_setpoint_c
        self.ramp_rate_c_per_min = 0.0
        self.set_ramp_rate(ramp_rate_c_per_min)
        self.manual = False
        self.manual_output_percent = 0.0
        self.output_percent = 0.0
        self.process_value_c = float("nan")
        self.sensor_break = False
        self.high_alarm = False
        self._integral_percent = 0.0
        self._previous_pv: float | None = None
        self._sampled_at_s = 0.0  # the flask's elapsed time at the loop's last sample, s

    @staticmethod
    def _check_percent(name: str, value: float) -> float:
        if not (isinstance(value, numbers.Real) and 0.0 <= value <= 100.0):
            raise ValueError(f"{name} must be within 0..100 %, got {value!r}")
        return float(value)

    # -- the operator's (and the Modbus interface's) writes -------------------------------
    def set_target_setpoint(self, setpoint_c: float) -> None:
        self.target_setpoint_c = _require_finite("setpoint_c", setpoint_c)
        if self.ramp_rate_c_per_min == 0:
            self.working_setpoint_c = self.target_setpoint_c

    def set_ramp_rate(self, ramp_rate_c_per_min: float) -> None:
        """Setpoint rate limit in °C/min; 0 switches it off (the working SP steps)."""
        if not (math.isfinite(ramp_rate_c_per_min) and ramp_rate_c_per_min >= 0):
            raise ValueError(f"ramp_rate_c_per_min must be >= 0, got {ramp_rate_c_per_min!r}")
        self.ramp_rate_c_per_min = float(ramp_rate_c_per_min)
        if self.ramp_rate_c_per_min == 0:
            self.working_setpoint_c = self.target_setpoint_c

    def set_manual(self, manual: bool) -> None:
        """Switch to manual (True) or auto (False), bumplessly in both directions."""
        manual = bool(manual)
        if manual and not self.manual:
            self.manual_output_percent = self.output_percent
        elif not manual and self.manual:
            self._integral_percent = self.output_percent
            self._previous_pv = None
        self.manual = manual

    def set_manual_output(self, output_percent: float) -> None:
        """Output level in manual mode (ignored by the loop in auto, as on the 3200)."""
        self.manual_output_percent = self._check_percent("output_percent", output_percent)
        if self.manual:
            self.output_percent = self.manual_output_percent

    # -- dynamics -------------------------------------------------------------------------
    def step(self, dt_s: float, world) -> None:
        """Advance ramp, alarms and loop by ``dt_s`` reading ``world.flask``'s thermocouple."""
        flask = world.flask
        self._ramp(dt_s)
        self.sensor_break = bool(flask.thermocouple_open)
        if self.sensor_break:
            self.process_value_c = float("nan")
            self.high_alarm = False
            self._previous_pv = None
            self.output_percent = (self.manual_output_percent if self.manual
                                   else self.sensor_break_output_percent)
            return
        pv = flask.thermocouple_c
        self.process_value_c = pv
        self.high_alarm = pv > self.high_alarm_c
        if self.manual:
            self.output_percent = self.manual_output_percent
            self._previous_pv, self._sampled_at_s = pv, flask.elapsed_s
            return
        # The loop samples at most every MIN_SAMPLE_S of the flask's time (a real controller
        # samples its input a few times a second), over the time the reading has really moved:
        # a step shorter than that, as when the world is brought up to a request's time,
        # holds the output. (Dividing the change since the last sample by a short step's dt
        # kicked the output to 0 %, held for the next step: random heater drop-outs.)
        since_sample_s = flask.elapsed_s - self._sampled_at_s
        if self._previous_pv is None or since_sample_s >= self.MIN_SAMPLE_S:
            self.output_percent = self._pid(since_sample_s or dt_s, pv)
            self._sampled_at_s = flask.elapsed_s

    def _ramp(self, dt_s: float) -> None:
        if self.ramp_rate_c_per_min == 0:
            self.working_setpoint_c = self.target_setpoint_c
            return
        max_step = self.ramp_rate_c_per_min * dt_s / 60.0
        gap = self.target_setpoint_c - self.working_setpoint_c
        self.working_setpoint_c += max(-max_step, min(max_step, gap))

    def _pid(self, dt_s: float, pv: float) -> float:
        """One sample of the loop, ``dt_s`` after the last (s), with the reading ``pv`` (°C)."""
        gain = 100.0 / self.proportional_band_c
        error = self.working_setpoint_c - pv
        derivative = 0.0
        if self.derivative_time_s and self._previous_pv is not None:
            derivative = -self.derivative_time_s * (pv - self._previous_pv) / dt_s
        self._previous_pv = pv
        integral_step = gain * error * dt_s / self.integral_time_s
        unclamped = gain * (error + derivative) + self._integral_percent + integral_step
        pushing_out = (unclamped > 100.0 and integral_step > 0) or \
                      (unclamped < 0.0 and integral_step < 0)
        if not pushing_out:
            self._integral_percent = min(max(self._integral_percent + integral_step, 0.0), 100.0)
        return min(max(gain * (error + derivative) + self._integral_percent, 0.0), 100.0)
