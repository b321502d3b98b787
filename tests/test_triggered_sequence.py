"""A detector-timed sequence kept by the IOC: the timing system's pulse sequencer triggers the
areaDetector (``TriggerMode`` External) at each start time; the device only arms both.

Real components: the simulated areaDetector IOC with its trigger sequencer, served by caproto on
the loopback, ophyd's caproto control layer, world clocks (jumping, and at real time), a real
RunEngine, HDF5 files written by the IOC.
"""

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.devices.detector import FRAME_DATASET, DetectorError
from ncsynth.simulators.area_detector import SEQUENCER_SUFFIX, serve_ioc
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import World
from sequence_plan import whole_sequence

EXPOSURE_S = 0.075
TIME_STAMPS = "/entry/instrument/NDAttributes/NDArrayTimeStamp"


class Beamline:
    """A simulated IOC (small frames) in a world on ``clock``, served on the loopback with a
    prefix of its own (:func:`serve_ioc`, which points this process's clients at it), and a
    detector with its sequencer."""

    def __init__(self, clock, tmp_path, timeout_s=5.0):
        self.clock, self.host = clock, SimulatorHost()
        self.ioc, self._release = serve_ioc(self.host, World(clock), geometry=DetectorGeometry().small(),
                                            seed=5)
        prefix = self.ioc.prefix
        self.detector = AreaDetectorSAXS(prefix, name="saxs", write_path_template=str(tmp_path),
                                         timeout_s=timeout_s, sequencer=prefix + SEQUENCER_SUFFIX)
        self.detector.exposure_time.put(EXPOSURE_S)

    def close(self):
        self.detector.destroy()
        self.host.close()
        self._release()
        self.clock.close()


@pytest.fixture
def jumping(tmp_path):
    clock = WorldClock(speed=None)
    with timebase.use_clock(clock):
        beamline = Beamline(clock, tmp_path)
        yield beamline
        beamline.close()


def _engine(clock):
    RE = RunEngine({})
    clock.follow(RE)
    return RE


def _events(RE, plan):
    documents = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    RE(plan)
    pages = [doc for name, doc in documents if name == "event_page"]
    return np.concatenate([page["data"]["saxs_frame_time"] for page in pages]), documents


def test_the_ioc_keeps_the_schedule_and_stamps_every_frame(jumping):
    ioc, clock, detector = jumping.ioc, jumping.clock, jumping.detector
    start_times = clock.now() + 3.0 + np.cumsum(0.022 + EXPOSURE_S * 1.015 ** np.arange(15))
    detector.prepare_sequence(start_times)
    times, documents = _events(_engine(clock), whole_sequence(detector))
    # a jumping clock stops at each pulse: every start exactly on its schedule, as the IOC
    # stamped it (HDF1:TimeStamp_RBV, EPICS epoch) and wrote it to the file
    np.testing.assert_allclose(times, start_times, rtol=0, atol=1e-6)
    [resource] = [doc for name, doc in documents if name == "stream_resource"]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as written:
        np.testing.assert_allclose(written[TIME_STAMPS][:], times, rtol=0, atol=1e-6)
        assert written[FRAME_DATASET].shape[0] == 15
    # one Acquire for the whole sequence: the IOC, not this process, started the frames
    assert ioc.acquisitions_started == 1 and ioc.missed_triggers == 0
    assert ioc.value(SEQUENCER_SUFFIX + "Fired_RBV") == 15
    # the cam is left as the software-triggered frames need it
    assert ioc.value("cam1:TriggerMode_RBV") == "Internal" and ioc.value("cam1:NumImages_RBV") == 1


def test_a_software_triggered_frame_follows_a_triggered_sequence_in_the_same_file(jumping):
    clock, detector = jumping.clock, jumping.detector
    detector.stage()
    try:
        detector.prepare_sequence(clock.now() + 1.0 + 0.2 * np.arange(4))
        detector.kickoff().wait(10)
        detector.complete().wait(60)
        before = clock.now()
        detector.trigger().wait(30)
        assert detector.frame_time.get() >= before  # this process's start, not a stale stamp
        assert detector.image.get() == 4  # the fifth frame of the file
    finally:
        detector.unstage()


