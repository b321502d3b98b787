"""The hutch session against the simulated beamline: real RunEngine, real simulator sockets,
real catalog and RE.md files."""

from __future__ import annotations

import gc
import importlib
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from bluesky import RunEngine
from bluesky.utils import PersistentDict

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

from ncsynth import timebase  # noqa: E402
from ncsynth.config import load_config  # noqa: E402
from ncsynth.devices.heater import HeatingController  # noqa: E402
from ncsynth.plans import hot_injection  # noqa: E402
from ncsynth.session import METADATA_DIRNAME, session_namespace  # noqa: E402
from ncsynth.simulators.beamline import SimulatedBeamline  # noqa: E402


def _sim_config(data_dir):
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(data_dir)
    config["catalog"]["server_url"] = ""
    return config


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return True
    return False


# A stale RE.md written back at garbage collection shows up as an "exception ignored" in
# PersistentDict's finalizer (or as an old scan_id): both fail the test.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_session_runs_a_plan_stores_it_and_keeps_re_md(tmp_path):
    config = _sim_config(tmp_path)
    ns = session_namespace(config, sim=True, live_plots=False)
    try:
        RE, cat, sim, heater = ns["RE"], ns["cat"], ns["sim"], ns["heater"]
        assert isinstance(RE, RunEngine) and isinstance(sim, SimulatedBeamline)
        assert isinstance(heater, HeatingController) and ns["hot_injection"] is hot_injection
        assert {"injector", "detector", "timer", "count", "Recipe", "close"} <= set(ns)
        assert timebase.get_clock() is sim.clock and sim.clock.speed == 1.0  # real time
        RE.md["operator"] = "alice"
        events = []
        RE.subscribe(lambda name, doc: events.append(doc) if name == "event" else None)
        (uid,) = RE(ns["count"]([heater.temperature], 3))
        run = cat[-1]
        assert run.start["uid"] == uid and run.start["operator"] == "alice"
        stored = list(run.primary.read()["heater_temperature"].values)
        assert stored == [e["data"]["heater_temperature"] for e in events] and len(stored) == 3
        urls = sim.urls
    finally:
        ns["close"]()
    assert all(_refuses_connections(url) for url in urls.values())  # simulators stopped
    assert timebase.get_clock() is not sim.clock
    ns["close"]()  # idempotent

    again = session_namespace(config, sim=True, live_plots=False, analysis=False)
    try:
        assert again["RE"].md["operator"] == "alice" and again["RE"].md["scan_id"] == 1
        (uid2,) = again["RE"](again["count"]([again["heater"].temperature], 1))
        assert again["cat"][uid2].start["scan_id"] == 2
    finally:
        again["close"]()
    del ns, RE, cat, sim, heater, again
    gc.collect()  # a session's RE.md must not write its stale copy back when collected
    assert PersistentDict(str(tmp_path / METADATA_DIRNAME))["scan_id"] == 2


def test_startup_module_for_the_queue_server(tmp_path, monkeypatch):
    config_file = tmp_path / "hutch.toml"
    config_file.write_text(f'hardware = "sim"\n[data]\ndir = "{tmp_path / "data"}"\n'
                           '[catalog]\nserver_url = ""\n')
    monkeypatch.setenv("NCSYNTH_CONFIG", str(config_file))
    monkeypatch.delenv("NCSYNTH_DATA_DIR", raising=False)
    sys.modules.pop("ncsynth.session_startup", None)
    startup = importlib.import_module("ncsynth.session_startup")
    try:
        assert isinstance(startup.sim, SimulatedBeamline)
        (uid,) = startup.RE(startup.count([startup.heater.temperature, startup.heater.setpoint], 2))
        run = startup.cat[uid]
        assert len(run.primary.read()["heater_setpoint"]) == 2
        assert str(startup.cat.layout.root) == str(tmp_path / "data")
    finally:
        startup.close()
        sys.modules.pop("ncsynth.session_startup", None)


def test_bad_input_is_refused_before_anything_starts(tmp_path):
    config = _sim_config(tmp_path / "never")
    with pytest.raises(TypeError, match="sim"):
        session_namespace(config, sim="yes")
    with pytest.raises(ValueError, match="speed"):
        session_namespace(config, sim=True, speed=-2)
    with pytest.raises(TypeError, match="config"):
        session_namespace("hutch.toml", sim=True)
    assert not (tmp_path / "never").exists()


