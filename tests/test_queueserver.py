"""The hutch session as the startup of bluesky-queueserver, against the simulated beamline.

Everything is real: a redis-server, a ``start-re-manager`` whose worker imports
``ncsynth.session_startup`` (which starts the simulated beamline from the configuration file),
the packaged permissions file, bluesky-queueserver-api's ``REManagerAPI`` as the client, and
the catalog on disk read back in this process once the worker has exited.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
# the console script of this interpreter's environment, so the worker imports this ncsynth
START_RE_MANAGER = shutil.which("start-re-manager", path=os.path.dirname(sys.executable))
if REDIS_SERVER is None or START_RE_MANAGER is None:
    pytest.skip("needs redis-server (Debian package redis-server) and start-re-manager "
                "(pip package bluesky-queueserver) installed", allow_module_level=True)

from bluesky_queueserver_api import BFunc, BPlan  # noqa: E402
from bluesky_queueserver_api.comm_base import RequestFailedError, RequestTimeoutError  # noqa: E402
from bluesky_queueserver_api.zmq import REManagerAPI  # noqa: E402

from ncsynth.storage import open_catalog  # noqa: E402
from interrupting import live_children  # noqa: E402

# A short synthesis on the simulated flask, its clock jumping (speed 0): preheat to 30 °C
# (the flask starts at 25 °C ambient), inject, grow towards 60 °C, heater off 9 s after the
# injection. Frames every 2 s of world time: the 5th frame (8 s) is the last before the heater
# goes off, the 6th (10 s) the first after. (At 3× real time, 0.67 s of wall time between
# frames, a run of the suite with four workers on two cores skipped 2 of the 10 frames as
# late: what the plan must do at the hutch, but not what this test checks.)
CONFIG = """\
hardware = "sim"
[catalog]
server_url = ""
[session]
speed = 0
[heater]
settle_time_s = 2.0
"""
RECIPE = {"operator": "queue", "sample": "simulated CdSe", "injection_temperature_c": 30.0,
          "growth_temperature_c": 60.0, "reaction_time_s": 9.0}
SCHEDULE = {"n_frames": 10, "integration_s": 1.0, "dead_time_s": 1.0, "ratio": 1.0,
            "n_background": 1, "monitor_period_s": 1.0, "cooldown_s": 3.0}
DEVICES = ("heater", "injector", "detector")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(poll_s)
    raise TimeoutError(f"{what} within {timeout_s} s")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class QueueServer:
    """redis-server + start-re-manager in ``tmp_path`` (the worker's configuration file holds
    ``config``); :meth:`stop` ends both, always."""

    def __init__(self, tmp_path: Path, config: str = CONFIG):
        self.tmp_path = tmp_path
        self.config = config
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "manager.log"
        self.redis = self.manager = self.RM = None
        self.baseline = None  # the manager's children before any worker: the RE Manager

    def start(self) -> None:
        config_file = self.tmp_path / "hutch.toml"
        config_file.write_text(self.config)
        redis_port, control_port, info_port = _free_port(), _free_port(), _free_port()
        self.redis = subprocess.Popen(
            [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: self.redis.poll() is None and _accepts(redis_port), 10, "redis-server did not start")
        env = {**os.environ, "NCSYNTH_CONFIG": str(config_file), "NCSYNTH_DATA_DIR": str(self.data_dir),
               "OPENBLAS_NUM_THREADS": "1"}
        permissions = resources.files("ncsynth").joinpath("queueserver_permissions.yaml")
        with self.log.open("w") as log:
            self.manager = subprocess.Popen(
                [START_RE_MANAGER, "--startup-module", "ncsynth.session_startup", "--keep-re",
                 "--use-ipython-kernel", "OFF",
                 "--redis-addr", f"127.0.0.1:{redis_port}",
                 "--zmq-control-addr", f"tcp://127.0.0.1:{control_port}",
                 "--zmq-info-addr", f"tcp://127.0.0.1:{info_port}", "--zmq-publish-console", "OFF",
                 "--user-group-permissions", str(permissions),
                 "--existing-plans-devices", str(self.tmp_path / "existing_plans_and_devices.yaml")],
                cwd=self.tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.RM = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control_port}", timeout_recv=5)
        _wait(self._responds, 30, "start-re-manager did not answer", poll_s=0.2)
        self.baseline = live_children(self.manager.pid)

    def _responds(self) -> bool:
        if self.manager.poll() is not None:
            raise RuntimeError(f"start-re-manager exited ({self.manager.returncode}):\n{self.log_tail()}")
        try:
            return self.RM.status()["manager_state"] == "idle"
        except RequestTimeoutError:
            return False

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_worker_exit(self, timeout_s: float = 60) -> None:
        """The worker keeps running after environment_close() until its session's close() has
        committed everything (the manager waits only 0.5 s for it)."""
        _wait(lambda: live_children(self.manager.pid) <= self.baseline, timeout_s,
              "the RE worker process did not exit")

    def stop(self) -> None:
        try:
            if self.baseline is not None and self.manager.poll() is None:
                with contextlib.suppress(Exception):
                    if self.RM.status()["worker_environment_exists"]:
                        self.RM.environment_close()
                        self.RM.wait_for_idle(timeout=20)
                    self.wait_worker_exit(20)
                    self.RM.send_request(method="manager_stop", params={"option": "safe_off"})
                    self.manager.wait(10)
        finally:
            if self.RM is not None:
                self.RM.close()
            for proc in (self.manager, self.redis):
                if proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)  # its own session: manager + worker
                    proc.wait(10)


@pytest.fixture
def queue_server(tmp_path):
    server = QueueServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _item_result(RM, item_uid: str) -> dict:
    (item,) = [i for i in RM.history_get()["items"] if i["item_uid"] == item_uid]
    return item["result"]


@pytest.mark.timeout(180)
def test_hot_injection_queued_remotely_runs_on_the_simulated_beamline(queue_server):
    RM = queue_server.RM
    RM.environment_open()
    RM.wait_for_idle(timeout=60)
    assert RM.status()["worker_environment_exists"], queue_server.log_tail()

    # the startup namespace, filtered by the packaged permissions
    plans = RM.plans_allowed()["plans_allowed"]
    assert {"hot_injection", "double_injection", "make_safe", "count"} <= set(plans)
    assert {"heater", "injector", "detector", "timer"} <= set(RM.devices_allowed()["devices_allowed"])
    with pytest.raises(RequestFailedError, match="not allowed"):
        RM.function_execute(BFunc("close"))  # no worker function is callable remotely

    # refused before anything moves: an unknown device when queued, a bad recipe when run
    with pytest.raises(RequestFailedError, match="heater"):
        RM.item_add(BPlan("hot_injection", "oven", "injector", "detector", RECIPE, **SCHEDULE))
    bad = RM.item_add(BPlan("hot_injection", *DEVICES, {**RECIPE, "reaction_time_s": -1.0}, **SCHEDULE))
    RM.queue_start()
    RM.wait_for_idle(timeout=60)
    result = _item_result(RM, bad["item"]["item_uid"])
    assert result["exit_status"] == "failed" and result["run_uids"] == []
    assert "reaction_time_s" in result["msg"]
    RM.queue_clear()  # a failed item goes back to the queue
    # the other synthesis plan's parameters pass the same validation when queued
    RM.item_add(BPlan("double_injection", *DEVICES, RECIPE, delay_s=4.0, timer="timer", **SCHEDULE))
    RM.queue_clear()

    # the synthesis, devices named by string, the recipe as a dict
    item = RM.item_add(BPlan("hot_injection", *DEVICES, RECIPE, timer="timer", **SCHEDULE))
    RM.queue_start()
    RM.wait_for_idle(timeout=90)
    result = _item_result(RM, item["item"]["item_uid"])
    assert result["exit_status"] == "completed", result["traceback"] or queue_server.log_tail()
    (uid,) = result["run_uids"]
    RM.environment_close()
    RM.wait_for_idle(timeout=30)
    queue_server.wait_worker_exit()

    with open_catalog(queue_server.data_dir) as cat:
        run = cat[uid]
        start, stop = run.metadata["start"], run.metadata["stop"]
        assert start["plan_name"] == "hot_injection" and start["recipe"]["sample"] == RECIPE["sample"]
        assert stop["exit_status"] == "success"
        assert stop["num_events"]["primary"] == 10 and stop["num_events"]["background"] == 1
        # heating towards the growth setpoint until the reaction time is over, then off and
        # staying off: frame 5 (8 s) is before the end, frame 6 (10 s) after it. (A CI run saw
        # 100, 100, 0, 100, 100 before the end: the simulated PID's derivative kick on a short
        # step, fixed in the simulator, 5491416.)
        primary = run["primary"].read()
        temperature, output = primary["heater_temperature"].values, primary["heater_output"].values
        assert (output[:5] > 0).all() and (output[5:] == 0).all(), (temperature, output)
        cooldown = run["temperature"].read()["heater_output"].values
        assert cooldown[-1] == 0  # heater safe at the end of the cool-down record
        # the live analysis of the session ran in the worker; its derived run was committed
        # when the worker closed the session
        (derived,) = [r for r in cat.client.values() if r.metadata["start"].get("raw_uid") == uid]
        assert derived.metadata["stop"]["num_events"]["fits"] == 10
    assert not any((queue_server.data_dir / "journal" / "active").iterdir())  # nothing left to recover
