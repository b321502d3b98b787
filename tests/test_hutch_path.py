"""The hutch path on the simulated beamline: a ``hardware = "hutch"`` configuration filled with
what ``ncsynth sim serve`` prints (:meth:`SimulatedBeamline.hutch_settings`: the simulators'
sockets, the simulated areaDetector IOC's prefix and monitor PVs, the PONI and mask files) runs
``hot_injection`` with a short schedule in this plain Python process; every frame after the
injection gets a fit, and every frame's event carries the two beam monitors' readings. The
frames, software-triggered or detector-timed, come back through the catalog; an IOC gone
mid-run fails the run naming the detector, with the heater safe and the frames kept.

Real components throughout: the simulated world, Modbus and injector protocols over TCP, the
caproto IOC over Channel Access on the loopback, a real RunEngine following the world's jumping
clock, the embedded catalog, the live analysis reading its calibration from the descriptor.
"""

import math
import socket
import time

import numpy as np
import pytest
from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.analysis.live import LiveAnalysis
from ncsynth.config import default_config
from ncsynth.instruments import connect, release_each, simulated_hutch
from ncsynth.plans import Recipe, hot_injection
from ncsynth.devices.injector_board import InjectorCommsError
from ncsynth.errors import RefusedToStart
from ncsynth.simulators.beamline import SIMULATED_REPLY_TIMEOUT_S, SimulatedBeamline
from ncsynth.storage import open_catalog

#: Frame starts, s after the injection: past the first second, when the nuclei are still too
#: few to scatter above the solvent (seed 000 §S.3), up to the reaction time.
SCHEDULE_S = [5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0]
N_BACKGROUND = 3


def _hutch_config(sim, tmp_path) -> dict:
    """A ``hardware = "hutch"`` configuration filled with ``sim``'s settings."""
    config = default_config()
    config["data"]["dir"] = str(tmp_path / "data")
    return simulated_hutch(config, sim)


def _hutch_run(sim, tmp_path, catalog, *subscribers, **plan_kwargs):
    """``hot_injection`` (SCHEDULE_S) on devices built from a ``hardware = "hutch"``
    configuration of ``sim``'s settings, documents to ``catalog`` and ``subscribers``; the
    RunEngine's result (or the exception it raised), the documents, and the heater's recorded
    safe state after the devices are closed."""
    devices = connect(_hutch_config(sim, tmp_path))
    RE = RunEngine({}, call_returns_result=True)
    sim.clock.follow(RE)
    documents = []
    writer = catalog.writer()
    for subscriber in (writer, lambda name, doc: documents.append((name, doc)), *subscribers):
        RE.subscribe(subscriber)
    recipe = Recipe(operator="hutch-path test", sample="simulated CdSe",
                    cd_initial_molar=round(sim.cd_initial_molar("A"), 6), reaction_time_s=120.0)
    try:
        result = RE(hot_injection(devices.heater, devices.injector, devices.detector, recipe,
                                  schedule_s=SCHEDULE_S, n_background=N_BACKGROUND,
                                  monitor_period_s=0, timer=devices.timer, **plan_kwargs))
    except Exception as error:  # noqa: BLE001 - the fault tests look at it
        result = error
    finally:
        heater_state = devices.heater.safe_state.get()
        devices.close()
        writer.close()
    return result, documents, heater_state


def _frames(documents, stream="primary"):
    """The data of ``stream``'s events (pages unpacked), in order."""
    uids = {doc["uid"] for name, doc in documents if name == "descriptor" and doc["name"] == stream}
    frames = []
    for name, doc in documents:
        if name == "event" and doc["descriptor"] in uids:
            frames.append(doc["data"])
        elif name == "event_page" and doc["descriptor"] in uids:
            frames.extend({key: values[i] for key, values in doc["data"].items()}
                          for i in range(len(doc["seq_num"])))
    return frames


def test_the_injectors_reply_time_out_is_the_configurations(tmp_path):
    """``[injector] reply_timeout_s`` is how long each of the board's three attempts waits
    (the simulated beamline's settings give 2 s: its board answers from this process)."""
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock):
        config = _hutch_config(sim, tmp_path)
        assert config["injector"]["reply_timeout_s"] == SIMULATED_REPLY_TIMEOUT_S
        config["injector"]["reply_timeout_s"] = 0.3
        devices = connect(config)
        try:
            sim.links["injector"].drop_replies(3)
            began = time.monotonic()
            with pytest.raises(InjectorCommsError, match=r"STATUS\? failed after 3 attempts"
                                                         r".*no complete reply within 0.3 s"):
                devices.injector.refresh()
            assert time.monotonic() - began >= 3 * 0.3
            devices.injector.refresh()  # the link answers again
            assert devices.injector.state_a.get() == "READY"
        finally:
            devices.close()


