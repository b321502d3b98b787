"""The flask's heating controller: a Eurotherm 3200 over Modbus RTU (seed 000 §S.1.4).

The heating ribbon round the flask is driven by the controller's own PID loop on a
thermocouple in the liquid; this device reads and commands that controller through
minimalmodbus on a pyserial port opened with ``serial.serial_for_url(url)``:
``/dev/ttyUSB0`` at the hutch, ``socket://host:port`` for a terminal server or the simulator.

Registers used (Eurotherm 3200 "lower" 16-bit addresses, one-decimal values sent ×10 as
int16; see :mod:`ncsynth.simulators.eurotherm` for the simulator's full table):

====  ===============================  =====================================
addr  parameter                        used by
====  ===============================  =====================================
1     process value °C                 ``temperature`` (0x8000 = sensor break)
2     target setpoint °C               ``setpoint``, :meth:`set`, :meth:`safe_off`
3     output level %                   ``output``; written 0 by :meth:`safe_off`
5     working setpoint °C              ``working_setpoint``, :meth:`stop`
35    setpoint rate limit °C/min       ``ramp_rate`` (0 = off)
75    instrument status word           settle polling: b0 alarm 1, b5 sensor break
273   auto (0) / manual (1)            :meth:`set` (auto), :meth:`safe_off` (manual)
====  ===============================  =====================================

The device's own ``trigger()`` and ``read()`` (a frame's heater readings) read registers 1-3
in one request (:attr:`HeatingController.READINGS`).

Safety:

* ``max_temperature_c`` bounds every setpoint; larger ones raise ValueError before a byte
  is sent.
* A sensor break (PV reads 0x8000, or status bit 5) or the controller's high alarm
  (alarm 1) fails the pending :meth:`set` status and drives the heater safe.
* SAFE for a heating ribbon means **no power**, independent of the thermocouple: the target
  setpoint goes to ``safe_setpoint_c`` (so auto mode would not reheat either), then the
  controller goes to manual with 0 % output. Manual 0 % is what stays safe with a broken
  thermocouple; a low setpoint alone relies on the thermocouple reading.
* The safe state is pursued until the controller's read-back (manual, 0 % output) confirms
  it (:class:`~ncsynth.devices.safe_state.SafeStatePursuit`): :meth:`safe_off` waits up to
  ``SAFE_CONFIRM_WAIT_S`` and raises :class:`HeaterNotSafeError` if the link is still down,
  while the pursuit goes on in the background, with back-off, until the link returns.
  ``safe_state`` (text) says where it stands; a plan records it in the run. Only a new
  :meth:`set` ends an unconfirmed pursuit; :meth:`destroy` waits for it.
* After a fault has tripped the heater, ``fault`` holds the reason (until the next
  :meth:`set`), so that a plan ends the run as a failure with that reason.
* :meth:`stop` (bluesky calls it on pause/abort) ends a pending :meth:`set` and holds the
  current working setpoint: it does NOT cool, because pausing a hot-injection run must not
  quench the reaction. Switching the heat off is :meth:`safe_off`'s job.

Serial faults (time-out, bad CRC, short or garbled reply, port closed) are retried
``retries`` times, the port being closed and reopened between attempts (this also discards
a late reply to the previous request, which Modbus RTU could not tell from the next
reply), then :class:`HeaterCommunicationError` names the device, the request and the cause.
One lock serialises every transaction. Read-backs are stamped with ``timebase.now()`` when
the reply arrived; settling is timed on the timebase, serial time-outs in wall time.

Note: the default ``tolerance_c`` (10 °C) is wide on purpose: the paper's loop oscillates
±6.5 °C about its setpoint (§S.1.2), so a tighter band would never settle. Tighten it for
a well-tuned loop.
"""

from __future__ import annotations

import logging
import math
import threading

from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Signal
from ophyd.utils import InvalidState

from ncsynth import timebase, validation
from . import background
from .heater_registers import (REGISTER_LIMIT, ControllerRegister, RampRateRegister, SetpointRegister,
                               read_in_background)
from .modbus_rtu import HeaterCommunicationError, ModbusRtuPort
from .safe_state import SafeStatePursuit

log = logging.getLogger(__name__)

PV, TARGET_SP, OUTPUT, WORKING_SP, SP_RATE = 1, 2, 3, 5, 35
STATUS_WORD, AUTO_MANUAL = 75, 273
STATUS_ALARM1, STATUS_SENSOR_BREAK = 0x01, 0x20
SENSOR_BREAK_RAW = -0x8000


