"""Two-piston injector: the ophyd device against the simulated board over real sockets.

Every test runs the device through a FaultyLink to the InjectorInterface serving an
InjectorModel in a World; the flask and the reaction are small stand-ins recording
what the world delivers to them.
"""

import math
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps

from ncsynth import timebase
from ncsynth.devices.injector import (Injector, InjectorCommsError, InjectorError,
                                      InjectorJamError)
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.injector import InjectorInterface, InjectorModel, checksum
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import SyringeCharge, World

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocols.md"


class FlaskStandIn:
    """Records the liquid the world pours in."""

    def __init__(self, volume_ml=10.0):
        self.volume_ml = volume_ml
        self.added = []

    def add_liquid(self, mass_g, temperature_c, volume_ml):
        self.added.append((mass_g, temperature_c, volume_ml))
        self.volume_ml += volume_ml

    def step(self, dt_s, world):
        pass


class ReactionStandIn:
    slow = True

    def __init__(self):
        self.precursor = []

    def add_precursor(self, concentration_molar, dilution):
        self.precursor.append((concentration_molar, dilution))

    def step(self, dt_s, world):
        pass


def _rig(speed=None, model=None, **device_kwargs):
    clock = WorldClock(speed=speed)
    world = World(clock)
    flask = world.add("flask", FlaskStandIn())
    reaction = world.add("reaction", ReactionStandIn())
    model = world.add("injector", model or InjectorModel())
    host = SimulatorHost()
    link = host.serve(InjectorInterface(world))
    device_kwargs.setdefault("timeout_s", 0.2)
    inj = Injector(link.url, name="injector", **device_kwargs)
    return SimpleNamespace(clock=clock, world=world, flask=flask, reaction=reaction,
                           model=model, host=host, link=link, inj=inj)


@pytest.fixture
def make_rig():
    made = []

    def make(**kwargs):
        rig = _rig(**kwargs)
        made.append(rig)
        stack.append(timebase.use_clock(rig.clock))
        stack[-1].__enter__()
        return rig

    stack = []
    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
    for rig in made:
        rig.inj.close()
        rig.host.close()
        rig.clock.close()


def _true_fire_epoch(rig, piston):
    """World time (epoch s) at which the board executed FIRE, from its µs stamp."""
    return rig.model.boot_epoch_s + rig.model.snapshot()[piston]["fired_us"] * 1e-6


@pytest.mark.parametrize("speed", [None, 1.0], ids=["jump-clock", "real-time-clock"])
def test_fire_a_completes_at_end_switch_with_honest_t0_and_delivers(make_rig, speed):
    rig = make_rig(speed=speed)
    inj = rig.inj
    inj.arm()
    assert rig.model.armed and inj.armed.get() == 1
    status = inj.fire("A")
    # fire() returns at the board's confirmation, before the stroke ends
    t_fire = inj.fire_time_a.get()
    uncertainty = inj.fire_time_a_uncertainty.get()
    assert uncertainty >= 0
    assert abs(t_fire - _true_fire_epoch(rig, "A")) <= uncertainty + 2e-6
    status.wait(5)
    assert status.success
    assert inj.state_a.get() == "EXTENDED" and inj.end_switch_a.get() == "X"
    assert rig.clock.now() - t_fire >= rig.model.stroke_s - uncertainty
    # the world received exactly the default §S.1.2 charge, once, at the end of the stroke
    (t_delivered, charge), = rig.world.deliveries
    assert charge == SyringeCharge(mass_g=3.56, volume_ml=4.5, temperature_c=25.0, cd_molar=0.1)
    assert (t_fire + rig.model.stroke_s - rig.world.dt_s - uncertainty - 1e-6
            <= t_delivered <= t_fire + rig.model.stroke_s + uncertainty + 1e-6)
    assert rig.flask.added == [(3.56, 25.0, 4.5)]
    (conc, dilution), = rig.reaction.precursor
    assert conc == pytest.approx(0.1 * 4.5 / 14.5)
    assert dilution == pytest.approx(10.0 / 14.5)
    reading = inj.read()
    assert reading["injector_fire_time_a"]["value"] == t_fire
    assert math.isnan(reading["injector_fire_time_b"]["value"])
    assert reading["injector_state_b"]["value"] == "EMPTY"


