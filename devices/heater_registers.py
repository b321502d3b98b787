"""The heating controller's registers as ophyd Signals (Eurotherm 3200 over Modbus RTU, seed
000 §S.1.4): one-decimal values sent ×10 as int16 (:data:`REGISTER_LIMIT`), read and written
through the parent :class:`~ncsynth.devices.heater.HeatingController`'s port, which also
decodes them (a sensor break trips the heater). See :mod:`ncsynth.devices.heater` for the
register table.
"""

from __future__ import annotations

from ophyd import DeviceStatus, Signal
from ophyd.utils import ReadOnlyError

from ncsynth import validation
from . import background

REGISTER_LIMIT = 3276.7  # largest one-decimal value an int16 register carries


def read_in_background(owner, read) -> DeviceStatus:
    """``read()`` on a worker of the device pool; the Status of ``owner`` it returns fails
    with what ``read`` raised (HeaterCommunicationError, a tripped sensor break)."""
    status = DeviceStatus(owner)

    def transact():
        try:
            read()
        except Exception as exc:
            status.set_exception(exc)
        else:
            status.set_finished()

    background.run(transact, name=f"{owner.name}-read")
    return status


class ControllerRegister(Signal):
    """A one-decimal controller parameter whose ``get()`` is a Modbus read.

    ``register`` is the Modbus address, ``what`` its name in error messages; ``units``
    and ``precision`` go into ``describe()``. ``put()`` (writable registers only) writes
    through the parent's port after :meth:`check_value`.
    """

    def __init__(self, *, register: int, what: str, units: str, precision: int = 1,
                 writable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.register, self.what = register, what
        self._units, self._precision, self._writable = units, precision, writable
        self._triggered: tuple[float, float] | None = None  # (value, timestamp) of trigger()

    @property
    def source_name(self) -> str:
        return f"modbus-rtu:{self.parent.url}#slave{self.parent.slave_address}/reg{self.register}"

    @property
    def write_access(self) -> bool:
        return self._writable

    def get(self, **kwargs) -> float:
        raw, timestamp = self.parent._port.read(self.register, self.what)
        value = self.parent._decode(self.register, raw)
        self._update(value, timestamp)
        return value

    def trigger(self) -> DeviceStatus:
        """Read the register in the background; the next ``read()`` reports that value.

        The transaction (a few ms at 9600 baud) then overlaps whatever else was triggered
        with it instead of adding to it. A frame's readings go through the controller's own
        :meth:`~ncsynth.devices.heater.HeatingController.trigger` instead: one request for
        the three registers.
        """
        def transact():
            value = self.get()
            self._triggered = (value, self._metadata["timestamp"])

        self._triggered = None
        return read_in_background(self, transact)

    def read(self) -> dict:
        """The value of the last :meth:`trigger` (once), else a Modbus read now."""
        triggered, self._triggered = self._triggered, None
        if triggered is None:
            return super().read()
        value, timestamp = triggered
        return {self.name: {"value": value, "timestamp": timestamp}}

    def put(self, value, **kwargs) -> None:
        """Write ``value`` as the controller keeps it (:meth:`stored`)."""
        if not self._writable:
            raise ReadOnlyError(f"{self.name} is read-only")
        self.check_value(value)
        stored = self.stored(value)
        timestamp = self.parent._port.write_tenths(self.register, stored, self.what)
        self._update(stored, timestamp)

    @staticmethod
    def stored(value) -> float:
        """The value the controller keeps for ``value``: one decimal."""
        return round(float(value), 1)

    def _set_and_wait(self, value, timeout, **kwargs):
        """``set()`` ends once the register reads back what it stores (242.8 for 242.8125),
        not the float asked for, which it would wait for forever, polling the link."""
        return super()._set_and_wait(self.stored(value), timeout, **kwargs)

    def check_value(self, value) -> None:
        validation.real(self.name, value, minimum=-REGISTER_LIMIT, maximum=REGISTER_LIMIT)

    def _update(self, value: float, timestamp: float) -> None:
        old, self._readback = self._readback, value
        self._metadata["timestamp"] = timestamp
        self._run_subs(sub_type=self.SUB_VALUE, old_value=old, value=value, timestamp=timestamp)

    def describe(self):
        return {self.name: {"source": self.source_name, "dtype": "number", "shape": [],
                            "units": self._units, "precision": self._precision}}


class SetpointRegister(ControllerRegister):
    """The target setpoint: refuses values above the device's ``max_temperature_c``."""

    def check_value(self, value) -> None:
        self.parent.check_setpoint(value)


class RampRateRegister(ControllerRegister):
    """The setpoint rate limit, °C/min, 0 = off."""

    def check_value(self, value) -> None:
        super().check_value(value)
        if value < 0:
            raise ValueError(f"{self.name} must be >= 0 °C/min (0 = no ramp), got {value!r}")
