"""SAXS detector benchmark: frame synthesis and one software-triggered frame through the stack.

1. Synthesis of one full-size 480×480 frame from a §S.6.5-grid distribution (502 cells) at
   260 °C: median and p99 ms, against the 75 ms exposure it simulates (ratio), and against a
   baseline measured in the same run — evaluating S2.1 directly at every pixel's q instead of
   on the fine q grid + per-pixel interpolation.
2. One software-triggered frame through the full stack (AreaDetectorSAXS.trigger → Channel
   Access → the simulated areaDetector IOC → its HDF5 plugin on disk → NumCaptured back):
   median and p99 ms, in jump mode (pure overhead) and at real time (75 ms exposure included;
   overhead compared with the detector's 22 ms dead time of §S.1.4).
3. A detector-timed sequence of full-size frames in jump mode (the §S.1.4 schedule
   t_i + t_w·1.015^(n-1)): wall seconds per frame, i.e. what the detector adds to a dry run.

    python benchmarks/detector.py [--frames N] [--triggers N] [--sequence N]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import numpy as np

from ncsynth import timebase
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.scattering import distribution_intensity
from ncsynth.devices.area_detector import AreaDetectorSAXS
from ncsynth.simulators.area_detector import serve_ioc
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.detector import FrameSynthesizer
from ncsynth.simulators.server import SimulatorHost
from ncsynth.simulators.world import World

EXPOSURE_S = 0.075
DEAD_TIME_S = 0.022


def distribution():
    """Gaussian batch R = 2.36 nm, σ = 0.24 nm, 24 µM on 502 cells over 0-4 nm (§S.6.5 grid)."""
    radius = (np.arange(502) + 0.5) * 4.0 / 502
    numbers = np.exp(-0.5 * ((radius - 2.36) / 0.24) ** 2)
    return radius, numbers * 24e-6 / numbers.sum()


def percentiles_ms(samples_s):
    samples = np.asarray(samples_s) * 1e3
    return float(np.median(samples)), float(np.percentile(samples, 99))


def bench_synthesis(n_frames: int):
    geometry = DetectorGeometry()
    synth = FrameSynthesizer(geometry, seed=0)
    radius, numbers = distribution()
    synth.synthesize(radius, numbers, 260.0, EXPOSURE_S)  # warm the form-factor cache
    times = []
    for _ in range(n_frames):
        t0 = time.perf_counter()
        synth.synthesize(radius, numbers, 260.0, EXPOSURE_S)
        times.append(time.perf_counter() - t0)
    median, p99 = percentiles_ms(times)

    # baseline: S2.1 at every valid pixel's q (one frame; the per-pixel kernel is not cacheable
    # in memory at full size, so it is evaluated in blocks)
    q_pixels = geometry.q_map_nm[~geometry.mask]
    t0 = time.perf_counter()
    for block in np.array_split(q_pixels, 64):
        distribution_intensity(block, radius, numbers)
    baseline_s = time.perf_counter() - t0

    print(f"synthesis, full frame {geometry.shape}, {radius.size} size cells, {synth.q_grid_nm.size}-point q grid")
    print(f"  median {median:.1f} ms, p99 {p99:.1f} ms over {n_frames} frames")
    print(f"  exposure {EXPOSURE_S * 1e3:.0f} ms / median synthesis = {EXPOSURE_S * 1e3 / median:.1f}x (real-time headroom)")
    print(f"  baseline (S2.1 per pixel): {baseline_s * 1e3:.0f} ms = {baseline_s * 1e3 / median:.0f}x slower")


@contextlib.contextmanager
def staged_detector(speed):
    """(clock, staged AreaDetectorSAXS) on a simulated IOC scattering from :func:`distribution`."""
    clock = WorldClock(speed=speed)
    world = World(clock)
    with SimulatorHost() as host, tempfile.TemporaryDirectory() as root, timebase.use_clock(clock):
        ioc, release_clients = serve_ioc(host, world, geometry=DetectorGeometry(), seed=0)
        ioc.set_distribution(*distribution())
        det = AreaDetectorSAXS(ioc.prefix, name="saxs", write_path_template=root)
        det.exposure_time.put(EXPOSURE_S)
        det.stage()
        try:
            yield clock, det
        finally:
            det.unstage()
            release_clients()
    clock.close()


def bench_trigger(n_triggers: int, speed):
    label = "jump mode" if speed is None else f"speed {speed:g}"
    with staged_detector(speed) as (_, det):
        det.trigger().wait(10)  # connect, warm caches
        times = []
        for _ in range(n_triggers):
            t0 = time.perf_counter()
            det.trigger().wait(10)
            times.append(time.perf_counter() - t0)
    median, p99 = percentiles_ms(times)
    print(f"software trigger through the stack ({label}, 480x480 uint32, Channel Access + IOC HDF5 plugin)")
    print(f"  median {median:.1f} ms, p99 {p99:.1f} ms over {n_triggers} frames")
    if speed == 1.0:
        overhead = median - EXPOSURE_S * 1e3
        print(f"  overhead beyond the {EXPOSURE_S * 1e3:.0f} ms exposure: {overhead:.1f} ms "
              f"= {overhead / (DEAD_TIME_S * 1e3):.2f}x the Rayonix dead time of {DEAD_TIME_S * 1e3:.0f} ms")


def bench_sequence(n_frames: int):
    with staged_detector(None) as (clock, det):
        n = np.arange(1, n_frames + 1)
        start_times = clock.now() + 1.0 + np.cumsum(EXPOSURE_S + DEAD_TIME_S * 1.015 ** (n - 1))
        det.prepare_sequence(start_times)
        t0 = time.perf_counter()
        det.kickoff().wait(10)
        det.complete().wait(600)
        wall = time.perf_counter() - t0
    span = start_times[-1] - start_times[0]
    print(f"detector-timed sequence (jump mode, 480x480): {n_frames} frames spanning {span:.0f} s of world time")
    print(f"  {wall:.2f} s wall = {wall / n_frames * 1e3:.1f} ms per frame ({span / wall:.0f}x faster than real time)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--triggers", type=int, default=30)
    parser.add_argument("--sequence", type=int, default=200)
    args = parser.parse_args(argv)
    bench_synthesis(args.frames)
    bench_trigger(args.triggers, None)
    bench_trigger(args.triggers, 1.0)
    bench_sequence(args.sequence)


if __name__ == "__main__":
    main()
