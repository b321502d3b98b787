"""How soon one Ctrl-C pauses a synthesis in the hutch session (issue 16: within a second,
whatever the plan is waiting for), and that ``RE.abort()`` then leaves the heater safe.

A simulated session in real time (speed 1: the plan really waits, as at the hutch), in this
process: ``hot_injection`` is started and this process sends itself SIGINT

* **preheat**: 2 s after the heater's setpoint is set (the flask is far from 290 °C: the plan
  waits on the heater's settle Status, minutes at the hutch);
* **frames**: 0.3 s after the third frame after injection (the plan waits on the deadline
  timer for the next frame). To reach the frames in seconds, the simulated flask is put at the
  setpoint first (the simulator's back door ``FlaskThermalModel.set_temperature``) and the
  heater's settle time is 1 s.

The time from the signal to the RunEngine's ``paused`` state (``RE.state_hook``) is printed,
and the aborted run's stop document and the heater's read-back safe state. Run alone (it is
real time, ~1-2 min with the session's start-up)::

    flock /tmp/ncsynth-heavy.lock timeout 300 python benchmarks/session_pause.py
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time

from bluesky.utils import RunEngineInterrupted

from ncsynth import quiet
from ncsynth.config import load_config
from ncsynth.session import session_namespace

#: the budget of issue 16, s
BUDGET_S = 1.0


class CtrlC:
    """Sends this process SIGINT ``delay_s`` after :meth:`arm`; notes when the RunEngine pauses."""

    def __init__(self, RE):
        self.sent = self.paused = None
        self.armed = False
        self._previous, RE.state_hook = RE.state_hook, self._state  # a clock's hook still runs

    def arm(self, delay_s: float) -> None:
        if not self.armed:
            self.armed = True
            threading.Timer(delay_s, self._send).start()

    def _send(self) -> None:
        self.sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    def _state(self, new, old) -> None:
        if new == "paused" and self.paused is None:
            self.paused = time.monotonic()
        if self._previous is not None:
            self._previous(new, old)


def interrupted(ns, label: str, arm_when, **plan) -> None:
    """Run the short protocol, Ctrl-C it when ``arm_when(name, doc_or_msg)`` says, abort it;
    print the pause's latency and how the run ended."""
    RE, cat = ns["RE"], ns["cat"]
    ctrl_c = CtrlC(RE)
    RE.msg_hook = lambda msg: arm_when("msg", msg, ctrl_c)
    token = RE.subscribe(lambda name, doc: arm_when(name, doc, ctrl_c))
    recipe = ns["Recipe"](operator="bench", sample=label, reaction_time_s=30,
                          cd_initial_molar=round(ns["sim"].cd_initial_molar(), 6))
    try:
        RE(ns["hot_injection"](ns["heater"], ns["injector"], ns["detector"], recipe,
                               n_background=2, timer=ns["timer"], **plan))
        raise SystemExit(f"{label}: the plan ended without a pause")
    except RunEngineInterrupted:
        pass
    finally:
        RE.msg_hook, RE.state_hook = None, ctrl_c._previous
        RE.unsubscribe(token)
    RE.abort(f"benchmark: Ctrl-C during the {label}")
    run = cat[-1]
    safe = run["safety"].read()["heater_safe_state"].values.ravel()[0]
    latency = ctrl_c.paused - ctrl_c.sent
    verdict = "within 1 s" if latency <= BUDGET_S else "OVER 1 s"
    print(f"Ctrl-C during the {label:<8} paused after {latency:6.3f} s ({verdict}); "
          f"RE.abort(): run {run.metadata['stop']['exit_status']}, heater {safe}")


def main() -> None:
    quiet.configure(verbose=False)  # as ``ncsynth session``: no library chatter
    config = load_config(hardware="sim")
    config["data"]["dir"] = tempfile.mkdtemp(prefix="ncsynth-pause-")
    config["catalog"]["server_url"] = ""
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    ns = session_namespace(config, sim=True, speed=1, live_plots=False)
    ns["progress"].terminal.file = open(os.devnull, "w")  # the live table: not measured here
    try:
        heater = ns["heater"]

        def preheat(name, item, ctrl_c):
            if name == "msg" and item.command == "set" and item.obj is heater:
                ctrl_c.arm(2.0)

        interrupted(ns, "preheat", preheat, schedule_s=[1.0 * i for i in range(1, 21)])

        sim = ns["sim"]
        with sim.world.lock:
            sim.world.advance()
            sim.world.flask.set_temperature(ns["Recipe"].injection_temperature_c)
        heater.settle_time_s = 1.0
        descriptors, frames = set(), []

        def between_frames(name, item, ctrl_c):
            if name == "descriptor" and item.get("name") == "primary":
                descriptors.add(item["uid"])
            elif name == "event" and item["descriptor"] in descriptors:
                frames.append(item["seq_num"])
                if len(frames) == 3:
                    ctrl_c.arm(0.3)

        interrupted(ns, "frames", between_frames, schedule_s=[1.0 * i for i in range(1, 21)])
    finally:
        ns["close"]()


if __name__ == "__main__":
    main()
