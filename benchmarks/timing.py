"""Frame-start accuracy of the timed acquisition, and the wall time of the full dry run.

At real speed (world clock speed 1) against the simulated beamline, the first N frames of
the §S.1.4 schedule are acquired three ways and their start times (the detector's own)
compared with the schedule:

* baseline: relative waits (``bps.sleep(spacing)`` between frames), what a script would do;
* software-triggered: :func:`ncsynth.plans.timed_acquisition`, absolute deadlines;
* detector-timed: :func:`ncsynth.plans.detector_timed_acquisition` (flyer).

Then the full default dry run (575 frames, jump mode) is timed.

By default the simulated beamline runs in this process (its clock at speed 1), as in a
rehearsal, so the simulated IOC's frame synthesis and HDF5 writes share this interpreter with
the devices. ``--hutch`` measures the hutch path instead: the beamline in a process of its own
(``ncsynth sim serve --speed 1``), the devices built from the ``hardware = "hutch"``
configuration it prints and timed by the wall clock (``timebase.SystemClock``), as at the
beamline where the IOC is another process.

``--before COMMIT`` measures also with that commit's code (``git archive``, laid out as its
pyproject maps the packages, on PYTHONPATH), alternated with this tree's, ``--repeats`` pairs:
the frame timing (each in a process of its own, this script's ``--json`` output; the medians
of each mode's p99 compared) and, unless ``--skip-dry-run``, the full dry run's wall time.
A p99 of 200 frames is their second-worst start: one stall of another process on this 2-core
machine moves it, hence the pairs.

    OPENBLAS_NUM_THREADS=1 python benchmarks/timing.py [--frames 200] [--skip-dry-run] [--hutch]
                                                       [--before COMMIT [--repeats K]]
                                                       [--compression None|Blosc|...]
                                                       [--modes baseline,software,detector] [--json]
"""

import argparse
import contextlib
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
from ncsynth.config import default_config, load_config  # noqa: E402
from ncsynth.config_schema import FRAME_COMPRESSIONS as COMPRESSIONS  # noqa: E402
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


@contextlib.contextmanager
def in_process_beamline(compression=None):
    """The devices on a simulated beamline in this process, its clock (speed 1) in force;
    ``compression``: the frames' (the configuration's default if None)."""
    config = load_config(hardware="sim")
    config["data"]["dir"] = tempfile.mkdtemp(prefix="ncsynth-timing-")
    if compression is not None:
        config["detector"]["compression"] = compression
    with SimulatedBeamline(speed=1.0, seed=1) as sim, timebase.use_clock(sim.clock):
        yield connect(simulated_hutch(config, sim))


@contextlib.contextmanager
def separate_beamline(compression=None):
    """The devices of a ``hardware = "hutch"`` configuration filled with what an ``ncsynth sim
    serve --speed 1`` process prints (its Channel Access environment set here); wall clock;
    ``compression`` as for :func:`in_process_beamline`."""
    data = tempfile.mkdtemp(prefix="ncsynth-timing-")
    serve = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "sim", "serve", "--speed", "1",
                              "--seed", "1", "--calibration-dir", os.path.join(data, "calibration")],
                             stdout=subprocess.PIPE, text=True)
    try:
        settings = json.loads(serve.stdout.readline())
        os.environ.update(settings.pop("environment"))
        config = default_config()
        config.update(hardware="hutch", data={"dir": data})
        for section, values in settings.items():
            config[section].update(values)
        if compression is not None:
            config["detector"]["compression"] = compression
        yield connect(config)
    finally:
        serve.terminate()
        serve.wait(30)


def measure(mode, plan_stub, n_frames, hutch=False, compression=None):
    offsets = frame_schedule(n_frames)
    with (separate_beamline if hutch else in_process_beamline)(compression) as dev:
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


