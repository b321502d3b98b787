"""Latency of one heater temperature read: the full device stack vs bare pyserial.

Both paths ask the same simulated Eurotherm (pymodbus RTU-over-TCP server behind the
FaultyLink, world on a real-time WorldClock) for holding register 1:

* stack:    ``HeatingController.temperature.get()`` (ophyd Signal -> lock/retry wrapper ->
            minimalmodbus -> pyserial ``socket://``), timestamped reading;
* baseline: pyserial alone, writing a precomputed request frame (built once with pymodbus'
            RTU framer) and reading the 7-byte reply by its known length.

Two regimes: **back-to-back** reads, where minimalmodbus enforces the Modbus RTU
inter-frame silence of 3.5 characters (4.0 ms at the controller's 9600 baud, which a
terminal server in front of an RS-485 line needs too; bare pyserial ignores it), and
**paced** reads 10 ms apart (the pause is not timed), where the silence has already
passed, as it has when the device polls every few seconds. Prints median and p99 in ms
for each path and the stack/baseline ratios. Run:

    python benchmarks/serial_roundtrip.py [--reads 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import serial
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from ncsynth import timebase
from ncsynth.devices.heater import PV, HeatingController
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.eurotherm import EurothermInterface
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.thermal import ControllerModel, FlaskThermalModel
from ncsynth.simulators.world import World

REPLY_BYTES = 7  # slave, function, byte count, 2 data bytes, 2 CRC bytes


def timed(call, reads: int, pause_s: float = 0.0) -> np.ndarray:
    """Wall-clock latency of ``reads`` calls, seconds, with an untimed pause before each."""
    latencies = np.empty(reads)
    for i in range(reads):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter()
        call()
        latencies[i] = time.perf_counter() - start
    return latencies


def compare(stack_read, bare_read, reads: int, pause_s: float):
    """Latencies in ms of both paths, measured in alternating blocks so that drift in
    machine load hits both alike."""
    stack, bare = [], []
    block = max(1, reads // 10)
    for _ in range(max(1, reads // block)):
        stack.append(timed(stack_read, block, pause_s))
        bare.append(timed(bare_read, block, pause_s))
    return np.concatenate(stack) * 1e3, np.concatenate(bare) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000, help="reads per path (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed reads per path")
    args = parser.parse_args()

    clock = WorldClock(speed=1.0)
    world = World(clock)
    world.add("flask", FlaskThermalModel())
    world.add("controller", ControllerModel())
    with SimulatorHost() as host, timebase.use_clock(clock):
        link = host.serve(EurothermInterface(world, slave_address=1))
        heater = HeatingController(link.url, name="heater")

        request = FramerRTU(DecodePDU(is_server=False)).buildFrame(
            ReadHoldingRegistersRequest(address=PV, count=1, dev_id=1))
        port = serial.serial_for_url(link.url, timeout=1.0)

        def bare_read() -> bytes:
            port.write(request)
            reply = port.read(REPLY_BYTES)
            if len(reply) != REPLY_BYTES:
                raise RuntimeError(f"short reply {reply!r}")
            return reply

        timed(heater.temperature.get, args.warmup)
        timed(bare_read, args.warmup)
        results = {regime: compare(heater.temperature.get, bare_read, args.reads, pause_s)
                   for regime, pause_s in (("back-to-back", 0.0), ("paced 10 ms", 0.010))}
        port.close()
        heater.destroy()

    print(f"temperature read (register {PV}), {args.reads} reads per path and regime, "
          f"through the FaultyLink")
    print(f"{'regime':<14}{'path':<36}{'median ms':>10}{'p99 ms':>10}")
    for regime, (stack, bare) in results.items():
        for label, values in (("HeatingController.temperature.get", stack),
                              ("bare pyserial, precomputed frame", bare)):
            print(f"{regime:<14}{label:<36}{np.median(values):>10.3f}"
                  f"{np.percentile(values, 99):>10.3f}")
        print(f"{regime:<14}{'ratio stack/bare':<36}{np.median(stack) / np.median(bare):>10.2f}"
              f"{np.percentile(stack, 99) / np.percentile(bare, 99):>10.2f}")


if __name__ == "__main__":
    main()
