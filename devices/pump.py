"""A New Era NE-1000-family syringe pump over RS-232 (Basic mode) as an ophyd Device.

The continuous-flow reactor of seed 002 is fed by syringe pumps; the flow rates
set the reaction (residence) times of 1.5-14 s. The wire protocol subset is in
``docs/pumps.md``.

Usage (``/dev/ttyUSB0`` at 19200 8N1 at the hutch, ``socket://`` in a dry run)::

    pump = SyringePump("socket://127.0.0.1:PORT", name="pump_cd", diameter_mm=14.43)
    pump.stage()                       # sets the syringe diameter once
    pump.start(1.5, direction="INF")   # returns when the pump reports infusing at 1.5 mL/min
    pump.trigger(); pump.infused_ml.get()
    pump.stop()                        # pump stopped (not merely paused)

In a plan: ``yield from bps.mv(pump, 1.5)`` starts pumping at 1.5 mL/min in the
current direction; the RunEngine's ``stop()`` at the end of the plan stops it.

Faults: a lost or garbled reply to a query or an idempotent setting is retried;
``RUN`` and ``STP`` are never blindly re-sent: after a lost reply the pump's
state is read back instead (a second ``STP`` would end the pumping phase).
Basic mode replies carry no tag, so a reply arriving after its time-out may be
taken for the next request's; replies are checked against the shape each
command expects, which catches most of these.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import NamedTuple

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from ncsynth import timebase, validation

from .serial_link import LinkFault as _Fault
from .serial_link import SerialLink, attempts_text

logger = logging.getLogger(__name__)

RATE_UNITS_ML_MIN = {"UM": 1e-3, "MM": 1.0, "UH": 1e-3 / 60, "MH": 1.0 / 60}
VOLUME_UNITS_ML = {"UL": 1e-3, "ML": 1.0}
STATES = {"I": "infusing", "W": "withdrawing", "S": "stopped", "P": "paused",
          "T": "pause phase", "U": "user wait", "X": "purging"}
ALARMS = {"R": "reset (power was interrupted)", "S": "motor stalled",
          "T": "communications time-out", "E": "pumping program error",
          "O": "program phase out of range"}
REFUSALS = {"": "command not recognised", "NA": "not applicable now",
            "OOR": "data out of range", "COM": "invalid packet", "IGN": "command ignored"}
DIAMETER_RANGE_MM = (0.1, 50.0)
_FRAME = re.compile(r"\x02(\d\d)(A\?[RSTEO]|[IWSPTUX])([\x20-\x7e]*)\x03")
_RATE = r"([\d.]+)(UM|MM|UH|MH)"
_VOLUME = r"([\d.]+)(UL|ML)"


class PumpError(RuntimeError):
    """The pump refused or failed an action; ``code`` is the pump's code (OOR, NA, S, ...)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class PumpRefused(PumpError):
    """The pump answered ``?``, ``?NA``, ``?OOR``, ``?COM`` or ``?IGN``."""


class PumpAlarm(PumpError):
    """The pump reported an alarm (``A?S`` motor stalled, ``A?R`` reset, ...)."""


class PumpCommunicationError(PumpError):
    """No intelligible reply (time-out, garbled frame, closed port) after the retries."""


class _Reply(NamedTuple):
    status: str  # I W S P T U X
    data: str


def _number_text(value: float) -> str | None:
    """``value`` as the pump writes numbers (≤ 4 digits, ≤ 3 decimals); None if impossible."""
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text.replace(".", "")) <= 4:
            return text if float(text) > 0 else None
    return None


def _encode(value: float, units: dict[str, float], prefer: str | None = None):
    """(text, unit) representing ``value`` (base units) most precisely; ties go to ``prefer``."""
    best = None
    for unit in sorted(units, key=lambda u: u != prefer):
        text = _number_text(value / units[unit])
        if text is not None:
            error = abs(float(text) * units[unit] - value) / value
            if best is None or error < best[0] * (1 - 1e-9):
                best = (error, text, unit)
    return None if best is None else best[1:]