def test_a_hutch_session_whose_detector_ioc_does_not_answer_says_so_in_one_line(tmp_path):
    """``ncsynth session`` on a hutch configuration whose detector prefix no IOC serves (the
    IOC down, a typo): one line naming the detector, the PV that did not connect and what to
    check, exit 1, no IPython prompt (was: 84 lines of chained tracebacks from ophyd)."""
    prefix = "NCSYNTH-TEST:NOBODY:"
    (tmp_path / "hutch.toml").write_text(
        f'hardware = "hutch"\n[data]\ndir = "{tmp_path / "data"}"\n'
        f'[detector]\nprefix = "{prefix}"\n')
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"),
           "EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-m", "ncsynth.cli", "session", "--config",
                           str(tmp_path / "hutch.toml")], input="exit\n", env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "In [" not in done.stdout, done.stderr[-3000:]
    assert done.stderr.startswith(
        f"ncsynth session: detector '{prefix}': no answer over Channel Access ({prefix}cam1:"), \
        done.stderr
    assert done.stderr.count("\n") == 1 and "EPICS_CA_ADDR_LIST" in done.stderr, done.stderr
    assert ": no server answered its search); is its IOC running" in done.stderr, done.stderr


def test_start_session_opens_ipython_with_the_namespace(tmp_path):
    """`ncsynth session --sim`'s function, driven through IPython's prompt in a subprocess."""
    commands = ('uid, = RE(count([heater.temperature], 2))\n'
                'print("STORED", cat[uid].start["scan_id"], len(cat[uid].primary.read()["time"]))\n'
                'exit\n')
    env = {**os.environ, "NCSYNTH_DATA_DIR": str(tmp_path / "data"), "IPYTHONDIR": str(tmp_path / "ipython")}
    env.pop("NCSYNTH_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from ncsynth.config import load_config; "
                               "from ncsynth.session import start_session; "
                               "sys.exit(start_session(load_config(hardware='hutch'), sim=True))"],
        input=commands, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ncsynth session — simulated beamline, real time (speed 1;" in done.stdout
    assert "STORED 1 2" in done.stdout, done.stdout[-2000:]
    assert (tmp_path / "data" / "runengine-md").is_dir()


def test_sigterm_during_a_plan_aborts_it_makes_the_hardware_safe_and_ends_the_session(tmp_path):
    """A service manager stopping the session (SIGTERM) mid-synthesis: the run is aborted
    and closed with its frames, the heater confirmed safe and the injector disarmed (the
    run's ``safety`` stream, read back from the devices), and the process ends with 143
    instead of dying on the spot with the heater on."""
    import signal
    import time

    from ncsynth.storage import open_catalog

    data = tmp_path / "data"
    env = {**os.environ, "NCSYNTH_DATA_DIR": str(data), "IPYTHONDIR": str(tmp_path / "ipython")}
    env.pop("NCSYNTH_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ncsynth.config import load_config; "
                               "from ncsynth.session import start_session; "
                               "sys.exit(start_session(load_config(hardware='hutch'), sim=True, "
                               "speed=0))"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        proc.stdin.write("recipe = Recipe(operator='t', sample='s', "
                         "cd_initial_molar=round(sim.cd_initial_molar(), 6))\n"
                         "RE(hot_injection(heater, injector, detector, recipe, n_frames=400, "
                         "n_background=2, timer=timer))\n")
        proc.stdin.flush()
        journals, events, deadline = data / "journal" / "active", 0, time.monotonic() + 300
        while events < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            for journal in journals.glob("*.jsonl") if journals.exists() else []:
                events = journal.read_text().count('"event')
        assert events >= 20, "the plan did not get far enough to be terminated"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "session ended by SIGTERM" in err
    with open_catalog(data) as catalog:
        run = catalog[-1]
        if "primary" not in run:  # the newest run may be the live analysis's derived run
            run = catalog[run.metadata["start"]["raw_uid"]]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "abort"
        assert stop["num_events"]["primary"] >= 10
        safety = run["safety"].read()
        assert str(safety["heater_safe_state"].values.ravel()[0]).startswith("confirmed safe")
        assert int(safety["injector_armed"].values.ravel()[0]) == 0
    assert not list((data / "journal" / "active").glob("*.jsonl"))

