"""HeatingController against the simulated Eurotherm over real sockets through a FaultyLink.

The world runs on a jump-mode WorldClock installed as the timebase, so heating the flask
to 290 °C and settling takes a few hundred simulated seconds and well under a few seconds
of wall time. ``loop://`` is used only where nothing must answer.
"""

import math
import threading
import types

import bluesky.plan_stubs as bps
import minimalmodbus
import bluesky.plans as bp
import pytest
from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.devices.heater import HeaterCommunicationError, HeaterFaultError, HeatingController
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.eurotherm import EurothermInterface
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.thermal import ControllerModel, FlaskThermalModel
from ncsynth.simulators.world import World

RETRIES = 2
TIMEOUT_S = 0.2


@pytest.fixture
def sim():
    clock = WorldClock(speed=None)
    world = World(clock)
    world.add("flask", FlaskThermalModel())
    world.add("controller", ControllerModel())
    host = SimulatorHost()
    interface = EurothermInterface(world, slave_address=1)
    link = host.serve(interface)
    with timebase.use_clock(clock):
        yield types.SimpleNamespace(clock=clock, world=world, flask=world.flask,
                                    controller=world.controller, link=link,
                                    registers=interface.registers)
    host.close()
    clock.close()


@pytest.fixture
def heater(sim):
    device = HeatingController(sim.link.url, name="heater", timeout_s=TIMEOUT_S,
                               retries=RETRIES, settle_time_s=30.0, poll_interval_s=5.0)
    yield device
    device.destroy()


def wait_world_time(sim, seconds, wall_timeout_s=20.0):
    """Block until the world clock has moved ``seconds`` on (at most ``wall_timeout_s``)."""
    gave_up = threading.Timer(wall_timeout_s, (cancel := threading.Event()).set)
    gave_up.start()
    try:
        assert sim.clock.sleep_until(sim.clock.now() + seconds, cancel), "the world clock did not advance"
    finally:
        gave_up.cancel()


def test_reads_the_thermocouple_with_world_timestamps(sim, heater):
    sim.flask.set_temperature(123.4)
    assert heater.temperature.get() == pytest.approx(123.4)
    reading = heater.read()
    assert reading["heater_temperature"]["value"] == pytest.approx(123.4)
    assert reading["heater_temperature"]["timestamp"] == sim.clock.now()
    sim.flask.set_temperature(-12.3)  # two's complement on the wire
    assert heater.temperature.get() == pytest.approx(-12.3)
    description = heater.describe()["heater_temperature"]
    assert description["units"] == "degC" and description["precision"] == 1
    assert description["dtype"] == "number" and description["shape"] == []
    assert heater.hints == {"fields": ["heater_temperature"]}


def test_set_settles_at_290(sim, heater):
    start = sim.clock.now()
    status = heater.set(290.0)
    status.wait(timeout=30)
    assert status.success
    assert sim.controller.target_setpoint_c == 290.0 and not sim.controller.manual
    assert abs(sim.flask.thermocouple_c - 290.0) <= heater.tolerance_c
    # heating from 25 °C takes minutes of world time, then 30 s in the band
    assert sim.clock.now() - start > 120.0


def test_setpoint_above_max_refused_before_anything_is_sent(sim, heater):
    sim.link.close_port()  # anything sent would now fail with a communication error
    with pytest.raises(ValueError, match="max_temperature_c"):
        heater.set(301.0)
    with pytest.raises(ValueError, match="max_temperature_c"):
        heater.setpoint.put(350.0)
    with pytest.raises(ValueError, match="setpoint"):
        heater.set(float("nan"))
    sim.link.reopen()
    assert sim.controller.target_setpoint_c == 25.0
    assert heater.setpoint.get() == 25.0