def test_fire_without_arming_is_refused_before_sending(make_rig):
    rig = make_rig()
    rig.inj.refresh()  # the device now knows the board is disarmed
    rig.link.close_port()  # anything sent now would fail as a comms error
    with pytest.raises(InjectorError, match="not armed") as info:
        rig.inj.fire("A")
    assert info.value.code == "NOT_ARMED"
    assert not isinstance(info.value, InjectorCommsError)
    assert rig.model.snapshot()["A"]["state"] == "READY"


def test_board_refusal_when_device_knowledge_is_stale(make_rig):
    rig = make_rig()
    rig.inj.arm()
    with rig.world.lock:  # operator reloads syringe A: the board disarms itself
        rig.model.load("A", SyringeCharge(mass_g=2.0, volume_ml=2.5))
    with pytest.raises(InjectorError, match="refused by the controller: 10 NOT_ARMED") as info:
        rig.inj.fire("A")
    assert info.value.code == "NOT_ARMED"
    assert rig.inj.armed.get() == 0  # the refusal made the device re-read the board
    assert rig.world.deliveries == []


def test_second_fire_of_same_piston_is_refused(make_rig):
    rig = make_rig()
    rig.inj.arm()
    rig.inj.fire("A").wait(5)
    rig.inj.arm()  # re-arming does not reload a spent syringe
    rig.link.close_port()
    with pytest.raises(InjectorError, match="already fired") as info:
        rig.inj.fire("A")
    assert info.value.code == "SPENT"
    assert len(rig.world.deliveries) == 1


def test_fire_of_empty_piston_is_refused(make_rig):
    rig = make_rig()
    rig.inj.arm()
    with pytest.raises(InjectorError, match="no syringe") as info:
        rig.inj.fire("B")
    assert info.value.code == "EMPTY"
    assert rig.model.snapshot()["B"]["fired_us"] is None


def test_second_charge_on_piston_b_fires_independently(make_rig):
    second = SyringeCharge(mass_g=1.0, volume_ml=1.2, temperature_c=20.0, cd_molar=0.0)
    rig = make_rig(model=InjectorModel(charge_b=second))
    rig.inj.set("arm").wait(1)
    rig.inj.set("fire B").wait(5)
    rig.inj.fire("A").wait(5)
    assert [charge for _, charge in rig.world.deliveries] == [second, SyringeCharge()]
    assert rig.inj.fire_time_b.get() < rig.inj.fire_time_a.get()


@pytest.mark.parametrize("jam_timeout_s, message", [
    (0.5, "not extended 0.5 s after firing"),   # the device gives up first
    (2.0, "stroke watchdog"),                    # the board's 1 s watchdog trips first
])
def test_jammed_piston_fails_its_status(make_rig, jam_timeout_s, message):
    rig = make_rig(jam_timeout_s=jam_timeout_s)
    rig.model.jam("A")
    rig.inj.arm()
    jumps = rig.clock.jumps_made
    status = rig.inj.fire("A")
    with pytest.raises(InjectorJamError, match=message):
        status.wait(10)
    # the jump clock fast-forwarded the wait (counted, not timed: a wall-time bound of 5 s
    # failed beside two CPU hogs, 9.6 s)
    assert rig.clock.jumps_made > jumps
    waited = rig.clock.now() - rig.inj.fire_time_a.get()
    assert waited >= min(jam_timeout_s, rig.model.watchdog_s) - 1e-6
    assert rig.world.deliveries == []
    assert 0 < rig.model.snapshot()["A"]["position"] < 1


@pytest.mark.parametrize("fault", ["drop_replies", "corrupt_next_reply", "truncate_next_reply"])
def test_single_reply_fault_is_retried(make_rig, fault):
    rig = make_rig()
    getattr(rig.link, fault)()
    assert rig.inj.refresh()["A"] == "READY"
    assert rig.inj.identify().startswith("NCSYNTH-TPI2")


def test_persistent_reply_loss_gives_clear_error(make_rig):
    rig = make_rig(retries=2)
    rig.link.drop_replies(3)
    with pytest.raises(InjectorCommsError,
                       match=r"injector: STATUS\? failed after 3 attempts.*no complete reply"):
        rig.inj.refresh()
    assert rig.inj.refresh()["A"] == "READY"  # the line recovers


