"""Modbus RTU interface of the simulated Eurotherm 3200 heating controller (seed 000 §S.1.4).

The protocol half of the Lewis split: a pymodbus 3.9.2 server speaking **RTU framing over
TCP** (what a serial-to-Ethernet terminal server in front of an RS-485 controller does),
whose holding registers are backed by a :class:`~ncsynth.simulators.thermal.
ControllerModel` and the :class:`~ncsynth.simulators.thermal.FlaskThermalModel` it heats:
by default the world's ``world.controller`` and ``world.flask`` (the beamline's flask), or
the pair given to :class:`EurothermInterface` (one zone of the flow reactor, one controller
per zone). Every request first calls ``world.advance()``, so a read returns the live
process value. pymodbus does the framing and CRCs.

Register table (holding registers, function 3 to read, 6 or 16 to write; the Eurotherm
3200 "lower" 16-bit addresses; one-decimal values are sent as value×10 in int16 two's
complement):

====  ======================================  ========  ======  ==========================
addr  parameter                               scale     access  notes
====  ======================================  ========  ======  ==========================
1     PV, process value (thermocouple) °C     ×10       R       0x8000 while sensor break
2     target setpoint °C                      ×10       R/W
3     output level %                          ×10       R/W     write only in manual mode
5     working setpoint °C (after the ramp)    ×10       R
13    alarm 1 threshold (full-scale high) °C  ×10       R/W
35    setpoint rate limit °C/min, 0 = off     ×10       R/W
75    instrument status word                  bits      R       b0 alarm 1, b4 manual,
                                                                b5 sensor break
258   sensor break status                     0/1       R
273   auto (0) / manual (1)                   0/1       R/W
294   alarm 1 status                          0/1       R
====  ======================================  ========  ======  ==========================

Other addresses answer "illegal data address" (exception 2); a write to a read-only
register or of an out-of-range value answers "illegal data value" (exception 3). Requests
to another slave address are not answered (an RS-485 bus stays silent).
"""

from __future__ import annotations

from pymodbus.datastore import ModbusBaseSlaveContext, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer

PV, TARGET_SP, OUTPUT, WORKING_SP, ALARM1_THRESHOLD, SP_RATE = 1, 2, 3, 5, 13, 35
STATUS_WORD, SENSOR_BREAK, AUTO_MANUAL, ALARM1_STATUS = 75, 258, 273, 294
STATUS_ALARM1, STATUS_MANUAL, STATUS_SENSOR_BREAK = 0x01, 0x10, 0x20
BAD_VALUE = 0x8000  # the PV register's "no valid reading" (int16 -32768)


def encode_tenths(value: float) -> int:
    """A one-decimal value as the uint16 the wire carries (value×10, two's complement)."""
    raw = round(value * 10)
    if not -0x8000 < raw <= 0x7FFF:
        raise ValueError(f"{value!r} does not fit a one-decimal int16 register")
    return raw & 0xFFFF


def decode_tenths(raw: int) -> float:
    """The value a uint16 one-decimal register holds."""
    return (raw - 0x10000 if raw & 0x8000 else raw) / 10.0


class _InvalidWrite(Exception):
    """A write the controller refuses with 'illegal data value'."""


