"""`ncsynth session --sim` driven through a pseudo-terminal, as a user at the keyboard:
the live fit table and the end-of-run summary of a short protocol (--fast), a spent piston
refused in one line, and one Ctrl-C during the preheat pausing the run at once (then RE.abort()
leaves the heater confirmed safe)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

PROTOCOL = ("recipe = Recipe(operator='t', sample='pty', reaction_time_s=8, "
            "cd_initial_molar=round(sim.cd_initial_molar(), 6)); "
            "RE(hot_injection(heater, injector, detector, recipe, n_background=2, timer=timer, "
            "schedule_s=[0.5 * i for i in range(1, 13)]))")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Terminal:
    """A process on a pseudo-terminal; :meth:`expect` waits for text in what it printed."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True)
        os.close(slave)
        self.text = ""

    def expect(self, pattern: str, timeout_s: float = 240.0, after: int = 0) -> int:
        """Wait until ``pattern`` (a regex) appears after offset ``after``; its end offset."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.text[after:])
            if found:
                return after + found.end()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not seen; the screen ended with:\n"
                                     f"{self.text[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.text += ANSI.sub("", os.read(self.master, 65536).decode(errors="replace"))
                except OSError:  # the process closed the terminal
                    pass

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.type("exit")
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        os.close(self.master)


@pytest.fixture
def session(tmp_path):
    opened = []

    def start(*options):
        env = {**os.environ, "NCSYNTH_DATA_DIR": str(tmp_path / "data"),
               "IPYTHONDIR": str(tmp_path / "ipython"), "TERM": "xterm", "COLUMNS": "200"}
        env.pop("NCSYNTH_CONFIG", None)
        terminal = Terminal([sys.executable, "-c", "import sys; from ncsynth.cli import main; "
                             "sys.exit(main())", "session", "--sim", *options], env)
        opened.append(terminal)
        terminal.expect(r"ncsynth session — simulated beamline", 300)
        terminal.expect(r"In \[1\]", 120)
        return terminal

    yield start
    for terminal in opened:
        terminal.close()


def test_fast_session_shows_fits_live_and_refuses_a_spent_piston_in_one_line(session):
    screen = session("--fast")
    assert "REHEARSAL clock (--fast, speed 0)" in screen.text
    screen.type(PROTOCOL)
    header = screen.expect(r"radius_nm")
    line = screen.text[screen.text.rfind("\n", 0, header) + 1:screen.text.find("\n", header)]
    for column in ("time_s", "temperature_c", "sigma_nm", "concentration_uM", "yield_fraction",
                   "chi2_reduced"):
        assert column in line
    end = screen.expect(r"figure  \S+\.png", after=header)
    assert re.search(r"run  \S+  scan 1  success, 12 frames", screen.text[header:end])
    assert re.search(r"radius  \d\.\d+ nm", screen.text[header:end])

    screen.type(PROTOCOL)  # piston A has fired: refused before the preheat, in one line
    refused = screen.expect(r"refused: injector: piston A is spent[^\n]*sim\.new_batch\(\)",
                            after=end)
    screen.type("print('SETPOINT', heater.setpoint.get(), len(cat))")
    shown = screen.expect(r"SETPOINT \S+ 1\b", after=refused)
    assert "Traceback" not in screen.text[end:shown]


def test_one_ctrl_c_during_the_preheat_pauses_and_abort_leaves_the_heater_safe(session):
    screen = session()  # real time: the preheat takes minutes
    screen.type(PROTOCOL)
    waiting = screen.expect(r"scan 1 · preheat · heater [\d.]+ °C → 290 °C", 120)
    screen.proc.send_signal(signal.SIGINT)
    # at once: the preheat takes ~10 min of real time, a pause only at its end would come
    # long after this bound (generous for a loaded machine)
    paused = screen.expect(r"entering a paused state", 240, after=waiting)
    screen.type("print('STATE', RE.state)")
    state = screen.expect(r"STATE paused", 60, after=paused)
    assert "RE.resume()" in screen.text[paused:state]  # the options, without a traceback
    assert "Traceback" not in screen.text[waiting:state]
    screen.type("RE.abort()")
    screen.type("run = cat[-1]; print('ENDED', run.metadata['stop']['exit_status'], "
                "run['safety'].read()['heater_safe_state'].values.ravel()[0])")
    screen.expect(r"ENDED abort confirmed safe", 120, after=paused)