def dry_run_wall_s(pythonpath: str | None = None):
    """Wall time (s) and summary of one full default ``ncsynth dry-run`` process; ``pythonpath``:
    the ``ncsynth`` package of another tree (:func:`package_tree`) instead of this one."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json",
                              "--no-progress", "--seed", "7", "--data-dir", tmp],
                             capture_output=True, text=True, check=True, env=env, cwd=tmp)
        wall = time.perf_counter() - t
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def frame_timing_before(before: str, args, modes) -> None:
    """:func:`frame_timing` with this tree and with the package tree ``before`` (on PYTHONPATH),
    alternated, ``args.repeats`` pairs, each in a process of its own; each mode's p99 printed
    per run and as medians."""
    p99 = {which: {mode: [] for mode in modes} for which in ("before", "now")}
    command = [sys.executable, os.path.abspath(__file__), "--frames", str(args.frames), "--skip-dry-run",
               "--modes", ",".join(modes), "--json", *(["--hutch"] if args.hutch else []),
               *(["--compression", args.compression] if args.compression else [])]
    for _ in range(args.repeats):
        for which, path in (("before", before), ("now", None)):
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
            if path:
                env["PYTHONPATH"] = path
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            for result, mode in zip(json.loads(out.stdout.strip().splitlines()[-1]), modes):
                p99[which][mode].append(result["p99_ms"])
                print(f"{which:<7}{result['mode']:<42} p99 {result['p99_ms']:6.2f} ms, median "
                      f"{result['median_ms']:5.2f}, max {result['max_ms']:6.2f}, skipped {result['skipped']}",
                      flush=True)
    print(f"frame start p99 (ms), median of {args.repeats} runs, first {args.frames} frames, "
          f"compression {args.compression or 'as configured'}:")
    for mode in modes:
        now, then = np.median(p99["now"][mode]), np.median(p99["before"][mode])
        print(f"  {MODES[mode][0]:<42} now {now:6.2f}, before {then:6.2f}: now / before = {now / then:.2f}")


def package_tree(commit: str, into: str) -> str:
    """The ``ncsynth`` package as it was at ``commit`` of this repository, laid out under
    ``into`` as its pyproject's ``package-dir`` maps it; the directory to put on PYTHONPATH."""
    import tomllib

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = os.path.join(into, "tree")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", repo, "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
    with open(os.path.join(tree, "pyproject.toml"), "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    root = os.path.join(into, "packages")
    os.makedirs(root)
    for package, folder in sorted(package_dir.items()):  # parents first
        os.symlink(os.path.join(tree, folder), os.path.join(root, *package.split(".")))
    return root


MODES = {"baseline": ("baseline: relative waits", relative_waits),
         "software": ("software-triggered, absolute deadlines", timed_acquisition),
         "detector": ("detector-timed (flyer)", detector_timed_acquisition)}


def frame_timing(n_frames: int, hutch: bool, compression: str | None = None,
                 modes=tuple(MODES), as_json: bool = False) -> None:
    """Frame start errors of the ways in ``modes`` (keys of :data:`MODES`), printed as a table
    with the p99 ratios to the baseline's (when measured), or as one JSON line."""
    results = [measure(*MODES[mode], n_frames, hutch, compression) for mode in modes]
    if as_json:
        print(json.dumps(results), flush=True)
        return
    where = "beamline in its own sim serve process, wall clock" if hutch else \
        "beamline in this process, its clock at speed 1"
    print(f"frame start error vs schedule, first {n_frames} frames, real time (ms); {where}; "
          f"compression {compression or 'as configured'}")
    print(f"{'mode':<42}{'median':>9}{'p99':>9}{'max':>9}{'mean':>10}{'skipped':>9}")
    for r in results:
        print(f"{r['mode']:<42}{r['median_ms']:9.2f}{r['p99_ms']:9.2f}{r['max_ms']:9.2f}"
              f"{r['mean_signed_ms']:10.2f}{r['skipped']:9d}", flush=True)
    if "baseline" in modes:
        base = results[list(modes).index("baseline")]["p99_ms"]
        for r in results:
            if r["mode"] != MODES["baseline"][0]:
                print(f"p99 ratio baseline / {r['mode']}: {base / max(r['p99_ms'], 1e-9):.1f}x")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200, help="0: no frame timing")
    parser.add_argument("--skip-dry-run", action="store_true")
    parser.add_argument("--before", metavar="COMMIT",
                        help="also measure with this commit's code, alternated (see above)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each with --before")
    parser.add_argument("--hutch", action="store_true",
                        help="the beamline in an 'ncsynth sim serve' process of its own (see above)")
    parser.add_argument("--compression", choices=COMPRESSIONS,
                        help="the frames' compression (default: the configuration's)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)} (default: all)")
    parser.add_argument("--json", action="store_true", help="the frame timing as one JSON line")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: choose among {', '.join(MODES)}, got {args.modes!r}")
    if args.frames and not args.before:
        frame_timing(args.frames, args.hutch, args.compression, modes, args.json)
    if args.before:  # the same measurements with the code of another commit, alternated
        with tempfile.TemporaryDirectory() as tmp:
            before = package_tree(args.before, tmp)
            if args.frames:
                frame_timing_before(before, args, modes)
            walls = {"before": [], "now": []}
            for _ in range(0 if args.skip_dry_run else args.repeats):
                for which, path in (("before", before), ("now", None)):
                    wall, summary = dry_run_wall_s(path)
                    walls[which].append(wall)
                    print(f"full dry run, {which} ({args.before if path else 'this tree'}): "
                          f"{wall:.1f} s wall, {summary.get('frames')} frames, "
                          f"{summary.get('exit_status')}", flush=True)
        if walls["now"]:
            ratio = np.median(walls["now"]) / np.median(walls["before"])
            print(f"full dry run wall time, median of {args.repeats}: now {np.median(walls['now']):.1f} s, "
                  f"before {np.median(walls['before']):.1f} s: now / before = {ratio:.2f}")
    elif not args.skip_dry_run:
        wall, summary = dry_run_wall_s()
        print(f"full dry run (575 frames, jump mode): {wall:.1f} s wall "
              f"(simulated protocol {summary.get('frames')} frames, target < 60 s); "
              f"reaction time simulated 7200 s -> speed-up {7590 / wall:.0f}x")


if __name__ == "__main__":
    main()
