"""One Modbus RTU controller's transactions through minimalmodbus on a pyserial port
(``serial.serial_for_url``: ``/dev/ttyUSB0``, ``socket://host:port``): serialised by one lock,
retried with the port closed and reopened between attempts, stamped with ``timebase.now()`` at
the reply, the RTU silence before a request counted on the timebase (:meth:`ModbusRtuPort.rest`
waits it there, for a loop on a thread of its own). The heating controller
(:mod:`ncsynth.devices.heater`) reads and writes its registers through one of these.
"""

from __future__ import annotations

import logging
import threading
import time

import minimalmodbus
import serial

from ncsynth import timebase

from .serial_link import close_in_background

log = logging.getLogger(__name__)


class HeaterCommunicationError(IOError):
    """The controller could not be reached after the allowed retries.

    Attributes: ``device`` (name), ``request`` (e.g. "read register 1 (process value)"),
    ``cause`` (the last underlying exception), ``attempts``.
    """

    def __init__(self, device: str, request: str, cause: BaseException, attempts: int):
        self.device, self.request, self.cause, self.attempts = device, request, cause, attempts
        super().__init__(f"{device}: {request} failed after {attempts} attempt(s): "
                         f"{type(cause).__name__}: {cause}")


class ModbusRtuPort:
    """One controller's Modbus RTU transactions: serialised, retried, reconnected."""

    def __init__(self, url: str, slave_address: int, timeout_s: float, retries: int,
                 baudrate: int, device_name: str):
        self.url, self.slave_address = url, slave_address
        self.timeout_s, self.retries, self.baudrate = timeout_s, retries, baudrate
        self.device_name = device_name
        self._lock = threading.Lock()
        self._instrument: minimalmodbus.Instrument | None = None
        self._last_reply_at: float | None = None  # timebase.now() of the last reply

    def _open(self) -> minimalmodbus.Instrument:
        port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.timeout_s,
                                     write_timeout=self.timeout_s)
        return minimalmodbus.Instrument(port, self.slave_address)

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        """Forget the port and close it in the background (:func:`close_in_background`)."""
        if self._instrument is not None:
            close_in_background(self._instrument.serial, name=f"{self.device_name}-close")
            self._instrument = None

    def transact(self, request: str, call):
        """Run ``call(instrument)``; return ``(result, timebase.now() at the reply)``."""
        with self._lock:
            for attempt in range(1, self.retries + 2):
                try:
                    if self._instrument is None:
                        self._instrument = self._open()
                    self._count_silence_on_the_timebase()
                    result = call(self._instrument)
                    self._last_reply_at = timebase.now()
                    return result, self._last_reply_at
                except minimalmodbus.SlaveReportedException as exc:
                    # the controller answered and refused: retrying would not help
                    raise HeaterCommunicationError(self.device_name, request, exc, attempt) from exc
                except (minimalmodbus.MasterReportedException, serial.SerialException,
                        OSError) as exc:
                    self._discard()
                    log.warning("%s: %s, attempt %d of %d: %s", self.device_name, request,
                                attempt, self.retries + 1, exc)
                    if attempt > self.retries:
                        raise HeaterCommunicationError(self.device_name, request, exc,
                                                       attempt) from exc
                    # serial-level back-off, wall time like the serial time-out itself
                    time.sleep(min(0.05, self.timeout_s))

    def _count_silence_on_the_timebase(self) -> None:
        """minimalmodbus keeps the silence before a request in wall time, from its own record
        of the port's last reply (``minimalmodbus._latest_read_times``, by port name). The
        line's time is the timebase's: once the silence has passed there since the last reply
        (at the hutch the same wall time; on a jumping world clock, seconds of world in a few
        wall ms: a settle poll's wait) that record is dropped, and the silence is not waited
        out again in wall time. The silence is minimalmodbus's own (3.5 characters at the
        port's baud rate, at least 1.75 ms). Where minimalmodbus keeps no such record, or does
        not say how long its silence is, it waits as before."""
        latest = getattr(minimalmodbus, "_latest_read_times", None)
        line_free_at = self._line_free_at()
        if isinstance(latest, dict) and line_free_at is not None \
                and timebase.now() >= line_free_at:
            latest.pop(self._instrument.serial.port, None)

    def _line_free_at(self) -> float | None:
        """Timebase time at which the RTU silence after the last reply has passed, or None
        (no reply yet, or minimalmodbus does not say how long its silence is)."""
        silence_s = getattr(minimalmodbus, "_calculate_minimum_silent_period", None)
        if self._last_reply_at is None or not callable(silence_s):
            return None
        return self._last_reply_at + silence_s(self.baudrate)

    def rest(self, cancel: threading.Event | None = None) -> bool:
        """Wait on the timebase until the RTU silence has passed since the last reply, so the
        next request goes out at once; False if ``cancel`` was set first. For a loop on a
        thread of its own that makes two requests back to back (the heater's settle poll):
        on a jumping world clock the silence is then 4 ms of world (a jump) instead of 4 ms
        of wall in which the clock may not move (issue 18); at the hutch the same wait.
        Not for a caller whose work the world clock waits for (a ``set()`` on the
        RunEngine's thread): that one lets minimalmodbus wait in wall time."""
        line_free_at = self._line_free_at()
        if line_free_at is None:
            return not (cancel is not None and cancel.is_set())
        return timebase.sleep_until(line_free_at, cancel)

    def read(self, register: int, what: str) -> tuple[int, float]:
        """Raw signed int16 of ``register`` and the reply's timestamp."""
        return self.transact(f"read register {register} ({what})",
                             lambda ins: ins.read_register(register, 0, 3, signed=True))

    def read_block(self, first: int, count: int, what: str) -> tuple[list[int], float]:
        """Raw signed int16 of registers ``first .. first+count-1`` (one function-3 request)
        and the reply's timestamp."""
        raws, timestamp = self.transact(
            f"read registers {first}-{first + count - 1} ({what})",
            lambda ins: ins.read_registers(first, count, 3))
        return [raw - 0x10000 if raw & 0x8000 else raw for raw in raws], timestamp

    def write_tenths(self, register: int, value: float, what: str) -> float:
        """Write a one-decimal value; return the timestamp of the acknowledgement."""
        return self.transact(f"write {value:g} to register {register} ({what})",
                             lambda ins: ins.write_register(register, value, 1, 6,
                                                            signed=True))[1]

    def write_raw(self, register: int, value: int, what: str) -> float:
        return self.transact(f"write {value} to register {register} ({what})",
                             lambda ins: ins.write_register(register, value, 0, 6))[1]
