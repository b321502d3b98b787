"""Simulated two-piston hot-injection controller (seed 000 §S.1.4).

Two syringes above the flask are pushed by two compressed-air pistons that are
fired remotely; the §S.1.2 synthesis injects 3.56 g of 0.1 mol/L Cd(OA)2 in ODE
at 290 °C with one of them. The controller is modelled as a small
microcontroller board speaking the line-based ASCII protocol specified in
``docs/protocols.md`` ("Two-piston injector (ASCII)").

Lewis split:

* :class:`InjectorModel` — the board and its mechanics: arming, per-piston
  stroke with end switches, a stroke watchdog, the board's microsecond clock
  and the firing rules. ``step(dt_s, world)`` moves the pistons; a piston that
  reaches its extended end switch calls ``world.deliver(charge)`` (the liquid
  is counted as delivered when the stroke completes, to within one world
  sub-step). Back door: :meth:`~InjectorModel.jam`, :meth:`~InjectorModel.load`,
  :meth:`~InjectorModel.reset`, :meth:`~InjectorModel.snapshot`.
* :class:`InjectorInterface` — the asyncio line server: it parses request
  lines, calls ``world.advance()`` before each command, and formats replies.
"""

from __future__ import annotations

import binascii
import math
import re
from dataclasses import dataclass, field

from .server import RequestServer
from .world import SyringeCharge

PISTONS = ("A", "B")

#: Piston states reported by ``STATUS?``.
READY, MOVING, EXTENDED, JAMMED, EMPTY = "READY", "MOVING", "EXTENDED", "JAMMED", "EMPTY"

#: Error replies: name -> numeric code (``ERR <code> <name> <text>``).
ERROR_CODES = {
    "UNKNOWN_COMMAND": 1,
    "BAD_CHECKSUM": 2,
    "BAD_ARGUMENT": 3,
    "LINE_TOO_LONG": 4,
    "NOT_ARMED": 10,
    "EMPTY": 11,
    "SPENT": 12,
    "JAMMED": 13,
    "BUSY": 14,
}

FIRMWARE_ID = "NCSYNTH-TPI2 FW=1.0 PISTONS=2"
MAX_LINE = 64


class Refused(ValueError):
    """The firmware refuses a command; ``name`` is a key of :data:`ERROR_CODES`."""

    def __init__(self, name: str, text: str):
        super().__init__(f"{name}: {text}")
        self.name, self.text = name, text


@dataclass
class _Piston:
    charge: SyringeCharge | None
    state: str = READY
    position: float = 0.0  # 0 retracted .. 1 fully extended
    moving_s: float = 0.0  # time since the fire command, s
    fired_us: int | None = None
    jam_fault: bool = False

    def __post_init__(self):
        if self.charge is None:
            self.state = EMPTY

    @property
    def switch(self) -> str:
        """End switches: R retracted closed, X extended closed, - in between."""
        if self.position <= 0.0:
            return "R"
        return "X" if self.position >= 1.0 else "-"


