"""NE-1000 syringe pump: the ophyd device against the simulated pump over real sockets.

Every test runs ``SyringePump`` through a FaultyLink to the NE1000Interface serving a
SyringePumpModel in a World with a jump-mode WorldClock, so world time only moves when a
test advances it: dispensed volumes are then exactly rate × time.
"""

import math
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps

from ncsynth import timebase
from ncsynth.devices.pump import (PumpAlarm, PumpCommunicationError, PumpRefused,
                                  SyringePump)
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.ne1000 import NE1000Interface, SyringePumpModel
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import World

DOC = Path(__file__).resolve().parents[1] / "docs" / "pumps.md"
BD_10ML_MM = 14.43   # at or below 14.00 mm the pump counts volumes in µL, above in mL
ML_DISPLAY = 5e-4    # half the last digit of a dispensed volume shown in mL ("0.600ML")
BD_60ML_MM = 26.59
BD_1ML_MM = 4.78


@pytest.fixture
def make_rig():
    made = []

    def make(diameter_mm=BD_10ML_MM, model_diameter_mm=10.0, **device_kwargs):
        clock = WorldClock(speed=None)
        world = World(clock)
        model = world.add("pump", SyringePumpModel(diameter_mm=model_diameter_mm))
        host = SimulatorHost()
        link = host.serve(NE1000Interface(world, model))
        device_kwargs.setdefault("timeout_s", 0.2)
        pump = SyringePump(link.url, name="pump", diameter_mm=diameter_mm, **device_kwargs)
        rig = SimpleNamespace(clock=clock, world=world, model=model, host=host, link=link,
                              pump=pump)
        made.append((rig, timebase.use_clock(clock)))
        made[-1][1].__enter__()
        return rig

    yield make
    for rig, ctx in reversed(made):
        ctx.__exit__(None, None, None)
        rig.pump.close()
        rig.host.close()
        rig.clock.close()


def _truth(rig) -> dict:
    """The pump model's state now (models are stepped lazily, on the next request)."""
    rig.world.advance()
    return rig.model.snapshot()


def _fault_before(monkeypatch, rig, command, fault):
    """Inject ``fault`` on the link just before the device sends ``command``; count sends."""
    sent = []
    exchange = rig.pump._exchange

    def exchange_with_fault(cmd, expect):
        if cmd == command and not sent:
            getattr(rig.link, fault)()
        sent.extend([cmd] if cmd == command else [])
        return exchange(cmd, expect)

    monkeypatch.setattr(rig.pump, "_exchange", exchange_with_fault)
    return sent


def test_stage_sets_the_syringe_diameter_and_volume_units(make_rig):
    rig = make_rig(diameter_mm=BD_60ML_MM)
    assert rig.model.snapshot()["target"] == (0.0, "UL")  # 10 mm syringe before staging
    rig.pump.stage()
    snap = rig.model.snapshot()
    assert snap["diameter_mm"] == BD_60ML_MM and snap["target"] == (0.0, "ML")
    assert rig.pump.diameter_mm.get() == BD_60ML_MM
    assert rig.pump.firmware.get().startswith("NE1000")
    assert rig.pump.state.get() == "stopped"
    rig.pump.unstage()


def test_rate_volume_direction_round_trip_with_units(make_rig):
    rig = make_rig()
    pump, model = rig.pump, rig.model
    pump.start(1.5, direction="INF")  # configures the syringe on first use
    snap = model.snapshot()
    assert snap["state"] == "I" and snap["rate"] == (1.5, "MM")
    assert snap["diameter_mm"] == BD_10ML_MM
    assert pump.rate_ml_min.get() == 1.5 and pump.flow_ml_min.get() == 1.5
    # 1 mL/h: exact only in µL/h (1000) or mL/h (1.000), not in mL/min (0.017)
    pump.start(1.0 / 60.0)
    snap = model.snapshot()
    assert snap["rate"] in ((1000.0, "UH"), (1.0, "MH"))
    assert snap["rate_ml_min"] == pytest.approx(1.0 / 60.0, rel=1e-12)
    assert snap["state"] == "I"  # paused for the unit change, then resumed
    # 2.5 µL/min withdrawing, 50 µL per phase (a 14.43 mm syringe counts in mL)
    pump.start(0.0025, direction="wdr", target_volume_ml=0.05)
    snap = model.snapshot()
    assert snap["state"] == "W" and snap["direction"] == "WDR"
    assert snap["rate_ml_min"] == pytest.approx(0.0025, rel=1e-12)
    assert snap["target"] == (0.05, "ML")
    assert pump.target_volume_ml.get() == pytest.approx(0.05, rel=1e-12)
    assert pump.flow_ml_min.get() == pytest.approx(-0.0025, rel=1e-12)
    assert pump.direction.get() == "WDR" and pump.state.get() == "withdrawing"
    pump.stop()
    assert model.snapshot()["state"] == "S" and pump.flow_ml_min.get() == 0.0