def _checked(name: str, value, units: dict[str, float] | None, zero_ok: bool = False) -> float:
    """``value`` if a finite number > 0 (or 0 if ``zero_ok``) writable in ``units``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, "
                         f"got {value!r}")
    if value > 0 and units is not None and _encode(value, units) is None:
        raise ValueError(f"{name}={value!r} cannot be written in the pump's 4-digit format")
    return float(value)


class SyringePump(Device):
    """One NE-1000-family pump (network ``address``) with a syringe of ``diameter_mm``.

    Parameters
    ----------
    url:
        Anything ``serial.serial_for_url`` opens (``/dev/ttyUSB0``, ``socket://host:port``).
    diameter_mm:
        Syringe inside diameter, mm (0.1-50); sent once, at :meth:`stage` or first start.
    address:
        Pump network address 0-99.
    timeout_s:
        Wall-clock time-out for one reply.
    retries:
        Re-sends after a failed exchange (never blind for RUN / STP).
    """

    flow_ml_min = Cpt(Signal, value=math.nan, kind="hinted",
                      doc="mL/min out of the syringe now: + infusing, - withdrawing, 0 idle")
    rate_ml_min = Cpt(Signal, value=math.nan, kind="normal", doc="programmed rate, mL/min")
    direction = Cpt(Signal, value="", kind="normal", doc="INF or WDR")
    target_volume_ml = Cpt(Signal, value=math.nan, kind="normal",
                           doc="volume to dispense per phase, mL (0: continuous)")
    infused_ml = Cpt(Signal, value=math.nan, kind="hinted", doc="volume infused, mL")
    withdrawn_ml = Cpt(Signal, value=math.nan, kind="normal", doc="volume withdrawn, mL")
    state = Cpt(Signal, value="unknown", kind="normal",
                doc="infusing, withdrawing, stopped, paused, ...")
    alarm = Cpt(Signal, value="", kind="normal", doc="last alarm reported since start, or ''")
    diameter_mm = Cpt(Signal, value=math.nan, kind="config", doc="syringe inside diameter, mm")
    address = Cpt(Signal, value=0, kind="config", doc="pump network address")
    firmware = Cpt(Signal, value="", kind="config", doc="the pump's VER reply")

    def __init__(self, url: str, *, name: str, diameter_mm: float, address: int = 0,
                 timeout_s: float = 0.5, retries: int = 2, **kwargs):
        url = validation.text("url", url)
        lo, hi = DIAMETER_RANGE_MM
        if not lo <= _checked("diameter_mm", diameter_mm, {"mm": 1.0}) <= hi:
            raise ValueError(f"diameter_mm must be in [{lo}, {hi}] mm, got {diameter_mm!r}")
        address = validation.integer("address", address, minimum=0, maximum=99)
        timeout_s = validation.real("timeout_s", timeout_s, above=0, unit="s")
        retries = validation.integer("retries", retries, minimum=0)
        super().__init__(prefix="", name=name, **kwargs)
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self._diameter_text = _encode(float(diameter_mm), {"mm": 1.0})[0]
        self._address = address
        self._put(self.address, address)
        self._link = SerialLink(url, self.timeout_s, baudrate=19200, bytesize=8, parity="N",
                                stopbits=1)
        self._lock = threading.RLock()
        self._configured = False

    # -- actions -----------------------------------------------------------------------
    def stage(self):
        self.configure_syringe()
        return super().stage()

    def configure_syringe(self) -> None:
        """Read the firmware version; set the syringe diameter if the pump has another."""
        with self._lock:
            self._put(self.firmware, self._query("VER", r"[\x20-\x7e]+")[0])
            if float(self._query("DIA", r"[\d.]+")[0]) != float(self._diameter_text):
                self._request("DIA" + self._diameter_text)
            self._put(self.diameter_mm, float(self._diameter_text))
            self._configured = True
            self.refresh()

    def start(self, rate_ml_min: float, direction: str | None = None,
              target_volume_ml: float | None = None) -> None:
        """Pump at ``rate_ml_min``; returns once the pump reports running at that rate.

        ``direction`` "INF"/"WDR" (None: keep), ``target_volume_ml`` per phase (0:
        continuous, None: keep). Bad arguments raise ValueError before anything is
        sent. Any failure after that (:class:`PumpRefused`, :class:`PumpAlarm`,
        :class:`PumpCommunicationError`) leaves the pump stopped, as far as it can be
        reached, and is re-raised.
        """
        rate = _checked("rate_ml_min", rate_ml_min, RATE_UNITS_ML_MIN)
        if direction is not None:
            if not isinstance(direction, str) or direction.upper() not in ("INF", "WDR"):
                raise ValueError(f"direction must be 'INF' or 'WDR', got {direction!r}")
            direction = direction.upper()
        if target_volume_ml is not None:
            target_volume_ml = _checked("target_volume_ml", target_volume_ml, VOLUME_UNITS_ML,
                                        zero_ok=True)
        with self._lock:
            try:
                self._start(rate, direction, target_volume_ml)
            except PumpError:
                self._halt_quietly()
                raise

    def set(self, rate_ml_min: float) -> DeviceStatus:
        """Bluesky entry point: :meth:`start` at ``rate_ml_min`` in the current direction.

        ValueError is raised at once; pump failures fail the returned Status.
        """
        _checked("rate_ml_min", rate_ml_min, RATE_UNITS_ML_MIN)
        status = DeviceStatus(self)
        try:
            self.start(rate_ml_min)
        except PumpError as err:
            status.set_exception(err)
        else:
            status.set_finished()
        return status

    def stop(self, *, success: bool = False) -> None:
        """Bring the pump to the safe state: stopped (``STP`` until it reports S).

        Raises :class:`PumpCommunicationError` when the pump could not be reached.
        """
        try:
            with self._lock:
                self._stp_until("S")
                self._refresh_quietly()
        except PumpCommunicationError:
            logger.error("%s: could not stop the pump", self.name)
            raise
        finally:
            super().stop(success=success)

    def clear_dispensed(self) -> None:
        """Zero the infused and withdrawn volume counters."""
        with self._lock:
            self._request("CLDINF")
            self._request("CLDWDR")
            self.refresh()

    def trigger(self) -> DeviceStatus:
        """Read state, rate, direction, target and dispensed volumes into the signals."""
        self.refresh()
        status = DeviceStatus(self)
        status.set_finished()
        return status

    def refresh(self) -> dict:
        """Query status, RAT, DIR, VOL and DIS; update the signals; return the values."""
        with self._lock:
            status = self._request("").status
            rate = self._query("RAT", _RATE)
            target = self._query("VOL", _VOLUME)
            dis = self._query("DIS", r"I([\d.]+)W([\d.]+)(UL|ML)")
            scale = VOLUME_UNITS_ML[dis[3]]
            rate_ml_min = float(rate[1]) * RATE_UNITS_ML_MIN[rate[2]]
            values = {"state": STATES[status], "rate_ml_min": rate_ml_min,
                      "direction": self._query("DIR", r"INF|WDR")[0],
                      "target_volume_ml": float(target[1]) * VOLUME_UNITS_ML[target[2]],
                      "infused_ml": float(dis[1]) * scale, "withdrawn_ml": float(dis[2]) * scale,
                      "flow_ml_min": {"I": rate_ml_min, "W": -rate_ml_min}.get(status, 0.0)}
            for key, value in values.items():
                self._put(getattr(self, key), value)
            return values

    def close(self) -> None:
        """Close the serial port (it is reopened by the next request)."""
        with self._lock:
            self._link.close()

    # -- internals -----------------------------------------------------------------------
    def _start(self, rate: float, direction: str | None, volume: float | None) -> None:
        if not self._configured:
            self.configure_syringe()
        running = self._request("").status in "IW"
        rate_units = self._query("RAT", _RATE)[2]
        rate_text, new_rate_units = _encode(rate, RATE_UNITS_ML_MIN, prefer=rate_units)
        if direction is not None and direction == self._query("DIR", r"INF|WDR")[0]:
            direction = None  # already so: no DIR, no pause
        commands = [f"DIR{direction}"] if direction else []
        if volume is not None:
            volume_units = self._query("VOL", _VOLUME)[2]
            text, new_units = (_encode(volume, VOLUME_UNITS_ML, prefer=volume_units)
                               if volume > 0 else ("0", volume_units))
            commands += ["VOL" + new_units] * (new_units != volume_units) + ["VOL" + text]
        if running and (new_rate_units != rate_units or commands):
            self._stp_until("SP")  # units and direction change only when not pumping
        for command in commands + [f"RAT{rate_text}{new_rate_units}"]:
            self._request(command)
        self._run()
        values = self.refresh()
        expected = float(rate_text) * RATE_UNITS_ML_MIN[new_rate_units]
        if abs(values["flow_ml_min"]) != values["rate_ml_min"] \
                or abs(values["rate_ml_min"] - expected) > 1e-9 * expected:
            raise PumpError(f"{self.name}: after RUN the pump reports {values['state']} at "
                            f"{values['rate_ml_min']:g} mL/min, not {expected:g} mL/min")
        self._put(self.alarm, "")
        logger.info("%s: %s at %s mL/min", self.name, values["state"], expected)

    def _run(self) -> None:
        """RUN; after a lost reply, read the state and re-send only if the pump is not running."""
        causes = []
        for _ in range(self.retries + 1):
            try:
                if self._exchange("RUN", "").status in "IW":
                    return
                causes.append("the pump does not report running after RUN")
            except _Fault as fault:
                causes.append(str(fault))
                if self._request("").status in "IW":
                    return  # it did run: no second RUN
            except PumpRefused as refusal:
                if refusal.code != "COM":  # COM: garbled on the way in, not executed
                    raise
                causes.append(str(refusal))
        raise PumpCommunicationError(f"{self.name}: RUN not confirmed: {attempts_text(causes)}")

    def _stp_until(self, done: str) -> None:
        """STP until the pump's state is one of ``done`` ("S" stopped, "SP" paused or stopped).

        The state is read back after every STP, so a lost reply never leads to a blind
        second STP (which would turn a pause into the end of the pumping phase).
        """
        for _ in range(self.retries + 3):
            try:
                if self._request("").status in done:
                    return
            except PumpAlarm:
                continue  # acknowledged by being reported: read the state again
            try:
                self._exchange("STP", "")
            except (_Fault, PumpError):
                pass
        raise PumpCommunicationError(f"{self.name}: the pump does not report "
                                     f"{' or '.join(STATES[c] for c in done)}")

    def _halt_quietly(self) -> None:
        try:
            self._stp_until("S")
        except PumpError as err:
            logger.error("%s: could not bring the pump to a stop: %s", self.name, err)
            return
        self._refresh_quietly()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except PumpError as err:
            logger.warning("%s: refresh failed: %s", self.name, err)

    def _query(self, command: str, pattern: str) -> re.Match:
        return re.fullmatch(pattern, self._request(command, pattern).data)

    # -- transport -----------------------------------------------------------------------
    def _request(self, command: str, expect: str = "") -> _Reply:
        """Exchange a query or idempotent setting with bounded retries."""
        causes = []
        with self._lock:
            for _ in range(self.retries + 1):
                try:
                    return self._exchange(command, expect)
                except _Fault as fault:
                    causes.append(str(fault))
                except PumpRefused as refusal:
                    if refusal.code != "COM":  # COM: the packet was garbled on the way in
                        raise
                    causes.append(str(refusal))
        raise PumpCommunicationError(f"{self.name}: {command or 'status'} failed after "
                                     f"{self.retries + 1} attempts on {self.url}: "
                                     f"{attempts_text(causes)}")

    def _exchange(self, command: str, expect: str) -> _Reply:
        """One packet and its reply; raise on refusal / alarm, :class:`_Fault` on garbage."""
        packet = (f"{self._address}{command}" if self._address else command).encode() + b"\r"
        self._link.clear()
        self._link.write(packet)
        frame = self._link.read_until(b"\x03", time.monotonic() + self.timeout_s)
        frame = frame.decode("ascii", "replace")
        match = _FRAME.fullmatch(frame)
        if match is None or int(match[1]) != self._address:
            raise _Fault(f"garbled reply {frame[:40]!r}")
        status, data = match[2], match[3]
        if status.startswith("A?"):
            code = status[2]
            self._put(self.alarm, ALARMS[code])
            self._put(self.state, "alarm")
            self._configured &= code != "R"
            raise PumpAlarm(f"{self.name}: pump alarm {status}: {ALARMS[code]}; "
                            f"{command or 'status'} not executed", code=code)
        if data.startswith("?"):
            code = data[1:]
            if code not in REFUSALS:
                raise _Fault(f"garbled reply {frame[:40]!r}")
            raise PumpRefused(f"{self.name}: {command or 'status'} refused: ?{code} "
                              f"({REFUSALS[code]})", code=code)
        if not re.fullmatch(expect, data):
            raise _Fault(f"unexpected reply {frame[:40]!r} to {command or 'status'}")
        self._put(self.state, STATES[status])
        return _Reply(status, data)

    def _put(self, signal: Signal, value) -> None:
        signal.put(value, timestamp=timebase.now())