def test_closing_the_devices_hangs_up_the_heater_and_the_injector(tmp_path):
    """``Instruments.close`` releases both serial ports (the heater's through its ``destroy``),
    as a session's or a dry run's end does: a port left open is closed by the garbage
    collector later, on whatever thread it runs (pyserial's socket close sleeps 0.3 s there:
    the simulators' event loop stalled 4.2 s so in the suite)."""
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock):
        devices = connect(_hutch_config(sim, tmp_path))
        try:
            assert devices.heater.temperature.get() == pytest.approx(25.0, abs=1.0)
            devices.injector.refresh()
            assert {name: link.clients for name, link in sim.links.items()} == \
                {"heater": 1, "injector": 1}
        finally:
            devices.close()
        deadline = time.monotonic() + 3.0
        while any(link.clients for link in sim.links.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {name: link.clients for name, link in sim.links.items()} == \
            {"heater": 0, "injector": 0}


def test_each_device_is_released_even_if_one_before_it_fails():
    released = []

    def broken():
        released.append("injector")
        raise OSError("port gone")

    with pytest.raises(OSError, match="port gone"):
        release_each(lambda: released.append("heater"), broken,
                     lambda: released.append("detector"))
    assert released == ["heater", "injector", "detector"]


@pytest.mark.parametrize("device", ["heater", "injector"])
def test_a_controller_that_does_not_answer_is_refused_before_the_run_opens(tmp_path, device):
    """The heater or the injector board on a port where nothing answers (unplugged, off,
    another port): the synthesis is refused in one line before the run opens: no document,
    no stored run, nothing heated, no safe-state pursuit of a controller it never reached.
    Before, a dead heater opened the run, failed it at the first setpoint and was pursued
    safe every 10 s until the process ended (a session's exit waited for it forever)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: connections are refused there
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock), \
            open_catalog(tmp_path / "data") as catalog:
        config = _hutch_config(sim, tmp_path)
        config[device]["url"] = f"socket://127.0.0.1:{port}"
        config[device]["reply_timeout_s"] = 0.2
        devices = connect(config)
        RE = RunEngine({})
        sim.clock.follow(RE)
        documents = []
        RE.subscribe(lambda name, doc: documents.append(name))
        RE.subscribe(catalog.writer())
        recipe = Recipe(operator="hutch-path test", sample="simulated CdSe", reaction_time_s=120.0)
        try:
            with pytest.raises(RefusedToStart) as refused:
                RE(hot_injection(devices.heater, devices.injector, devices.detector, recipe,
                                 schedule_s=SCHEDULE_S, n_background=N_BACKGROUND, timer=devices.timer))
            heater_state = devices.heater.safe_state.get()
        finally:
            devices.close()
        setpoint_c = sim.world.controller.target_setpoint_c
        stored = len(catalog)
    message = str(refused.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message, message
    assert message.startswith("heater does not answer (" if device == "heater" else "injector: STATUS?")
    assert message.count("Connection refused") == 1, message  # the board's 3 attempts: told once
    if device == "injector":
        assert "Connection refused (3 times)" in message, message
    assert "not starting the synthesis (nothing heated); check" in message and f"[{device}] url" in message
    assert documents == [] and stored == 0
    assert setpoint_c == 25.0 and heater_state == "not commanded safe yet"


@pytest.mark.parametrize("acquisition", ["software", "detector"])
def test_a_hutch_configuration_runs_hot_injection_on_the_simulated_beamline(tmp_path, acquisition):
    derived = []
    live = LiveAnalysis(lambda name, doc: derived.append((name, doc)))
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock), \
            open_catalog(tmp_path / "data") as catalog:
        result, documents, heater_state = _hutch_run(sim, tmp_path, catalog, live,
                                                     acquisition=acquisition)
        assert live.flush(timeout_s=120)
        live.close()
        radius_nm = float(sim.world.reaction.mean_radius_nm)
        stored = catalog[result.run_start_uids[0]]
        stored_frames = stored.primary["saxs_image"].read()
        stored_background = stored.background["saxs_image"].read()
        last_frame = np.array(sim.detector.last_frame)
        incident, transmitted = sim.detector.incident_flux, sim.detector.transmitted_flux
    assert result.exit_status == "success"
    assert heater_state.startswith("confirmed safe"), heater_state
    fits = [doc["data"] for name, doc in derived if name == "event" and "radius_nm" in doc["data"]]
    assert len(fits) == len(SCHEDULE_S)
    assert all(fit["success"] for fit in fits), [fit["reason"] for fit in fits if not fit["success"]]
    assert all(math.isfinite(fit["radius_nm"]) and fit["radius_nm"] > 0 for fit in fits)
    assert fits[-1]["radius_nm"] == pytest.approx(radius_nm, rel=0.2)
    frames = _frames(documents) + _frames(documents, "background")
    assert len(frames) == N_BACKGROUND + len(SCHEDULE_S)
    assert all(data["saxs_incident_flux"] == incident and data["saxs_transmitted_flux"] == transmitted
               for data in frames)
    # the IOC's HDF5 files, read back through the catalog: every frame, the last one as taken
    assert stored_frames.shape[0] == len(SCHEDULE_S) and stored_background.shape[0] == N_BACKGROUND
    np.testing.assert_array_equal(stored_frames[-1], last_frame)


def test_an_ioc_gone_mid_run_fails_it_naming_the_detector_with_the_heater_safe_and_frames_kept(tmp_path):
    with SimulatedBeamline(seed=5) as sim, timebase.use_clock(sim.clock), \
            open_catalog(tmp_path / "data") as catalog:
        taken = []

        def stop_the_ioc_after_three_frames(name, doc):
            if name == "event" and "saxs_frame_time" in doc["data"]:
                taken.append(doc["data"]["saxs_frame_time"])
                if len(taken) == N_BACKGROUND + 3:
                    sim.host.run(sim.detector.stop())

        error, documents, heater_state = _hutch_run(sim, tmp_path, catalog,
                                                    stop_the_ioc_after_three_frames)
        [stop] = [doc for name, doc in documents if name == "stop"]
        kept = catalog[stop["run_start"]].primary["saxs_image"].read()
        sim.world.advance()
        controller_output_percent = sim.world.controller.output_percent
    assert isinstance(error, Exception), error
    assert stop["exit_status"] == "fail"
    assert stop["reason"].startswith("saxs: cannot start an exposure"), stop["reason"]
    assert "\n" not in stop["reason"]
    assert heater_state.startswith("confirmed safe"), heater_state
    [safety] = _frames(documents, "safety")
    assert safety["heater_safe_state"].startswith("confirmed safe")
    assert controller_output_percent == 0
    assert kept.shape[0] == 3  # the frames written before the IOC went, served from its file
