"""A frame the IOC's HDF5 plugin cannot write fails with the plugin's own cause.

Real components: the simulated areaDetector IOC over Channel Access on the loopback, its
HDF5 plugin writing to a real small tmpfs that is filled up between two frames
(tests/small_tmpfs.py), the AreaDetectorSAXS device reading the plugin's WriteStatus and
WriteMessage when the frame is late.
"""

import errno

import h5py
import pytest

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.detector import FRAME_DATASET, DetectorError
from ncsynth.simulators.area_detector import SimulatedAreaDetector, epics_client_environment
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import World
from small_tmpfs import mounted_tmpfs

EXPOSURE_S = 0.075


def fill(directory) -> None:
    """Write a file in ``directory`` until its file system has no byte left (ENOSPC)."""
    with open(directory / "filler", "wb", buffering=0) as filler:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    filler.write(b"\0" * block)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error


def test_a_full_disk_fails_the_frame_naming_the_plugins_write_error(tmp_path):
    """The disk fills up after frame 0: frame 1 fails as late, with the HDF5 plugin's
    WriteMessage ("No space left on device", the file) in the one-line error, not only
    "not written within"; frame 0 stays in the file."""
    clock = WorldClock(speed=None)
    ioc = SimulatedAreaDetector(World(clock), DetectorGeometry().small(), prefix="FULL:", seed=3)
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk, SimulatorHost() as host, \
            pytest.MonkeyPatch.context() as env, timebase.use_clock(clock):
        host.run(ioc.start())
        for key, value in epics_client_environment(ioc.address).items():
            env.setenv(key, value)
        det = AreaDetectorSAXS("FULL:", name="full", write_path_template=str(disk), timeout_s=2.0)
        try:
            det.exposure_time.put(EXPOSURE_S)
            det.stage()
            det.trigger().wait(60)
            path = ioc.value("HDF1:FullFileName_RBV")
            fill(disk)
            with pytest.raises(DetectorError) as failed:
                det.trigger().wait(60)
            message = str(failed.value)
            assert message.startswith("full: frame 1 was not written to HDF5 within 2.075 s: "
                                      "the HDF5 plugin reports "), message
            assert "No space left on device" in message and str(disk) in message, message
            assert "\n" not in message
            (disk / "filler").unlink()  # room to close the file
            det.unstage()
        finally:
            det.destroy()
            host.run(ioc.stop())
        with h5py.File(path, "r") as kept:
            assert kept[FRAME_DATASET].shape[0] >= 1
    clock.close()
