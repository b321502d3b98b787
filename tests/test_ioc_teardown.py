"""Simulated IOCs started and stopped one after another in one process, as a test worker does
(issue 18): a stopped IOC hangs up on its Channel Access clients, and detectors closed right
after connecting (a plan refused before anything moves) leave the next detector of the process
its frames. Real components: caproto IOCs on the loopback, ophyd's caproto control layer, a
RunEngine following the jumping world clock."""

import threading
import time

from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from caproto.threading.pyepics_compat import PV

from ncsynth import timebase
from ncsynth.config import load_config
from ncsynth.instruments import connect, simulated_hutch
from ncsynth.simulators.beamline import SimulatedBeamline


def _beamline_session(data_dir, n_frames: int = 0):
    """Connect the devices to a fresh simulated beamline, take ``n_frames`` software-triggered
    frames, close the devices, then the beamline; return the Channel Access client's circuits
    to the IOC (as they were before the close: caproto forgets a circuit once it is hung up on)
    and the events."""
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(data_dir)
    events = []
    with SimulatedBeamline(seed=1) as sim, timebase.use_clock(sim.clock):
        devices = connect(simulated_hutch(config, sim))
        try:
            if n_frames:
                RE = RunEngine({})
                sim.clock.follow(RE)
                RE.subscribe(lambda name, doc: events.append(doc) if name == "event" else None)
                detector = devices.detector
                RE(bpp.stage_wrapper(bpp.run_wrapper(
                    bps.repeat(lambda: bps.trigger_and_read([detector]), n_frames)), [detector]))
        finally:
            circuits = [manager for (where, _), manager
                        in PV.default_context().circuit_managers.items()
                        if where == sim.detector.circuit_address]
            devices.close()
    return circuits, events


def test_a_stopped_ioc_hangs_up_on_its_clients(tmp_path):
    circuits, events = _beamline_session(tmp_path, n_frames=1)
    assert len(events) == 1
    # a circuit left open to a stopped server stays 'connected' ~36 s, until caproto's echo
    # check gives up on it, its channels' reads waiting out their time-outs meanwhile; hung up
    # on, the client's selector thread sees it at once (at most a few ms; 10 s under any load)
    gave_up = time.monotonic() + 10.0
    while any(manager.connected for manager in circuits) and time.monotonic() < gave_up:
        time.sleep(0.01)
    assert circuits and not any(manager.connected for manager in circuits)


def test_detectors_closed_right_after_connecting_leave_the_next_one_its_frames(tmp_path):
    for index in range(10):
        _beamline_session(tmp_path / f"refused{index}")
    _, events = _beamline_session(tmp_path / "frames", n_frames=3)
    assert [event["seq_num"] for event in events] == [1, 2, 3]
    # caproto's thread that sends the subscriptions of every channel of the process (it dies
    # if one it is given has lost its server, and no monitor of the process updates after)
    assert "activate_subscriptions" in {thread.name for thread in threading.enumerate()}