@dataclass(eq=False)
class InjectorModel:
    """The injector board and its two air pistons.

    Parameters
    ----------
    charge_a, charge_b:
        What each syringe holds (``None``: no syringe loaded). Default A is the
        §S.1.2 Cd precursor (3.56 g, ~4.5 mL, 25 °C, 0.1 mol/L), B is empty.
    stroke_s:
        Full stroke time of a compressed-air piston, s.
    watchdog_s:
        The firmware declares a piston JAMMED when its extended end switch has
        not closed this long after firing, s.
    jam_fraction:
        Where along the stroke (0..1) a jammed piston sticks.
    boot_epoch_s:
        World time (epoch s) at which the board booted; its microsecond clock
        counts from there. ``None``: the board booted ``uptime_s`` before the
        first world time it is asked about.
    """

    charge_a: SyringeCharge | None = field(default_factory=SyringeCharge)
    charge_b: SyringeCharge | None = None
    stroke_s: float = 0.3
    watchdog_s: float = 1.0
    jam_fraction: float = 0.4
    boot_epoch_s: float | None = None
    uptime_s: float = 1000.0

    def __post_init__(self):
        for name in ("stroke_s", "watchdog_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"InjectorModel.{name} must be a positive number of seconds, "
                                 f"got {value!r}")
        if self.watchdog_s <= self.stroke_s:
            raise ValueError(f"InjectorModel.watchdog_s ({self.watchdog_s!r}) must exceed "
                             f"stroke_s ({self.stroke_s!r})")
        if not 0.0 < self.jam_fraction < 1.0:
            raise ValueError(f"InjectorModel.jam_fraction must be in (0, 1), "
                             f"got {self.jam_fraction!r}")
        self.armed = False
        self.pistons: dict[str, _Piston] = {}
        self.reset()

    # -- the board's clock -----------------------------------------------------------
    def controller_us(self, world_time_s: float) -> int:
        """The board's 64-bit microsecond counter at world time ``world_time_s`` (epoch s)."""
        if self.boot_epoch_s is None:
            self.boot_epoch_s = world_time_s - self.uptime_s
        return int(math.floor((world_time_s - self.boot_epoch_s) * 1e6))

    # -- firmware commands (called by the interface under world.lock) ------------------
    def arm(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        """Close the air supply valve; a stroke already under way still completes."""
        self.armed = False

    def fire(self, piston: str, world_time_s: float) -> int:
        """Open piston ``piston``'s valve now; return the firing time in board µs."""
        p = self._piston(piston)
        if not self.armed:
            raise Refused("NOT_ARMED", "arm before firing")
        refusals = {EMPTY: ("EMPTY", f"no syringe loaded on piston {piston}"),
                    EXTENDED: ("SPENT", f"piston {piston} already fired"),
                    JAMMED: ("JAMMED", f"piston {piston} is jammed"),
                    MOVING: ("BUSY", f"piston {piston} is moving")}
        if p.state in refusals:
            raise Refused(*refusals[p.state])
        p.state, p.moving_s = MOVING, 0.0
        p.fired_us = self.controller_us(world_time_s)
        return p.fired_us

    def status(self, world_time_s: float) -> dict:
        """What ``STATUS?`` reports: board µs, armed flag, per piston state/switch/fire µs."""
        return {"T": self.controller_us(world_time_s), "ARMED": int(self.armed),
                **{name: (p.state, p.switch, p.fired_us) for name, p in self.pistons.items()}}

    # -- physics ---------------------------------------------------------------------
    def step(self, dt_s: float, world) -> None:
        """Advance moving pistons by ``dt_s``; deliver a syringe when its stroke completes."""
        for p in self.pistons.values():
            if p.state != MOVING:
                continue
            p.moving_s += dt_s
            reach = p.moving_s / self.stroke_s
            p.position = min(reach, self.jam_fraction if p.jam_fault else 1.0)
            if p.position >= 1.0:
                p.state = EXTENDED
                world.deliver(p.charge)
            elif p.moving_s >= self.watchdog_s:
                p.state = JAMMED

    # -- back door -------------------------------------------------------------------
    def jam(self, piston: str, jammed: bool = True) -> None:
        """Make ``piston`` stick at ``jam_fraction`` of its stroke (or free it)."""
        self._piston(piston).jam_fault = jammed

    def load(self, piston: str, charge: SyringeCharge | None) -> None:
        """Operator reloads one syringe: piston retracted, fault cleared, board disarmed."""
        self._piston(piston)
        if charge is not None and not isinstance(charge, SyringeCharge):
            raise TypeError(f"charge must be a SyringeCharge or None, got {charge!r}")
        self.pistons[piston] = _Piston(charge)
        self.armed = False

    def reset(self) -> None:
        """Reload both syringes with ``charge_a`` / ``charge_b``, clear faults, disarm."""
        self.pistons = {"A": _Piston(self.charge_a), "B": _Piston(self.charge_b)}
        self.armed = False

    def snapshot(self) -> dict:
        """Back-door view: armed flag and, per piston, state, position, fire µs, charge."""
        return {"armed": self.armed,
                **{name: {"state": p.state, "position": p.position, "fired_us": p.fired_us,
                          "charge": p.charge, "jam_fault": p.jam_fault}
                   for name, p in self.pistons.items()}}

    def _piston(self, piston: str) -> _Piston:
        if piston not in PISTONS:
            raise Refused("BAD_ARGUMENT", f"piston must be A or B, got {piston!r}")
        return self.pistons[piston]


# -- wire format --------------------------------------------------------------------------
def checksum(body: bytes) -> str:
    """CRC-16/XMODEM of ``body`` as 4 upper-case hex digits (docs/protocols.md)."""
    return f"{binascii.crc_hqx(body, 0):04X}"


_REQUEST = re.compile(r"^(?:#(?P<seq>\d{1,5}) )?(?P<cmd>[^*]*?)(?:\*(?P<crc>[0-9A-Fa-f]{4}))?$")


class InjectorInterface(RequestServer):
    """Line-protocol server for the injector board in ``world.injector`` (or ``model``)."""

    max_request = MAX_LINE

    def __init__(self, world, model: InjectorModel | None = None):
        self.world = world
        self.model = model if model is not None else world.injector
        if self.model is None:
            raise ValueError("InjectorInterface needs an InjectorModel: pass model= or "
                             "add one to the world under the name 'injector'")
        super().__init__()

    def split(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        *lines, pending = re.split(rb"\r\n|\n|\r", buffer)
        return [line for line in lines if line], pending

    def handle(self, raw: bytes) -> bytes:
        return self.handle_line(raw)

    def overflow_reply(self) -> bytes:
        return self._reply(None, "ERR", self._err_text(
            Refused("LINE_TOO_LONG", f"lines are at most {MAX_LINE} bytes")))

    def handle_line(self, raw: bytes) -> bytes:
        """Execute one request line (without terminator); return the reply line."""
        text = raw.decode("ascii", errors="replace").strip()
        match = _REQUEST.match(text)
        seq = match["seq"] if match else None
        try:
            if len(raw) > MAX_LINE:
                raise Refused("LINE_TOO_LONG", f"lines are at most {MAX_LINE} bytes")
            if match is None:
                raise Refused("UNKNOWN_COMMAND", "unparsable line")
            if match["crc"] is not None:
                body = raw[: raw.rindex(b"*")]
                if checksum(body) != match["crc"].upper():
                    raise Refused("BAD_CHECKSUM", "request checksum mismatch")
            return self._reply(seq, "OK", self._execute(match["cmd"].strip().upper()))
        except Refused as refusal:
            return self._reply(seq, "ERR", self._err_text(refusal))

    def _execute(self, cmd: str) -> str:
        now = self.world.advance(slow=False)  # a delivery steps the reaction itself
        model = self.model
        with self.world.lock:
            if cmd == "ID?":
                return f"ID {FIRMWARE_ID}"
            if cmd == "TIME?":
                return f"TIME {model.controller_us(now)}"
            if cmd == "STATUS?":
                return "STATUS " + _format_status(model.status(now))
            if cmd == "ARM":
                model.arm()
                return "ARM"
            if cmd == "DISARM":
                model.disarm()
                return "DISARM"
            verb, _, arg = cmd.partition(" ")
            if verb == "FIRE":
                piston = arg.strip()
                return f"FIRE {piston} {model.fire(piston, now)}"
        raise Refused("UNKNOWN_COMMAND", f"unknown command {cmd[:20]!r}")

    @staticmethod
    def _err_text(refusal: Refused) -> str:
        return f"{ERROR_CODES[refusal.name]:02d} {refusal.name} {refusal.text}"

    @staticmethod
    def _reply(seq: str | None, kind: str, text: str) -> bytes:
        body = (f"#{seq} " if seq is not None else "") + f"{kind} {text}"
        body_bytes = body.encode("ascii", errors="replace")
        return body_bytes + b"*" + checksum(body_bytes).encode() + b"\r\n"


def _format_status(status: dict) -> str:
    fields = [f"T={status['T']}", f"ARMED={status['ARMED']}"]
    for name in PISTONS:
        state, switch, fired_us = status[name]
        fields += [f"{name}={state}", f"SW{name}={switch}",
                   f"F{name}={'-' if fired_us is None else fired_us}"]
    return " ".join(fields)