def test_late_reply_to_an_earlier_request_is_not_taken_for_the_next(make_rig):
    rig = make_rig(retries=0, timeout_s=0.2)
    rig.link.delay_replies(0.3)
    with pytest.raises(InjectorCommsError, match="ID"):
        rig.inj.identify()
    rig.link.delay_replies(0)
    # the ID reply arrives during this request: its tag does not match, it is dropped
    assert rig.inj.refresh()["ARMED"] == "0"


def test_closed_port_gives_clear_error_and_reconnects(make_rig):
    rig = make_rig()
    rig.inj.refresh()
    rig.link.close_port()
    with pytest.raises(InjectorCommsError, match=r"injector: ARM failed .*port error"):
        rig.inj.arm()
    assert not rig.model.armed
    rig.link.reopen()
    rig.inj.arm()
    assert rig.model.armed


def test_disarm_and_stop_on_closed_port_report_failure(make_rig):
    rig = make_rig()
    rig.inj.arm()
    rig.link.close_port()
    with pytest.raises(InjectorCommsError, match="DISARM failed after 3 attempts"):
        rig.inj.disarm()
    with pytest.raises(InjectorCommsError, match="DISARM"):
        rig.inj.stop()
    assert rig.model.armed  # it really could not reach the board
    rig.link.reopen()
    rig.inj.stop()
    assert not rig.model.armed and rig.inj.armed.get() == 0


@pytest.mark.parametrize("fault", ["drop_replies", "corrupt_next_reply", "truncate_next_reply"])
def test_ambiguous_fire_is_not_repeated_and_the_device_learns_it_fired(make_rig, fault):
    rig = make_rig()
    rig.inj.arm()
    getattr(rig.link, fault)()
    status = rig.inj.fire("A")  # a blind re-send would be refused SPENT and raise
    assert rig.model.snapshot()["A"]["fired_us"] is not None
    uncertainty = rig.inj.fire_time_a_uncertainty.get()
    assert abs(rig.inj.fire_time_a.get() - _true_fire_epoch(rig, "A")) <= uncertainty + 2e-6
    status.wait(5)
    assert len(rig.world.deliveries) == 1


def test_fire_lost_on_a_dead_connection_is_resent_once_proven_unfired(make_rig):
    rig = make_rig()
    rig.inj.arm()
    rig.link.close_port()  # drops the device's connection ...
    time.sleep(0.1)
    rig.link.reopen()      # ... and accepts the next one
    status = rig.inj.fire("A")  # FIRE hits the dead socket; STATUS? shows A unfired
    status.wait(5)
    assert len(rig.world.deliveries) == 1
    assert abs(rig.inj.fire_time_a.get() - _true_fire_epoch(rig, "A")) <= (
        rig.inj.fire_time_a_uncertainty.get() + 2e-6)


def test_fire_outcome_unknown_is_reported_as_such(make_rig):
    rig = make_rig()
    rig.inj.arm()
    rig.link.close_port()
    with pytest.raises(InjectorCommsError, match="UNKNOWN"):
        rig.inj.fire("A")
    assert rig.model.snapshot()["A"]["state"] == "READY"


def test_stop_disarms_and_ends_the_watch(make_rig):
    rig = make_rig(jam_timeout_s=1e6)
    rig.model.jam("A")
    rig.model.watchdog_s = 1e5  # neither side would give up soon
    rig.inj.arm()
    status = rig.inj.fire("A")
    rig.inj.stop()
    with pytest.raises(InjectorError, match="stopped"):
        status.wait(5)
    assert not rig.model.armed


def test_plan_arms_fires_and_records_t0(make_rig):
    rig = make_rig()
    documents = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: documents.append((name, doc)))

    def plan():
        yield from bps.open_run()
        yield from bps.abs_set(rig.inj, "arm", wait=True)
        yield from bps.abs_set(rig.inj, "A", wait=True)
        yield from bps.trigger_and_read([rig.inj])
        yield from bps.close_run()

    RE(plan())
    event, = [doc for name, doc in documents if name == "event"]
    assert event["data"]["injector_state_a"] == "EXTENDED"
    assert event["data"]["injector_fire_time_a"] == rig.inj.fire_time_a.get()
    assert abs(event["data"]["injector_fire_time_a"] - _true_fire_epoch(rig, "A")) <= (
        event["data"]["injector_fire_time_a_uncertainty"] + 2e-6)
    descriptor, = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["configuration"]["injector"]["data"]["injector_jam_timeout"] == 2.0
    assert not rig.model.armed  # the RunEngine's stop() at the end of the plan disarmed