class EurothermRegisters(ModbusBaseSlaveContext):
    """One slave's register map, read from and written to the world models.

    ``controller`` and ``thermal`` default to ``world.controller`` and ``world.flask``.
    """

    def __init__(self, world, controller=None, thermal=None):
        self.world = world
        self._controller, self._thermal = controller, thermal
        self.read_requests = 0  # back door: function-3 requests served (tests count them)

    @property
    def controller(self):
        return self.world.controller if self._controller is None else self._controller

    @property
    def thermal(self):
        return self.world.flask if self._thermal is None else self._thermal

    def reset(self) -> None:  # pymodbus interface; the models hold the state
        pass

    # -- reads ----------------------------------------------------------------------------
    def _read(self, address: int) -> int:
        controller, flask = self.controller, self.thermal
        if address == PV:
            return BAD_VALUE if controller.sensor_break else encode_tenths(flask.thermocouple_c)
        if address == TARGET_SP:
            return encode_tenths(controller.target_setpoint_c)
        if address == OUTPUT:
            return encode_tenths(controller.output_percent)
        if address == WORKING_SP:
            return encode_tenths(controller.working_setpoint_c)
        if address == ALARM1_THRESHOLD:
            return encode_tenths(controller.high_alarm_c)
        if address == SP_RATE:
            return encode_tenths(controller.ramp_rate_c_per_min)
        if address == STATUS_WORD:
            return (STATUS_ALARM1 * controller.high_alarm | STATUS_MANUAL * controller.manual
                    | STATUS_SENSOR_BREAK * controller.sensor_break)
        if address == SENSOR_BREAK:
            return int(controller.sensor_break)
        if address == AUTO_MANUAL:
            return int(controller.manual)
        if address == ALARM1_STATUS:
            return int(controller.high_alarm)
        raise KeyError(address)

    def getValues(self, fc_as_hex: int, address: int, count: int = 1):
        """Registers ``address .. address+count-1``, or a Modbus exception code."""
        with self.world.lock:
            self.read_requests += 1
            self.world.advance(slow=False)  # the controller reads no slow model
            try:
                return [self._read(a) for a in range(address, address + count)]
            except KeyError:
                return ExceptionResponse.ILLEGAL_ADDRESS

    # -- writes ---------------------------------------------------------------------------
    def _write(self, address: int, raw: int) -> None:
        controller = self.controller
        try:
            if address == TARGET_SP:
                controller.set_target_setpoint(decode_tenths(raw))
            elif address == OUTPUT:
                if not controller.manual:
                    raise _InvalidWrite("output level is read-only in auto mode")
                controller.set_manual_output(decode_tenths(raw))
            elif address == ALARM1_THRESHOLD:
                controller.high_alarm_c = decode_tenths(raw)
            elif address == SP_RATE:
                controller.set_ramp_rate(decode_tenths(raw))
            elif address == AUTO_MANUAL:
                if raw not in (0, 1):
                    raise _InvalidWrite(f"auto/manual must be 0 or 1, got {raw}")
                controller.set_manual(raw == 1)
            else:
                self._read(address)  # KeyError for an unknown address
                raise _InvalidWrite(f"register {address} is read-only")
        except ValueError as exc:
            raise _InvalidWrite(str(exc)) from exc

    def setValues(self, fc_as_hex: int, address: int, values):
        """Write ``values`` from ``address`` on; None, or a Modbus exception code."""
        with self.world.lock:
            self.world.advance(slow=False)  # the controller reads no slow model
            try:
                for offset, raw in enumerate(values):
                    self._write(address + offset, raw)
            except KeyError:
                return ExceptionResponse.ILLEGAL_ADDRESS
            except _InvalidWrite:
                return ExceptionResponse.ILLEGAL_VALUE
        return None


class EurothermInterface:
    """The simulated controller on the wire: ``await start(host, port) -> port``, ``await stop()``.

    Serves ``controller`` (ControllerModel) heating ``thermal`` (FlaskThermalModel); both
    default to the world's ``controller`` and ``flask``. ``slave_address`` is the
    controller's Modbus address (1..247).
    """

    def __init__(self, world, slave_address: int = 1, *, controller=None, thermal=None):
        if not (isinstance(slave_address, int) and 1 <= slave_address <= 247):
            raise ValueError(f"slave_address must be an int in 1..247, got {slave_address!r}")
        if (controller is None) != (thermal is None):
            raise ValueError("give both controller and thermal, or neither (the world's)")
        self.world = world
        self.slave_address = slave_address
        self.controller, self.thermal = controller, thermal
        self.port: int | None = None
        self.registers: EurothermRegisters | None = None  # once started (its back door)
        self._server: ModbusTcpServer | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port); return the bound port."""
        registers = self.registers = EurothermRegisters(self.world, self.controller, self.thermal)
        context = ModbusServerContext(slaves={self.slave_address: registers}, single=False)
        self._server = ModbusTcpServer(context, framer=FramerType.RTU, address=(host, port),
                                       ignore_missing_slaves=True)
        await self._server.serve_forever(background=True)
        if self._server.transport is None:
            raise OSError(f"the Eurotherm simulator could not listen on {host}:{port}")
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
