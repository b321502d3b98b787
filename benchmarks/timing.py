"""Frame-start accuracy of the timed acquisition, and the wall time of the full dry run.

At real speed (world clock speed 1) against the simulated beamline, the first N frames of
the §S.1.4 schedule are acquired three ways and their start times (the detector's own)
compared with the schedule:

* baseline: relative waits (``bps.sleep(spacing)`` between frames), what a script would do;
* software-triggered: :func:`ncsynth.plans.timed_acquisition`, absolute deadlines;
* detector-timed: :func:`ncsynth.plans.detector_timed_acquisition` (flyer).

Then the full default dry run (575 frames, jump mode) is timed.

    OPENBLAS_NUM_THREADS=1 python benchmarks/timing.py [--frames 200] [--skip-dry-run]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import bluesky.plan_stubs as bps  # noqa: E402
import bluesky.preprocessors as bpp  # noqa: E402
import numpy as np  # noqa: E402
from bluesky import RunEngine  # noqa: E402

from ncsynth import timebase  # noqa: E402
from ncsynth.config import load_config  # noqa: E402
from ncsynth.instruments import connect, simulated_hutch  # noqa: E402
from ncsynth.plans import (background_frames, detector_timed_acquisition, frame_schedule,  # noqa: E402
                           timed_acquisition)
from ncsynth.simulators.beamline import SimulatedBeamline  # noqa: E402


def relative_waits(detector, heater, timer, t0, offsets, **_):
    """The baseline: sleep the nominal spacing between frames, no absolute deadlines."""
    yield from bps.mv(timer, t0)
    for gap in np.diff(np.concatenate(([0.0], offsets))):
        yield from bps.sleep(max(0.0, gap - 0.075))
        yield from bps.trigger_and_read([detector, heater.temperature, heater.output])


def measure(mode, plan_stub, n_frames):
    config = load_config(hardware="sim")
    config["data"]["dir"] = tempfile.mkdtemp(prefix="ncsynth-timing-")
    offsets = frame_schedule(n_frames)
    with SimulatedBeamline(speed=1.0, seed=1) as sim, timebase.use_clock(sim.clock):
        dev = connect(simulated_hutch(config, sim))
        RE = RunEngine({})
        docs = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        zero = []

        @bpp.run_decorator()
        def plan():
            # as in the protocol, background frames come first (they also warm up the
            # simulator's frame synthesis); t = 0 follows one second after them
            yield from background_frames(dev.detector, dev.heater, 3)
            zero.append(timebase.now() + 1.0)
            yield from plan_stub(dev.detector, dev.heater, dev.timer, zero[0], offsets,
                                 monitor_period_s=0)

        RE(bpp.stage_wrapper(plan(), [dev.detector]))
        t0 = zero[0]
        dev.close()
    primary = {doc["uid"] for name, doc in docs
               if name == "descriptor" and doc["name"] == "primary"}
    starts = []
    for name, doc in docs:  # each frame's own start
        if name == "event" and doc["descriptor"] in primary:
            starts.append(doc["data"]["saxs_frame_time"])
        elif name == "event_page" and doc["descriptor"] in primary:
            starts.extend(doc["data"]["saxs_frame_time"])
    deadlines = t0 + offsets
    starts = np.sort(np.array(starts))
    if plan_stub is timed_acquisition:
        # it skips a frame whose successor is already due, so a frame is never a whole
        # spacing late: it belongs to the last deadline before its start (1 ms early allowed)
        index = np.searchsorted(deadlines, starts + 1e-3, side="right") - 1
    else:  # the others take every frame, in order, however late
        index = np.arange(len(starts))
    errors_ms = (starts - deadlines[index]) * 1e3
    return {"mode": mode, "frames": len(starts), "skipped": n_frames - len(np.unique(index)),
            "median_ms": float(np.median(np.abs(errors_ms))),
            "p99_ms": float(np.percentile(np.abs(errors_ms), 99)),
            "max_ms": float(np.abs(errors_ms).max()),
            "mean_signed_ms": float(errors_ms.mean())}


def dry_run_wall_s():
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json",
                              "--data-dir", tmp], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--skip-dry-run", action="store_true")
    args = parser.parse_args()
    results = [measure("baseline: relative waits", relative_waits, args.frames),
               measure("software-triggered, absolute deadlines", timed_acquisition, args.frames),
               measure("detector-timed (flyer)", detector_timed_acquisition, args.frames)]
    print(f"frame start error vs schedule, first {args.frames} frames, real time (ms)")
    print(f"{'mode':<42}{'median':>9}{'p99':>9}{'max':>9}{'mean':>10}{'skipped':>9}")
    for r in results:
        print(f"{r['mode']:<42}{r['median_ms']:9.2f}{r['p99_ms']:9.2f}{r['max_ms']:9.2f}"
              f"{r['mean_signed_ms']:10.2f}{r['skipped']:9d}")
    base = results[0]["p99_ms"]
    for r in results[1:]:
        print(f"p99 ratio baseline / {r['mode']}: {base / max(r['p99_ms'], 1e-9):.1f}x")
    if not args.skip_dry_run:
        wall, summary = dry_run_wall_s()
        print(f"full dry run (575 frames, jump mode): {wall:.1f} s wall "
              f"(simulated protocol {summary.get('frames')} frames, target < 60 s); "
              f"reaction time simulated 7200 s -> speed-up {7590 / wall:.0f}x")


if __name__ == "__main__":
    main()