def test_bad_arguments_are_rejected_before_anything_moves(make_rig):
    rig = make_rig()
    url = rig.link.url
    with pytest.raises(ValueError, match="jam_timeout_s"):
        Injector(url, name="x", jam_timeout_s=-1)
    with pytest.raises(TypeError, match="retries"):
        Injector(url, name="x", retries=1.5)
    with pytest.raises(ValueError, match="timeout_s"):
        Injector(url, name="x", timeout_s=math.inf)
    rig.inj.arm()
    with pytest.raises(ValueError, match="piston must be 'A' or 'B', got 'C'"):
        rig.inj.fire("C")
    with pytest.raises(ValueError, match="action"):
        rig.inj.set("launch")
    with pytest.raises(ValueError, match="watchdog_s"):
        InjectorModel(stroke_s=0.5, watchdog_s=0.4)
    with pytest.raises(ValueError, match="piston must be A or B"):
        rig.model.jam("C")
    with pytest.raises(TypeError, match="SyringeCharge"):
        rig.model.load("B", 4.5)
    assert rig.world.deliveries == [] and rig.model.snapshot()["A"]["state"] == "READY"


# -- protocol level (a raw socket, as a human at a terminal) --------------------------------
def _session(rig):
    sock = socket.create_connection(("127.0.0.1", rig.link.port), timeout=2)
    pending = b""

    def ask(line: str) -> str:
        nonlocal pending
        sock.sendall(line.encode() + b"\n")
        while b"\r\n" not in pending:
            pending += sock.recv(4096)
        reply, pending = pending.split(b"\r\n", 1)
        return reply.decode()

    return sock, ask


def test_firmware_error_replies(make_rig):
    rig = make_rig()
    sock, ask = _session(rig)
    with sock:
        assert ask("FIRE A").startswith("ERR 10 NOT_ARMED")
        assert ask("arm").startswith("OK ARM*")
        assert ask("FIRE B").startswith("ERR 11 EMPTY")
        assert ask("FIRE C").startswith("ERR 03 BAD_ARGUMENT")
        assert ask("#9 TIME?*0000").startswith("#9 ERR 02 BAD_CHECKSUM")
        assert ask("LAUNCH").startswith("ERR 01 UNKNOWN_COMMAND")
        assert ask("X" * 80).startswith("ERR 04 LINE_TOO_LONG")
        rig.model.jam("A")
        assert ask("FIRE A").startswith("OK FIRE A ")
        assert ask("FIRE A").startswith("ERR 14 BUSY")
        rig.clock.advance(rig.model.watchdog_s + 0.01)
        assert "A=JAMMED" in ask("STATUS?")
        assert ask("FIRE A").startswith("ERR 13 JAMMED")
        for reply in (ask("ID?"), ask("FIRE A")):
            body, crc = reply.rsplit("*", 1)
            assert crc == checksum(body.encode())


def test_protocol_doc_example_matches_simulator(make_rig):
    """Replay the example session of docs/protocols.md; CRCs exact, µs values masked."""
    text = DOC.read_text().split("## Two-piston injector (ASCII)", 1)[1]
    example = text.split("### Example session", 1)[1].split("```")[1]
    lines = [line for line in example.splitlines() if line.strip()]
    assert len(lines) == 16
    rig = make_rig()
    sock, ask = _session(rig)
    mask = lambda s: re.sub(r"\d{7,}", "<us>", s.rsplit("*", 1)[0])  # noqa: E731
    with sock:
        for request, expected in zip(lines[::2], lines[1::2]):
            for line in (request, expected):
                body, crc = line[2:].rsplit("*", 1)
                assert crc == checksum(body.encode()), line
            if request.startswith("> #5"):
                rig.clock.advance(0.1)
            if request.startswith("> #6"):
                rig.clock.advance(rig.model.stroke_s)
            assert mask(ask(request[2:])) == mask(expected[2:])
