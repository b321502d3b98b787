"""Simulated New Era NE-1000-family syringe pump (seed 002: pumps feed the precursors).

The continuous-flow reactor of seed 002 is fed by syringe pumps; their flow rates
set the residence times (reaction times 1.5-14 s) in the nucleation chamber and
growth oven. The pump speaks the NE-1000 RS-232 "Basic mode" subset described in
``docs/pumps.md``.

Lewis split:

* :class:`SyringePumpModel` — the pump: syringe diameter, rate with units,
  direction, volume target, dispensed volumes, run/pause/stop phase and alarms.
  ``step(dt_s, world)`` moves the plunger; :meth:`~SyringePumpModel.flow_rate_ml_min`
  is what a reactor model reads. Back door: :meth:`~SyringePumpModel.stall`,
  :meth:`~SyringePumpModel.reset`, :meth:`~SyringePumpModel.snapshot`.
* :class:`NE1000Interface` — the asyncio server: ``[addr]CMD[params]<CR>`` in,
  ``<STX>addr status [data]<ETX>`` out; ``world.advance()`` before every request.

Rate limits (our choice, from the NE-1000 specification: 0.73 µL/h on a 1 mL
syringe of 4.78 mm, 1699 mL/h on a 60 mL syringe of 26.59 mm): plunger speed
between :data:`PLUNGER_MIN_MM_MIN` and :data:`PLUNGER_MAX_MM_MIN`, so
rate limits (µL/min) = (π d²/4, mm²) × plunger speed (mm/min).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .server import RequestServer

RATE_UNITS_ML_MIN = {"UM": 1e-3, "MM": 1.0, "UH": 1e-3 / 60, "MH": 1.0 / 60}
VOLUME_UNITS_ML = {"UL": 1e-3, "ML": 1.0}
PLUNGER_MIN_MM_MIN = 6.8e-4   # 0.73 µL/h on a 4.78 mm syringe
PLUNGER_MAX_MM_MIN = 51.0     # 1699 mL/h on a 26.59 mm syringe
DIAMETER_RANGE_MM = (0.1, 50.0)
UL_UNITS_MAX_DIAMETER_MM = 14.0  # at or below: volumes in µL, above: in mL (NE-1000 rule)
FIRMWARE = "NE1000V3.928"
MAX_PACKET = 64
STX, ETX, CR = b"\x02", b"\x03", b"\r"
INFUSING, WITHDRAWING, STOPPED, PAUSED = "I", "W", "S", "P"


class Refused(ValueError):
    """A command the firmware refuses; ``code`` is "" (unknown), NA, OOR, COM or IGN."""

    def __init__(self, code: str, text: str = ""):
        super().__init__(f"?{code} {text}".strip())
        self.code = code


def volume_units_for(diameter_mm: float) -> str:
    """Default volume units of a syringe: UL at or below 14.00 mm inside diameter, else ML."""
    return "UL" if diameter_mm <= UL_UNITS_MAX_DIAMETER_MM else "ML"


def rate_limits_ml_min(diameter_mm: float) -> tuple[float, float]:
    """(min, max) pumping rate in mL/min for a syringe of ``diameter_mm`` inside diameter."""
    area_mm2 = math.pi * diameter_mm ** 2 / 4.0
    return area_mm2 * PLUNGER_MIN_MM_MIN * 1e-3, area_mm2 * PLUNGER_MAX_MM_MIN * 1e-3


def fmt(value: float) -> str:
    """NE-1000 number: 4 significant digits, at most 3 decimals (1.500, 26.59, 150.0, 1500)."""
    digits = len(str(int(abs(value))))
    return f"{value:.{max(0, min(3, 4 - digits))}f}"


@dataclass(eq=False)
class SyringePumpModel:
    """One NE-1000 pump with its syringe. Defaults: a 10 mL syringe (14.43 mm), 1 mL/min."""

    diameter_mm: float = 14.43
    address: int = 0

    def __post_init__(self):
        lo, hi = DIAMETER_RANGE_MM
        if not lo <= self.diameter_mm <= hi:
            raise ValueError(f"SyringePumpModel.diameter_mm must be in [{lo}, {hi}], "
                             f"got {self.diameter_mm!r}")
        if not (isinstance(self.address, int) and 0 <= self.address <= 99):
            raise ValueError(f"SyringePumpModel.address must be 0..99, got {self.address!r}")
        self._factory_diameter_mm = self.diameter_mm
        self.reset()

    # -- firmware commands (called by the interface under world.lock) ------------------
    @property
    def running(self) -> bool:
        return self.state in (INFUSING, WITHDRAWING)

    def set_diameter(self, diameter_mm: float) -> None:
        if self.running:
            raise Refused("NA", "diameter cannot change while pumping")
        lo, hi = DIAMETER_RANGE_MM
        if not lo <= diameter_mm <= hi:
            raise Refused("OOR", f"diameter {diameter_mm} mm")
        self.diameter_mm = diameter_mm
        self.volume_units = volume_units_for(diameter_mm)
        self.target = 0.0

    def set_rate(self, value: float, units: str) -> None:
        if self.running and units != self.rate_units:
            raise Refused("NA", "rate units cannot change while pumping")
        lo, hi = rate_limits_ml_min(self.diameter_mm)
        if not lo <= value * RATE_UNITS_ML_MIN[units] <= hi:
            raise Refused("OOR", f"rate {value} {units}")
        self.rate, self.rate_units = value, units

    def set_volume_units(self, units: str) -> None:
        if self.running:
            raise Refused("NA", "volume units cannot change while pumping")
        self.volume_units = units

    def set_direction(self, direction: str) -> None:
        if direction == "REV":
            direction = "WDR" if self.direction == "INF" else "INF"
        if self.running and self.target > 0:
            raise Refused("NA", "direction changes while pumping need VOL 0")
        self.direction = direction
        if self.running:
            self.state = INFUSING if direction == "INF" else WITHDRAWING

    def run(self) -> None:
        lo, hi = rate_limits_ml_min(self.diameter_mm)
        if not lo <= self.rate_ml_min <= hi:  # the syringe changed since the rate was set
            raise Refused("OOR", "rate outside this syringe's range")
        if self.state == STOPPED:
            self.phase_ml = 0.0
        self.state = INFUSING if self.direction == "INF" else WITHDRAWING

    def stop(self) -> None:
        """STP: pumping -> paused; paused (or stopped) -> stopped, phase reset."""
        self.state = PAUSED if self.running else STOPPED

    def clear_dispensed(self, direction: str) -> None:
        self.dispensed_ml[direction] = 0.0

    def take_alarm(self) -> str | None:
        """The pending alarm letter, acknowledged by reporting it (``None`` if none)."""
        alarm, self.alarm = self.alarm, None
        return alarm

    # -- physics -----------------------------------------------------------------------
    @property
    def rate_ml_min(self) -> float:
        """Programmed rate, mL/min (whether or not the pump runs)."""
        return self.rate * RATE_UNITS_ML_MIN[self.rate_units]

    def flow_rate_ml_min(self) -> float:
        """Flow out of the syringe now, mL/min: + infusing, - withdrawing, 0 when not pumping."""
        if not self.running:
            return 0.0
        return self.rate_ml_min if self.state == INFUSING else -self.rate_ml_min

    def step(self, dt_s: float, world=None) -> None:
        """Move the plunger for ``dt_s``; stop (phase ends) when the volume target is reached."""
        if not self.running:
            return
        volume = self.rate_ml_min * dt_s / 60.0
        target_ml = self.target * VOLUME_UNITS_ML[self.volume_units]
        if target_ml > 0 and self.phase_ml + volume >= target_ml:
            volume = max(target_ml - self.phase_ml, 0.0)
            self.state = STOPPED
        self.phase_ml += volume
        self.dispensed_ml[self.direction] += volume

    # -- back door -----------------------------------------------------------------------
    def stall(self) -> None:
        """The motor stalls (blocked line, syringe at its end): pumping stops, alarm S raised."""
        self.state = STOPPED
        self.alarm = "S"

    def reset(self, power_interrupted: bool = False) -> None:
        """Factory state (stopped, 1 mL/min infusing, continuous); alarm R if power was cut."""
        self.diameter_mm = self._factory_diameter_mm
        self.rate, self.rate_units = 1.0, "MM"
        self.direction = "INF"
        self.volume_units = volume_units_for(self.diameter_mm)
        self.target = 0.0  # in volume_units; 0: pump continuously
        self.state = STOPPED
        self.phase_ml = 0.0  # pumped since the phase (RUN from stopped) began
        self.dispensed_ml = {"INF": 0.0, "WDR": 0.0}
        self.alarm = "R" if power_interrupted else None

    def snapshot(self) -> dict:
        """Back-door view of the whole state, volumes in mL, rates in mL/min."""
        return {"state": self.state, "alarm": self.alarm, "diameter_mm": self.diameter_mm,
                "rate": (self.rate, self.rate_units), "rate_ml_min": self.rate_ml_min,
                "flow_rate_ml_min": self.flow_rate_ml_min(), "direction": self.direction,
                "target": (self.target, self.volume_units), "phase_ml": self.phase_ml,
                "infused_ml": self.dispensed_ml["INF"], "withdrawn_ml": self.dispensed_ml["WDR"]}


# -- wire format ------------------------------------------------------------------------
_PACKET = re.compile(r"^(?P<addr>\d{1,2})?(?P<cmd>[A-Z]{3})?(?P<arg>.*)$")
_FLOAT = r"(\d{1,4}(?:\.\d{0,3})?|\.\d{1,3})"


def _number(text: str) -> float:
    """An NE-1000 <float>: at most 4 digits and 3 decimals; else ?OOR (not a number: ?)."""
    if not re.fullmatch(r"[\d.]*\d[\d.]*", text) or text.count(".") > 1:
        raise Refused("")
    if not re.fullmatch(_FLOAT, text) or len(text.replace(".", "")) > 4:
        raise Refused("OOR", f"{text} has more than 4 digits")
    return float(text)


class NE1000Interface(RequestServer):
    """NE-1000 Basic-mode server for one :class:`SyringePumpModel` living in ``world``."""

    max_request = MAX_PACKET

    def __init__(self, world, model: SyringePumpModel):
        if not isinstance(model, SyringePumpModel):
            raise TypeError(f"model must be a SyringePumpModel, got {model!r}")
        self.world, self.model = world, model
        super().__init__()

    def split(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        *packets, pending = buffer.split(CR)
        return packets, pending

    def handle(self, raw: bytes) -> bytes:
        return self.handle_packet(raw)

    def overflow_reply(self) -> bytes:
        return self._reply("COM")

    def handle_packet(self, raw: bytes) -> bytes:
        """Execute one packet (without its CR); return the reply (``b""``: not addressed to us)."""
        self.world.advance()
        if len(raw) > MAX_PACKET or any(b > 0x7E for b in raw):
            with self.world.lock:
                return self._reply("COM")
        text = re.sub(r"[\x00-\x20\x7f]", "", raw.decode("ascii")).upper()
        match = _PACKET.match(text)
        if int(match["addr"] or 0) != self.model.address:
            return b""  # another pump on the RS-232 network answers
        with self.world.lock:
            alarm = self.model.take_alarm()
            if alarm is not None:  # reporting the alarm acknowledges it; nothing executed
                return self._frame("A?" + alarm)
            try:
                data = self._execute(match["cmd"], match["arg"])
            except Refused as refusal:
                return self._reply(refusal.code)
            return self._frame(self.model.state + data)

    def _execute(self, cmd: str | None, arg: str) -> str:
        m = self.model
        if cmd is None:
            if arg:
                raise Refused("")
            return ""  # status query
        if cmd == "DIA":
            if not arg:
                return fmt(m.diameter_mm)
            m.set_diameter(_number(arg))
        elif cmd == "RAT":
            if not arg:
                return fmt(m.rate) + m.rate_units
            match = re.fullmatch(r"([\d.]+)(UM|MM|UH|MH)?", arg)
            if match is None:
                raise Refused("")
            m.set_rate(_number(match[1]), match[2] or m.rate_units)
        elif cmd == "VOL":
            if not arg:
                return fmt(m.target) + m.volume_units
            if arg in VOLUME_UNITS_ML:
                m.set_volume_units(arg)
            else:
                m.target = _number(arg)
        elif cmd == "DIR":
            if not arg:
                return m.direction
            if arg not in ("INF", "WDR", "REV"):
                raise Refused("")
            m.set_direction(arg)
        elif cmd == "RUN" and not arg:
            m.run()
        elif cmd == "STP" and not arg:
            m.stop()
        elif cmd == "DIS" and not arg:
            scale = VOLUME_UNITS_ML[m.volume_units]
            return (f"I{fmt(m.dispensed_ml['INF'] / scale)}W{fmt(m.dispensed_ml['WDR'] / scale)}"
                    f"{m.volume_units}")
        elif cmd == "CLD" and arg in ("INF", "WDR"):
            m.clear_dispensed(arg)
        elif cmd == "VER" and not arg:
            return FIRMWARE
        else:
            raise Refused("")
        return ""

    def _reply(self, code: str) -> bytes:
        """An error reply: status, then ``?`` and the error code."""
        return self._frame(self.model.state + "?" + code)

    def _frame(self, data: str) -> bytes:
        return STX + f"{self.model.address:02d}{data}".encode("ascii") + ETX
