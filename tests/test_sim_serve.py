"""`ncsynth sim serve`: standalone simulators a separate process can drive, with what a
``hardware = "hutch"`` configuration needs to use them printed as one JSON line."""

import json
import os
import signal
import subprocess
import sys

from ophyd import EpicsSignalRO

from ncsynth.analysis.calibration_files import geometry_from_files
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.devices import HeatingController, Injector


def test_sim_serve_prints_its_settings_serves_devices_and_ends_on_sigterm(tmp_path, monkeypatch):
    proc = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "sim", "serve",
                             "--calibration-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        settings = json.loads(proc.stdout.readline())
        assert set(settings) == {"heater", "injector", "detector", "environment"}
        assert all(settings[key]["url"].startswith("socket://127.0.0.1:") for key in ("heater", "injector"))
        heater = HeatingController(settings["heater"]["url"], name="heater")
        assert 15 < heater.temperature.get() < 35          # a flask at room temperature
        injector = Injector(settings["injector"]["url"], name="injector")
        injector.refresh()
        assert injector.armed.get() == 0          # the board boots disarmed
        injector.close()
        detector = settings["detector"]
        # the simulated set-up's calibration files, in the directory asked for
        assert geometry_from_files(detector["poni"], detector["mask"]).shape == DetectorGeometry().shape
        assert os.path.dirname(detector["poni"]) == str(tmp_path)
        # the IOC answers over Channel Access on the loopback, found through the printed environment
        assert settings["environment"]["EPICS_CA_ADDR_LIST"].startswith("127.0.0.1:")
        for key, value in settings["environment"].items():
            monkeypatch.setenv(key, value)
        incident = EpicsSignalRO(detector["incident_monitor_pv"], name="incident")
        assert incident.get(connection_timeout=10, timeout=10) == 1e13
        assert EpicsSignalRO(detector["prefix"] + "cam1:ArraySizeX_RBV", name="cols").get(connection_timeout=10, timeout=10) == 480
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
