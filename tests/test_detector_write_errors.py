"""A frame the IOC's HDF5 plugin cannot write fails with the plugin's own cause.

Real components: the simulated areaDetector IOC over Channel Access on the loopback, its
HDF5 plugin writing to a real small tmpfs that is filled up between two frames
(tests/small_tmpfs.py), the AreaDetectorSAXS device reading the plugin's WriteStatus and
WriteMessage when the frame is late.
"""

import errno
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.detector import FRAME_DATASET, DetectorError
from ncsynth.simulators.area_detector import SimulatedAreaDetector
from ncsynth.simulators.ca_loopback import epics_client_environment
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


def _fill_the_disk_between_two_frames(directory: str) -> tuple[str, str]:
    """The scenario, in a process of its own: frame 0 written, the disk filled, frame 1 taken.
    Returns (frame 1's error message, the frame file's path)."""
    disk_dir = Path(directory) / "disk"
    clock = WorldClock(speed=None)
    ioc = SimulatedAreaDetector(World(clock), DetectorGeometry().small(), prefix="FULL:", seed=3)
    with mounted_tmpfs(disk_dir, "2m") as disk, SimulatorHost() as host, timebase.use_clock(clock):
        host.run(ioc.start())
        os.environ.update(epics_client_environment(ioc.address))
        det = AreaDetectorSAXS("FULL:", name="full", write_path_template=str(disk), timeout_s=2.0)
        try:
            det.exposure_time.put(EXPOSURE_S)
            det.stage()
            det.trigger().wait(60)
            path = ioc.value("HDF1:FullFileName_RBV")
            fill(disk)
            try:
                det.trigger().wait(60)
                message = "frame 1 was written on a full disk"
            except DetectorError as error:
                message = str(error)
            (disk / "filler").unlink()  # room to close the file
            det.unstage()
        finally:
            det.destroy()
            host.run(ioc.stop())
        with h5py.File(path, "r") as kept:
            frames_kept = kept[FRAME_DATASET].shape[0]
    clock.close()
    return message, frames_kept


def test_a_full_disk_fails_the_frame_naming_the_plugins_write_error(tmp_path):
    """The disk fills up after frame 0: frame 1 fails as late, with the HDF5 plugin's
    WriteMessage ("No space left on device", the file) in the one-line error, not only
    "not written within"; frame 0 stays in the file.

    In a process of its own: the IOC's HDF5 library is left with a file it could not flush
    (h5py: "Can't decrement id ref count ... No space left on device"), and a later file
    opened in SWMR mode in the same process crashed it (a segmentation fault in
    ``swmr_mode`` of a session test that ran after this one in the same pytest worker)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        message, frames_kept = child.submit(_fill_the_disk_between_two_frames, str(tmp_path)).result(300)
    assert message.startswith("full: frame 1 was not written to HDF5 within 2.075 s: "
                              "the HDF5 plugin reports "), message
    assert "No space left on device" in message and str(tmp_path / "disk") in message, message
    assert "\n" not in message
    assert frames_kept >= 1