def test_frame_starts_at_real_time_are_the_iocs_never_before_the_schedule(tmp_path):
    """At real time a frame starts when the sequencer's thread wakes: never early, and what
    the event records is that stamp (the figures of lateness: benchmarks/timing.py). On a
    loaded machine a trigger may come while the last frame is still being made: it takes no
    frame, and the frames taken still each belong to their own trigger."""
    clock = WorldClock(speed=1.0)
    with timebase.use_clock(clock):
        beamline = Beamline(clock, tmp_path)
        try:
            # the last two well after the others: a loaded machine (the suite's workers
            # and their dry runs) has armed after the whole 2.1 s of an evenly spaced eight
            start_times = clock.now() + 3.0 + 0.3 * np.array([0, 1, 2, 3, 4, 5, 14, 15])
            beamline.detector.prepare_sequence(start_times)
            times, documents = _events(RunEngine({}), whole_sequence(beamline.detector))
            [resource] = [doc for name, doc in documents if name == "stream_resource"]
            with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as written:
                np.testing.assert_allclose(written[TIME_STAMPS][:], times, rtol=0, atol=1e-6)
        finally:
            beamline.close()
    # one frame per trigger that took one; the i-th frame taken belongs to the i-th trigger or
    # a later one (a loaded machine may have armed after the first start times: they move on)
    assert len(times) >= 2 and beamline.ioc.missed_triggers == 8 - len(times)
    assert np.all(times >= start_times[:len(times)]), (times, start_times)
    assert np.all(np.diff(times) >= EXPOSURE_S)
    assert len(set(np.round(times - start_times[:len(times)], 9))) > 1  # per frame, not copied


def test_an_abort_stops_the_sequencer_and_returns_the_cam_to_internal_triggering(jumping):
    ioc, clock, detector = jumping.ioc, jumping.clock, jumping.detector
    detector.stage()
    try:
        detector.prepare_sequence(clock.now() + 1.0 + 100.0 * np.arange(5))
        clock.hold()  # as a RunEngine holds it while its plan works: no pulse before the stop
        try:
            detector.kickoff().wait(10)
            detector.stop()
        finally:
            clock.release()
        with pytest.raises(DetectorError, match="saxs: sequence ended after 0 of 5 frames"):
            detector.complete().wait(10)
    finally:
        detector.unstage()
    assert ioc.value(SEQUENCER_SUFFIX + "Arm_RBV") == 0 and ioc.value(SEQUENCER_SUFFIX + "Fired_RBV") == 0
    assert ioc.value("cam1:Acquire_RBV") == 0 and ioc.value("cam1:TriggerMode_RBV") == "Internal"


def test_a_capture_that_never_completes_fails_the_sequence_naming_the_device(tmp_path):
    clock = WorldClock(speed=None)
    with timebase.use_clock(clock):
        beamline = Beamline(clock, tmp_path, timeout_s=0.5)
        beamline.ioc.stall_writes = True
        try:
            beamline.detector.stage()
            beamline.detector.prepare_sequence(clock.now() + 1.0 + 0.2 * np.arange(3))
            beamline.detector.kickoff().wait(10)
            with pytest.raises(DetectorError, match=r"saxs: frame 0 was not written to HDF5 within 0.5 s"):
                beamline.detector.complete().wait(30)
            assert beamline.ioc.value("cam1:TriggerMode_RBV") == "Internal"
            beamline.detector.unstage()
        finally:
            beamline.close()


def test_an_ioc_gone_mid_sequence_fails_it_and_keeps_the_frames_written(tmp_path):
    clock = WorldClock(speed=None)
    with timebase.use_clock(clock):
        beamline = Beamline(clock, tmp_path, timeout_s=1.0)
        ioc, detector = beamline.ioc, beamline.detector
        try:
            detector.stage()
            t0 = clock.now()
            detector.prepare_sequence(t0 + 1.0 + np.array([0.0, 0.2, 0.4, 1000.0]))
            detector.kickoff().wait(10)
            while ioc.value("HDF1:NumCaptured_RBV") < 3:
                clock.sleep(1.0)
            path = ioc.value("HDF1:FullFileName_RBV")
            beamline.host.run(ioc.stop())
            with pytest.raises(DetectorError, match=r"saxs: frame 3 was not written to HDF5 within 1.0 s: "
                                                    r"the IOC does not answer"):
                detector.complete().wait(60)
            detector.unstage()  # forgets its staging, the IOC gone
        finally:
            beamline.close()
    with h5py.File(path, "r") as kept:
        assert kept[FRAME_DATASET].shape[0] == 3


def test_start_times_passed_at_arming_move_on_and_catch_up_in_the_dead_times():
    from ncsynth.devices.area_detector_sequences import catch_up
    from ncsynth.plans.schedule import frame_schedule

    times = 1000.0 + frame_schedule(40)  # §S.1.4: 75 ms exposures, dead times from 22 ms up
    pulses = np.array(catch_up(times, earliest=1000.05, exposure_s=EXPOSURE_S))
    assert pulses[0] == 1000.05 and np.all(pulses >= times)
    # never sooner after the last exposure than the schedule's shortest dead time
    assert np.all(np.diff(pulses) >= EXPOSURE_S + 0.022 - 1e-12)
    caught_up = np.flatnonzero(pulses == times)
    assert 0 < caught_up[0] < 40 and np.all(pulses[caught_up[0]:] == times[caught_up[0]:])
    # a schedule still ahead is left as it is
    assert catch_up(times, earliest=999.0, exposure_s=EXPOSURE_S) == list(times)