@pytest.mark.parametrize("diameter_mm, target", [(BD_1ML_MM, (250.0, "UL")),
                                                  (BD_60ML_MM, (0.25, "ML"))])
def test_volume_target_in_the_syringes_units(make_rig, diameter_mm, target):
    rig = make_rig(diameter_mm=diameter_mm)
    rig.pump.start(0.5, target_volume_ml=0.25)
    assert rig.model.snapshot()["target"] == target
    assert rig.pump.target_volume_ml.get() == 0.25
    rig.clock.advance(60.0)
    rig.pump.trigger()
    assert rig.pump.infused_ml.get() == 0.25 and rig.pump.state.get() == "stopped"


def test_dispensed_volume_is_rate_times_time(make_rig):
    rig = make_rig()
    pump, model = rig.pump, rig.model
    pump.start(1.2, direction="INF")
    rig.clock.advance(30.0)
    pump.trigger()
    assert pump.infused_ml.get() == pytest.approx(1.2 * 30 / 60, abs=ML_DISPLAY)
    assert model.flow_rate_ml_min() == 1.2
    pump.start(0.3, direction="WDR")
    assert model.flow_rate_ml_min() == -0.3  # what a reactor model reads from the world
    rig.clock.advance(20.0)
    values = pump.refresh()
    assert values["withdrawn_ml"] == pytest.approx(0.3 * 20 / 60, abs=ML_DISPLAY)
    assert values["infused_ml"] == pytest.approx(0.6, abs=ML_DISPLAY)
    snap = model.snapshot()
    assert snap["infused_ml"] == pytest.approx(0.6, rel=1e-6)
    assert snap["withdrawn_ml"] == pytest.approx(0.1, rel=1e-6)
    pump.stop()
    rig.clock.advance(60.0)
    assert _truth(rig)["withdrawn_ml"] == pytest.approx(0.1, rel=1e-6)
    pump.clear_dispensed()
    assert pump.infused_ml.get() == 0.0 and pump.withdrawn_ml.get() == 0.0


def test_reaching_the_target_volume_stops_the_pump(make_rig):
    rig = make_rig()
    pump, model = rig.pump, rig.model
    pump.start(1.0, target_volume_ml=0.25)
    rig.clock.advance(10.0)
    pump.trigger()
    assert pump.state.get() == "infusing"
    assert pump.infused_ml.get() == pytest.approx(1 / 6, abs=ML_DISPLAY)
    rig.clock.advance(10.0)  # the target is reached 5 s into this
    pump.trigger()
    assert pump.state.get() == "stopped" and pump.flow_ml_min.get() == 0.0
    assert model.snapshot()["infused_ml"] == pytest.approx(0.25, rel=1e-9)
    assert model.flow_rate_ml_min() == 0.0
    pump.start(1.0)  # a new phase dispenses the target again
    rig.clock.advance(60.0)
    assert _truth(rig)["infused_ml"] == pytest.approx(0.5, rel=1e-9)


def test_rate_beyond_the_syringe_is_refused_by_the_pump_and_it_stays_stopped(make_rig):
    rig = make_rig(diameter_mm=BD_1ML_MM)
    max_ml_min = math.pi * BD_1ML_MM ** 2 / 4 * 51.0e-3  # 51 mm/min plunger speed
    with pytest.raises(PumpRefused, match=r"RAT.*\?OOR") as info:
        rig.pump.start(1.05 * max_ml_min)
    assert info.value.code == "OOR"
    rig.pump.start(0.95 * max_ml_min)
    assert rig.model.snapshot()["state"] == "I"
    rig.pump.stop()
    with pytest.raises(PumpRefused, match="OOR"):
        rig.pump.start(1.05 * max_ml_min)
    assert rig.model.snapshot()["state"] == "S"