class HeaterFaultError(RuntimeError):
    """The controller reported a sensor break or an over-temperature alarm."""


class HeaterNotSafeError(RuntimeError):
    """The heater could not be confirmed safe yet; the pursuit goes on in the background."""


class HeatingController(Device):
    """The flask's PID heating controller (Eurotherm 3200, Modbus RTU); see the module docstring.

    Parameters
    ----------
    url : serial port for ``serial.serial_for_url`` (``/dev/ttyUSB0``, ``socket://host:port``)
    name : ophyd name
    slave_address : Modbus address of the controller, 1..247
    max_temperature_c : largest setpoint accepted, °C
    tolerance_c : |read-back − setpoint| band for settling, °C
    settle_time_s : how long the read-back must stay in the band, s of timebase time
    timeout_s : serial reply time-out per attempt, s of wall time
    retries : extra attempts after a failed transaction
    poll_interval_s : read-back polling period while settling, s of timebase time
    safe_setpoint_c : the target setpoint :meth:`safe_off` leaves behind, °C
    baudrate : serial line speed (ignored by ``socket://``)
    """

    temperature = Cpt(ControllerRegister, register=PV, what="process value", units="degC",
                      kind="hinted")
    setpoint = Cpt(SetpointRegister, register=TARGET_SP, what="target setpoint", units="degC",
                   writable=True, kind="normal")
    output = Cpt(ControllerRegister, register=OUTPUT, what="output level", units="%",
                 kind="normal")
    working_setpoint = Cpt(ControllerRegister, register=WORKING_SP, what="working setpoint",
                           units="degC", kind="omitted")
    ramp_rate = Cpt(RampRateRegister, register=SP_RATE, what="setpoint rate limit",
                    units="degC/min", writable=True, kind="config")
    safe_state = Cpt(Signal, value="not commanded safe yet", kind="omitted")

    #: The readings a frame records, adjacent registers (PV, target setpoint, output): one
    #: request reads them at one instant. At 9600 baud that is ~22 ms on the line instead of
    #: 3 × ~17 ms plus the RTU silence (3.5 characters, 4 ms) before each request after the
    #: first, and in a dry run the silences were a fifth of the wall time (issue 18).
    READINGS = ("temperature", "setpoint", "output")

    SAFE_CONFIRM_WAIT_S = 5.0  # wall seconds safe_off() waits for the confirmation

    def __init__(self, url: str, *, name: str, slave_address: int = 1,
                 max_temperature_c: float = 300.0, tolerance_c: float = 10.0,
                 settle_time_s: float = 60.0, timeout_s: float = 0.5, retries: int = 3,
                 poll_interval_s: float = 2.0, safe_setpoint_c: float = 25.0,
                 baudrate: int = 9600, **kwargs):
        url = validation.text("url", url)
        slave_address = validation.integer("slave_address", slave_address, minimum=1, maximum=247)
        self.max_temperature_c = validation.real("max_temperature_c", max_temperature_c,
                                                 maximum=REGISTER_LIMIT, unit="°C")
        self.tolerance_c = validation.real("tolerance_c", tolerance_c, above=0, unit="°C")
        self.settle_time_s = validation.real("settle_time_s", settle_time_s, minimum=0, unit="s")
        self.poll_interval_s = validation.real("poll_interval_s", poll_interval_s, above=0, unit="s")
        self.safe_setpoint_c = validation.real("safe_setpoint_c", safe_setpoint_c, unit="°C")
        if self.safe_setpoint_c > self.max_temperature_c:
            raise ValueError(f"safe_setpoint_c ({safe_setpoint_c!r}) must not exceed "
                             f"max_temperature_c ({max_temperature_c!r})")
        retries = validation.integer("retries", retries, minimum=0)
        timeout_s = validation.real("timeout_s", timeout_s, above=0, unit="s")
        baudrate = validation.integer("baudrate", baudrate, minimum=1)
        self.url, self.slave_address = url, slave_address
        super().__init__(name=name, **kwargs)
        self._port = ModbusRtuPort(url, slave_address, timeout_s, retries, baudrate, self.name)
        self._status_lock = threading.Lock()
        self._pending: DeviceStatus | None = None
        self._cancel: threading.Event | None = None
        self._tripped = False
        self.fault: str | None = None
        self._safe = SafeStatePursuit(self.name, self._drive_safe, self._safe_problem,
                                      lambda text: self.safe_state.put(text))

    # -- readings --------------------------------------------------------------------------
    def trigger(self) -> DeviceStatus:
        """Read :attr:`READINGS` in one Modbus transaction in the background; the next
        ``read()`` reports those values (with the reply's timestamp), as a triggered
        :class:`ControllerRegister` does. ``trigger_and_read([detector, heater])``."""
        for signal in self._readings():
            signal._triggered = None
        return read_in_background(self, self._read_readings)

    def read(self) -> dict:
        """The readings of the last :meth:`trigger` (once), else one block read now."""
        if any(signal._triggered is None for signal in self._readings()):
            self._read_readings()
        return super().read()

    def _readings(self) -> list[ControllerRegister]:
        return [getattr(self, attr) for attr in self.READINGS]

    def _read_readings(self) -> None:
        """One function-3 read of :attr:`READINGS`' registers; each signal then reports its
        value (a sensor break trips the heater, as a single read of the PV does)."""
        signals = self._readings()
        first = min(signal.register for signal in signals)
        count = max(signal.register for signal in signals) - first + 1
        raws, timestamp = self._port.read_block(
            first, count, ", ".join(signal.what for signal in signals))
        for signal in signals:
            value = self._decode(signal.register, raws[signal.register - first])
            signal._update(value, timestamp)
            signal._triggered = (value, timestamp)

    # -- checks and decoding ---------------------------------------------------------------
    def check_setpoint(self, value) -> None:
        """ValueError unless ``value`` (°C) is a finite number <= ``max_temperature_c``
        (TypeError if no number)."""
        validation.real("setpoint", value, unit="°C")
        if value > self.max_temperature_c:
            raise ValueError(f"{self.name}: setpoint {value!r} °C is above max_temperature_c "
                             f"= {self.max_temperature_c} °C; refused")
        if value < -REGISTER_LIMIT:
            raise ValueError(f"{self.name}: setpoint {value!r} °C is below the register range")

    def _decode(self, register: int, raw: int) -> float:
        if register == PV and raw == SENSOR_BREAK_RAW:
            self._trip(f"sensor break: the thermocouple reads open circuit "
                       f"(process value register {PV} = 0x8000)")
            return math.nan
        return raw / 10.0

    # -- motion ---------------------------------------------------------------------------
    def set(self, value) -> DeviceStatus:
        """Go to ``value`` °C in auto mode; the Status completes once the read-back has stayed
        within ``tolerance_c`` for ``settle_time_s`` and fails on a sensor break or alarm."""
        self.check_setpoint(value)
        value = float(value)
        self._finish_pending(RuntimeError(f"{self.name}: set({value}) superseded this one"))
        status = DeviceStatus(self)
        cancel = threading.Event()
        self._safe.cancel(join=True)  # heating again, deliberately
        self.setpoint.put(value)
        self._port.write_raw(AUTO_MANUAL, 0, "auto/manual")
        with self._status_lock:
            self._tripped, self.fault = False, None
            self._pending, self._cancel = status, cancel
        background.run(self._settle, value, status, cancel, name=f"{self.name}-settle")
        return status

    def _settle(self, target: float, status: DeviceStatus, cancel: threading.Event) -> None:
        inside_since = None
        try:
            # before each request the line's silence, on the timebase (ModbusRtuPort.rest)
            while not cancel.is_set() and self._port.rest(cancel):
                temperature = self.temperature.get()
                if cancel.is_set():  # a sensor break seen in the read-back has tripped
                    return
                if not self._port.rest(cancel):
                    return
                flags, now = self._port.read(STATUS_WORD, "instrument status")
                if flags & STATUS_SENSOR_BREAK:
                    self._trip("sensor break: the controller reports an open thermocouple")
                    return
                if flags & STATUS_ALARM1:
                    self._trip(f"over-temperature: the controller's high alarm (alarm 1) is "
                               f"active at {temperature} °C")
                    return
                if abs(temperature - target) <= self.tolerance_c:
                    inside_since = now if inside_since is None else inside_since
                    if now - inside_since >= self.settle_time_s:
                        self._finish(status, None)
                        return
                else:
                    inside_since = None
                timebase.sleep(self.poll_interval_s, cancel)
        except HeaterCommunicationError as exc:
            self._finish(status, exc)

    def _finish(self, status: DeviceStatus, exc: BaseException | None) -> None:
        with self._status_lock:
            if self._pending is status:
                self._cancel.set()
                self._pending = self._cancel = None
        try:
            if exc is None:
                status.set_finished()
            else:
                status.set_exception(exc)
        except InvalidState:  # completed meanwhile by another thread
            pass

    def _finish_pending(self, exc: BaseException) -> None:
        with self._status_lock:
            status = self._pending
        if status is not None:
            self._finish(status, exc)

    def _trip(self, reason: str) -> None:
        """A fault the controller reported: heater safe first, then fail the pending set()."""
        with self._status_lock:
            already, self._tripped = self._tripped, True
        if not already:
            log.error("%s: %s; switching the heater off", self.name, reason)
            if self._safe.pursue(self.SAFE_CONFIRM_WAIT_S):
                outcome = "heater switched off (manual, 0 % output, confirmed)"
            else:
                outcome = (f"heater {self._safe.problem}; still trying in the background, "
                           f"check it by hand")
            self.fault = f"{reason}; {outcome}"
            self._finish_pending(HeaterFaultError(f"{self.name}: {reason}; {outcome}"))

    def _drive_safe(self) -> None:
        errors = []
        for write in (lambda: self._port.write_tenths(TARGET_SP, self.safe_setpoint_c,
                                                      "target setpoint"),
                      lambda: self._port.write_raw(AUTO_MANUAL, 1, "auto/manual"),
                      lambda: self._port.write_tenths(OUTPUT, 0.0, "output level")):
            try:
                write()
            except HeaterCommunicationError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _safe_problem(self) -> str | None:
        """None if the controller reads back manual mode at 0 % output, else what is not."""
        mode, _ = self._port.read(AUTO_MANUAL, "auto/manual")
        output, _ = self._port.read(OUTPUT, "output level")
        if mode != 1:
            return "the controller reads back auto mode"
        if output != 0:
            return f"the controller reads back {output / 10:g} % output"
        return None

    def safe_off(self) -> None:
        """Heater off now: target setpoint to ``safe_setpoint_c``, manual mode, 0 % output,
        confirmed by reading the mode and output back.

        Fails a pending :meth:`set` status first. Every write is attempted even if an
        earlier one failed. Returns once the read-back confirms the safe state; after
        ``SAFE_CONFIRM_WAIT_S`` without confirmation raises :class:`HeaterNotSafeError`
        while the pursuit goes on in the background (see ``safe_state``).
        """
        self._finish_pending(HeaterFaultError(f"{self.name}: safe_off() switched the heater "
                                              f"off before the setpoint was reached"))
        if not self._safe.pursue(self.SAFE_CONFIRM_WAIT_S):
            raise HeaterNotSafeError(f"{self.name}: {self._safe.problem}; still trying in "
                                     f"the background")

    @property
    def safe_confirmed(self) -> bool:
        """True once the read-back has confirmed the latest safe-off (manual, 0 % output)."""
        return self._safe.confirmed

    def wait_safe(self, timeout_s: float | None = None) -> bool:
        """Block until a pursuit of the safe state under way is confirmed (None: as long as
        it takes, logging CRITICAL every 10 s); True if the heater is confirmed safe."""
        return self._safe.wait(timeout_s)

    def stop(self, *, success: bool = False) -> None:
        """End a pending :meth:`set` (failed unless ``success``) and hold the working setpoint."""
        with self._status_lock:
            pending = self._pending
        if pending is None:
            return
        self._finish(pending, None if success else
                     RuntimeError(f"{self.name}: stopped before the setpoint was reached"))
        hold = self.working_setpoint.get()
        if math.isfinite(hold):
            self._port.write_tenths(TARGET_SP, hold, "target setpoint")

    def destroy(self) -> None:
        """Close the port; first wait, as long as it takes, for a pursuit of the safe state
        that is still under way (Ctrl-C gives up, leaving the heater to the operator)."""
        self._finish_pending(RuntimeError(f"{self.name}: device destroyed"))
        if self._safe.pursuing and not self._safe.confirmed:
            log.critical("%s: not closing before the heater is confirmed safe: %s",
                         self.name, self._safe.problem)
            try:
                self._safe.wait()
            finally:
                self._safe.cancel()
        self._port.close()
        super().destroy()
