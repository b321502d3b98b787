"""`ncsynth sim serve`: standalone simulators a separate process can drive."""

import json
import os
import signal
import subprocess
import sys

from ncsynth.devices import HeatingController, Injector


def test_sim_serve_prints_urls_serves_devices_and_ends_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "sim", "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        urls = json.loads(proc.stdout.readline())
        assert set(urls) == {"heater", "injector", "detector"}
        assert all(u.startswith("socket://127.0.0.1:") for u in urls.values())
        heater = HeatingController(urls["heater"], name="heater")
        temperature = heater.temperature.get()
        assert 15 < temperature < 35          # a flask at room temperature
        injector = Injector(urls["injector"], name="injector")
        injector.refresh()
        assert injector.armed.get() == 0          # the board boots disarmed
        injector.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