def test_bad_input_is_rejected_before_a_byte_is_sent(make_rig):
    rig = make_rig()
    rig.pump.start(1.0)
    before = rig.model.snapshot()
    rig.link.close_port()  # anything sent now would end in PumpCommunicationError
    pump = rig.pump
    for bad in (-1.0, 0.0, math.nan, math.inf, "fast", True, 1e6, 1e-9):
        with pytest.raises(ValueError, match="rate_ml_min"):
            pump.start(bad)
    with pytest.raises(ValueError, match="rate_ml_min"):
        pump.set(-2.0)
    with pytest.raises(ValueError, match="direction must be 'INF' or 'WDR', got 'UP'"):
        pump.start(1.0, direction="UP")
    with pytest.raises(ValueError, match="target_volume_ml"):
        pump.start(1.0, target_volume_ml=-0.1)
    url = rig.link.url
    with pytest.raises(ValueError, match="diameter_mm"):
        SyringePump(url, name="x", diameter_mm=60.0)
    with pytest.raises(ValueError, match="address"):
        SyringePump(url, name="x", diameter_mm=10.0, address=100)
    with pytest.raises(ValueError, match="retries"):
        SyringePump(url, name="x", diameter_mm=10.0, retries=-1)
    with pytest.raises(ValueError, match="diameter_mm"):
        SyringePumpModel(diameter_mm=0.0)
    rig.link.reopen()
    assert rig.model.snapshot() == before


@pytest.mark.parametrize("fault", ["drop_replies", "corrupt_next_reply", "truncate_next_reply"])
def test_single_reply_fault_on_a_query_is_retried(make_rig, fault):
    rig = make_rig()
    rig.pump.start(0.6)
    getattr(rig.link, fault)()
    assert rig.pump.refresh()["rate_ml_min"] == 0.6


@pytest.mark.parametrize("fault", ["drop_replies", "corrupt_next_reply", "truncate_next_reply"])
def test_lost_run_reply_is_resolved_by_reading_the_state(make_rig, monkeypatch, fault):
    rig = make_rig()
    rig.pump.stage()
    sent = _fault_before(monkeypatch, rig, "RUN", fault)
    rig.pump.start(0.8)
    assert sent == ["RUN"]  # the status showed it ran: no second RUN
    assert rig.model.snapshot()["state"] == "I" and rig.pump.flow_ml_min.get() == 0.8


def test_lost_stp_reply_is_not_resent_so_the_phase_survives(make_rig, monkeypatch):
    rig = make_rig()
    pump, model = rig.pump, rig.model
    pump.start(1.0, target_volume_ml=0.5)
    rig.clock.advance(12.0)  # 0.2 mL of this phase pumped
    sent = _fault_before(monkeypatch, rig, "STP", "drop_replies")
    pump.start(0.0015)  # a unit change (MM -> UM): pause, set, resume
    # a blind second STP would have ended the phase (S) and RUN would start a new one
    assert sent == ["STP"]
    assert model.snapshot()["phase_ml"] == pytest.approx(0.2, rel=1e-6)
    assert model.snapshot()["state"] == "I"


def test_persistent_reply_loss_gives_a_clear_error(make_rig):
    rig = make_rig(retries=2)
    rig.link.drop_replies(3)
    with pytest.raises(PumpCommunicationError,
                       match=r"pump: status failed after 3 attempts .*no complete reply"):
        rig.pump.refresh()
    assert rig.pump.refresh()["state"] == "stopped"  # the line recovers


def test_closed_port_gives_a_clear_error_and_reconnects(make_rig):
    rig = make_rig()
    rig.pump.stage()
    rig.link.close_port()
    with pytest.raises(PumpCommunicationError, match=r"pump: status failed .*port error"):
        rig.pump.start(1.0)
    assert rig.model.snapshot()["state"] == "S"
    rig.link.reopen()
    rig.pump.start(1.0)
    rig.link.close_port()
    with pytest.raises(PumpCommunicationError):
        rig.pump.stop()
    assert rig.model.snapshot()["state"] == "I"  # it really could not reach the pump
    rig.link.reopen()
    rig.pump.stop()
    assert rig.model.snapshot()["state"] == "S"


def test_stall_alarm_is_raised_and_the_pump_ends_stopped(make_rig):
    rig = make_rig()
    pump, model = rig.pump, rig.model
    pump.start(1.0)
    rig.clock.advance(6.0)
    with rig.world.lock:
        rig.world.advance()  # the models are stepped lazily: bring the pump to now first
        model.stall()
    with pytest.raises(PumpAlarm, match=r"A\?S: motor stalled") as info:
        pump.trigger()
    assert info.value.code == "S" and pump.alarm.get() == "motor stalled"
    rig.clock.advance(6.0)
    values = pump.refresh()  # the alarm was acknowledged by being reported
    assert values["state"] == "stopped"
    assert values["infused_ml"] == pytest.approx(0.1, abs=ML_DISPLAY)  # nothing after the stall
    pump.start(1.0)
    assert pump.alarm.get() == ""
    with rig.world.lock:
        model.stall()
    with pytest.raises(PumpAlarm, match="motor stalled"):
        pump.start(2.0)  # the alarm answers the first request; nothing is executed
    assert model.snapshot()["state"] == "S" and model.snapshot()["rate"] == (1.0, "MM")