FAULTS = {
    "dropped": lambda link, n: link.drop_replies(n),
    "corrupt": lambda link, n: link.corrupt_next_reply(n),
    "truncated": lambda link, n: link.truncate_next_reply(n),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_one_fault_is_absorbed_by_a_retry(sim, heater, fault):
    sim.flask.set_temperature(55.5)
    FAULTS[fault](sim.link, 1)
    assert heater.temperature.get() == pytest.approx(55.5)


@pytest.mark.parametrize("fault, cause", [
    ("dropped", "NoResponseError"), ("corrupt", "InvalidResponseError"),
    ("truncated", "InvalidResponseError"), ("delayed", "NoResponseError"),
    ("port closed", "SerialException")])
def test_persistent_fault_raises_then_device_recovers(sim, heater, fault, cause):
    sim.flask.set_temperature(77.7)
    if fault == "delayed":
        sim.link.delay_replies(TIMEOUT_S * 3)
    elif fault == "port closed":
        sim.link.close_port()
    else:
        FAULTS[fault](sim.link, RETRIES + 1)
    with pytest.raises(HeaterCommunicationError) as info:
        heater.temperature.get()
    error = info.value
    assert error.attempts == RETRIES + 1
    assert type(error.cause).__name__ == cause
    message = str(error)
    assert message.startswith("heater: read register 1 (process value) failed after 3 attempt")
    assert cause in message
    sim.link.clear()
    assert heater.temperature.get() == pytest.approx(77.7)
    heater.setpoint.put(100.0)  # writes work again too
    assert sim.controller.target_setpoint_c == 100.0


def test_a_short_delay_is_only_slow(sim, heater):
    sim.flask.set_temperature(42.0)
    sim.link.delay_replies(TIMEOUT_S / 4)
    assert heater.temperature.get() == pytest.approx(42.0)


def test_thermocouple_open_fails_the_set_and_leaves_the_heater_safe(sim, heater):
    status = heater.set(290.0)
    wait_world_time(sim, 60.0)
    assert sim.controller.output_percent > 0  # heating
    sim.flask.open_thermocouple(True)
    with pytest.raises(HeaterFaultError, match="sensor break"):
        status.wait(timeout=10)
    assert sim.controller.manual
    assert sim.controller.manual_output_percent == 0.0
    assert heater.output.get() == 0.0  # read through the controller: no power
    assert math.isnan(heater.temperature.get())
    sim.flask.open_thermocouple(False)  # repaired: a new set() re-arms and heats again
    sim.flask.set_temperature(285.0)
    sim.clock.advance(1.0)  # the controller sees the thermocouple again at its next sample
    assert heater.set(290.0).wait(timeout=30) is None
    assert not sim.controller.manual


def test_over_temperature_alarm_fails_the_set(sim, heater):
    sim.controller.high_alarm_c = 150.0
    status = heater.set(290.0)
    with pytest.raises(HeaterFaultError, match="over-temperature"):
        status.wait(timeout=20)
    assert sim.controller.manual and sim.controller.output_percent == 0.0


def test_safe_off_fails_a_pending_set(sim, heater):
    status = heater.set(290.0)
    wait_world_time(sim, 20.0)
    heater.safe_off()
    with pytest.raises(HeaterFaultError, match="safe_off"):
        status.wait(timeout=5)
    sim.world.advance()
    assert sim.controller.manual and sim.controller.output_percent == 0.0
    assert sim.controller.target_setpoint_c == heater.safe_setpoint_c


def test_stop_ends_the_set_and_holds_the_ramp(sim, heater):
    heater.ramp_rate.put(10.0)
    status = heater.set(200.0)
    wait_world_time(sim, 60.0)
    heater.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        status.wait(timeout=5)
    held = sim.controller.target_setpoint_c
    assert 25.0 < held < 200.0
    assert held == pytest.approx(sim.controller.working_setpoint_c, abs=2.0)
    assert not sim.controller.manual  # holding, not cooling


def test_concurrent_reads_from_four_threads(sim, heater, caplog):
    sim.flask.set_temperature(150.2)
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(heater.temperature.get())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [pytest.approx(150.2)] * 80
    # serialised, not merely rescued by retries: no transaction had to be repeated
    assert [r.getMessage() for r in caplog.records if r.name.startswith("ncsynth.devices")] == []


def test_run_engine_moves_and_reads(sim, heater):
    RE = RunEngine({})
    documents = []
    RE(bps.mv(heater, 150.0))
    RE(bp.count([heater], num=2), lambda name, doc: documents.append((name, doc)))
    descriptor = next(doc for name, doc in documents if name == "descriptor")
    assert descriptor["data_keys"]["heater_temperature"]["units"] == "degC"
    events = [doc for name, doc in documents if name == "event"]
    assert len(events) == 2
    for event in events:
        assert event["data"]["heater_temperature"] == pytest.approx(150.0, abs=heater.tolerance_c)
        assert event["timestamps"]["heater_temperature"] == pytest.approx(sim.clock.now())
        assert event["data"]["heater_setpoint"] == 150.0


def test_trigger_reads_in_the_background_and_read_reports_that_reading_once(sim, heater):
    sim.flask.set_temperature(120.4)
    status = heater.temperature.trigger()
    status.wait(timeout=5)
    t_trigger = sim.clock.now()
    sim.flask.set_temperature(130.0)  # after the trigger: not in its reading
    sim.clock.advance(5.0)
    reading = heater.temperature.read()["heater_temperature"]
    assert reading["value"] == pytest.approx(120.4)
    assert reading["timestamp"] <= t_trigger
    # without a new trigger, read() asks the controller again
    again = heater.temperature.read()["heater_temperature"]
    assert again["value"] == pytest.approx(130.0, abs=3.0)  # the flask cools meanwhile
    assert again["timestamp"] > t_trigger


def test_the_heaters_readings_are_one_request_at_one_instant(sim, heater):
    """trigger()/read() of the device: temperature, setpoint and output in one Modbus request
    (adjacent registers), all with the reply's timestamp; a read() without a trigger too."""
    RunEngine({})(bps.mv(heater.setpoint, 250.0))
    sim.flask.set_temperature(201.3)
    requests = sim.registers.read_requests
    heater.trigger().wait(timeout=5)
    sim.flask.set_temperature(150.0)  # after the trigger: not in its reading
    reading = heater.read()
    assert sim.registers.read_requests == requests + 1
    assert reading["heater_temperature"]["value"] == pytest.approx(201.3)
    assert reading["heater_setpoint"]["value"] == 250.0
    assert reading["heater_output"]["value"] == sim.controller.output_percent
    assert len({value["timestamp"] for value in reading.values()}) == 1
    again = heater.read()  # no trigger: the controller is asked again, once
    assert sim.registers.read_requests == requests + 2
    assert again["heater_temperature"]["value"] == pytest.approx(150.0)


def test_a_sensor_break_in_the_heaters_readings_trips_it(sim, heater):
    sim.flask.open_thermocouple(True)
    sim.clock.advance(1.0)  # the controller samples the open thermocouple
    heater.trigger().wait(timeout=10)  # the trip (heater made safe) comes before the Status
    assert math.isnan(heater.read()["heater_temperature"]["value"])
    assert "sensor break" in heater.fault
    assert sim.controller.manual and sim.controller.output_percent == 0.0


def test_the_rtu_silence_is_counted_on_the_world_clock(sim, heater, monkeypatch):
    """minimalmodbus waits 3.5 characters (4 ms at 9600 baud) of wall time after a reply
    before the next request; once the world clock has moved on that long, it does not.
    minimalmodbus's wall clock is one that only its own sleeps move: a loaded machine that
    holds the test's thread for 4 ms between two requests (a CI run beside other tests) must
    not look like a line that has rested."""
    slept, wall = [], [1000.0]

    def sleep(seconds):
        slept.append(seconds)
        wall[0] += seconds

    monkeypatch.setattr(minimalmodbus, "time", types.SimpleNamespace(
        sleep=sleep, monotonic=lambda: wall[0]))
    heater.temperature.get()
    heater.temperature.get()  # back to back: the world has not moved, the line must rest
    assert len(slept) == 1 and slept[0] == pytest.approx(3.5 * 11 / 9600)
    sim.clock.advance(0.01)  # the world has waited longer than the silence
    heater.temperature.get()
    assert len(slept) == 1


def test_the_settle_polls_rest_between_its_two_requests_on_the_world_clock(sim, heater,
                                                                          monkeypatch):
    """A settle poll reads the read-back, then the status word: the line's silence between the
    two is waited on the world clock (world time passes, a jump), never in wall time by
    minimalmodbus on the settle thread, where the world clock could not move meanwhile."""
    wall_sleeps = []
    real_time = minimalmodbus.time
    monkeypatch.setattr(minimalmodbus, "time", types.SimpleNamespace(
        sleep=lambda s: (wall_sleeps.append(threading.current_thread().name),
                         real_time.sleep(s)),
        monotonic=real_time.monotonic))
    requests = []  # (world time, first register) of every read the controller served
    serve = sim.registers.getValues
    monkeypatch.setattr(sim.registers, "getValues", lambda fc, address, count=1: (
        requests.append((sim.clock.now(), address)), serve(fc, address, count))[1])
    assert heater.set(290.0).wait(timeout=30) is None
    polls = [(t, next_t) for (t, a), (next_t, next_a) in zip(requests, requests[1:])
             if a == 1 and next_a == 75]
    assert len(polls) > 20  # minutes of heating at one poll per 5 s
    silence_s = minimalmodbus._calculate_minimum_silent_period(9600)
    assert all(silence_s <= later - first < silence_s + 0.001 for first, later in polls)
    assert not [name for name in wall_sleeps if name.endswith("-settle")]


def test_a_failed_triggered_read_fails_its_status(sim, heater):
    sim.link.close_port()
    status = heater.output.trigger()
    with pytest.raises(HeaterCommunicationError, match="output level"):
        status.wait(timeout=10)
    sim.link.clear()
    assert heater.output.read()["heater_output"]["value"] == sim.controller.output_percent


# -- loop:// : nothing on the other end but our own echo --------------------------------
def test_loopback_echo_is_not_a_reply():
    device = HeatingController("loop://", name="lonely", timeout_s=0.05, retries=1)
    with pytest.raises(HeaterCommunicationError, match="lonely: read register 1") as info:
        device.temperature.get()
    assert info.value.attempts == 2
    device.destroy()


@pytest.mark.parametrize("kwargs, parameter", [
    ({"slave_address": 0}, "slave_address"), ({"slave_address": 248}, "slave_address"),
    ({"max_temperature_c": float("inf")}, "max_temperature_c"),
    ({"max_temperature_c": 4000.0}, "max_temperature_c"),  # beyond the int16 register
    ({"tolerance_c": 0}, "tolerance_c"), ({"settle_time_s": -1}, "settle_time_s"),
    ({"timeout_s": 0}, "timeout_s"), ({"retries": -1}, "retries"),
    ({"poll_interval_s": 0}, "poll_interval_s"), ({"safe_setpoint_c": 400.0}, "safe_setpoint_c"),
    ({"baudrate": 0}, "baudrate")])
def test_bad_arguments_are_refused(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        HeatingController("loop://", name="bad", **kwargs)


@pytest.mark.parametrize("kwargs, parameter", [
    ({"retries": 1.5}, "retries"), ({"slave_address": True}, "slave_address"),
    ({"tolerance_c": "5"}, "tolerance_c"), ({"baudrate": 9600.0}, "baudrate")])
def test_arguments_of_the_wrong_kind_are_a_type_error_naming_them(kwargs, parameter):
    """Checked by :mod:`ncsynth.validation`, as every value a user gives: a wrong kind of
    value is a TypeError, a value out of bounds a ValueError."""
    with pytest.raises(TypeError, match=parameter):
        HeatingController("loop://", name="bad", **kwargs)


def test_bad_url_is_refused():
    with pytest.raises(ValueError, match="url"):
        HeatingController("", name="bad")


def test_negative_ramp_rate_refused_before_sending():
    device = HeatingController("loop://", name="ramp", timeout_s=0.05, retries=0)
    with pytest.raises(ValueError, match="ramp_rate"):
        device.ramp_rate.put(-5.0)
    device.destroy()


def test_a_setpoint_finer_than_the_controllers_tenth_completes_at_the_value_it_stores(sim, heater):
    """The controller keeps one decimal: ``setpoint.set(242.8125)`` ends once it reads back
    242.8 (it waited forever for 242.8125 before, polling the link, and the next set of the
    setpoint was refused as 'still in progress'); a plan's next set then works."""
    status = heater.setpoint.set(242.8125)
    status.wait(timeout=10)
    assert status.success
    assert sim.controller.target_setpoint_c == 242.8
    assert heater.setpoint.get() == 242.8
    RE = RunEngine({})
    RE(bps.abs_set(heater.setpoint, 231.06, wait=True))
    assert sim.controller.target_setpoint_c == 231.1
    assert heater.setpoint.get() == 231.1