def test_plan_sets_rate_reads_and_the_run_engine_stops_the_pump(make_rig):
    rig = make_rig()
    documents = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: documents.append((name, doc)))

    def plan():
        yield from bps.open_run()
        yield from bps.stage(rig.pump)
        yield from bps.mv(rig.pump, 0.8)
        yield from bps.trigger_and_read([rig.pump])
        yield from bps.unstage(rig.pump)
        yield from bps.close_run()

    RE(plan())
    event, = [doc for name, doc in documents if name == "event"]
    assert event["data"]["pump_flow_ml_min"] == 0.8
    assert event["data"]["pump_state"] == "infusing"
    descriptor, = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["configuration"]["pump"]["data"]["pump_diameter_mm"] == BD_10ML_MM
    assert rig.pump.hints == {"fields": ["pump_flow_ml_min", "pump_infused_ml"]}
    assert rig.model.snapshot()["state"] == "S"  # stop() at the end of the plan


def test_failed_start_fails_the_set_status(make_rig):
    rig = make_rig(diameter_mm=BD_1ML_MM)
    status = rig.pump.set(5.0)  # beyond a 1 mL syringe
    with pytest.raises(PumpRefused, match="OOR"):
        status.wait(1)
    assert rig.model.snapshot()["state"] == "S"


# -- protocol level (a raw socket, as a terminal emulator) -----------------------------------
def _terminal(rig):
    sock = socket.create_connection(("127.0.0.1", rig.link.port), timeout=2)

    def ask(packet: bytes) -> bytes:
        sock.sendall(packet)
        reply = b""
        while not reply.endswith(b"\x03"):
            reply += sock.recv(64)
        return reply

    return sock, ask


def test_basic_mode_replies(make_rig):
    rig = make_rig()
    sock, ask = _terminal(rig)
    with sock:
        assert ask(b"\r") == b"\x0200S\x03"
        assert ask(b"dia\r") == b"\x0200S10.00\x03"
        assert ask(b"RAT 1.5 MM\r") == b"\x0200S\x03"
        assert ask(b"RAT\r") == b"\x0200S1.500MM\x03"
        assert ask(b"RAT 12345 UM\r") == b"\x0200S?OOR\x03"
        assert ask(b"VOL 0.5\r") == b"\x0200S\x03"
        assert ask(b"VOL\r") == b"\x0200S0.500UL\x03"
        assert ask(b"FOO\r") == b"\x0200S?\x03"
        assert ask(b"RAT\xff\r") == b"\x0200S?COM\x03"
        assert ask(b"0RUN\r") == b"\x0200I\x03"
        assert ask(b"DIR WDR\r") == b"\x0200I?NA\x03"  # needs VOL 0 while pumping
        assert ask(b"DIA 20\r") == b"\x0200I?NA\x03"
        rig.clock.advance(0.3)  # 1.5 mL/min: the 0.5 µL target is reached after 0.02 s
        assert ask(b"DIS\r") == b"\x0200SI0.500W0.000UL\x03"
        sock.sendall(b"01VER\r")  # addressed to pump 1: pump 0 stays silent
        assert ask(b"VER\r").startswith(b"\x0200SNE1000")
        assert ask(b"RUN\r") == b"\x0200I\x03"
        assert ask(b"STP\r") == b"\x0200P\x03"
        assert ask(b"STP\r") == b"\x0200S\x03"
        rig.model.stall()
        assert ask(b"RUN\r") == b"\x0200A?S\x03"
        assert ask(b"\r") == b"\x0200S\x03"


def test_protocol_doc_example_matches_simulator(make_rig):
    """Replay the example session of docs/pumps.md byte for byte."""
    example = DOC.read_text().split("### Example session", 1)[1].split("```")[1]
    rig = make_rig()
    sock, ask = _terminal(rig)
    steps = 0
    with sock:
        for line in example.strip().splitlines():
            if "motor stalls" in line:
                rig.clock.advance(10.0)
                with rig.world.lock:
                    rig.world.advance()
                    rig.model.stall()
                continue
            request, expected = re.match(r"> (.*?)\s+< (\S+)", line).groups()
            expected = expected.replace("␂", "\x02").replace("␃", "\x03").encode()
            assert ask(request.encode() + b"\r") == expected, line
            steps += 1
    assert steps == 13
