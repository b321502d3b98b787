"""Frame compression choices of the simulated HDF5 plugin: write and read time, size per frame.

Frames of the default set-up (480x480 uint32, 75 ms exposures of nanocrystals in the solvent
and flask) synthesised as the dry run's detector does, written one by one with a flush after
each (as the plugin does in Stream mode, SWMR) through
:func:`ncsynth.simulators.frame_file.append_frame`, for every compression the plugin offers;
then read back frame by frame. Sizes are the frames' HDF5 storage; the ratio is against
``None`` measured in the same run.

    OPENBLAS_NUM_THREADS=1 python benchmarks/frame_compression.py [--frames 60] [--zlevel 6]
"""

import argparse
import os
import tempfile
import time

import h5py
import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.simulators.detector import FRAME_DTYPE, FrameSynthesizer
from ncsynth.simulators.frame_file import FRAMES, SUPPORTED_COMPRESSIONS, append_frame, open_frame_file

#: default dry-run frames per run, for the size of a run's frames
RUN_FRAMES = 575


def frames_of_a_run(geometry, count):
    """``count`` distinct frames: growing nanocrystals (1-3 nm) at 2e-5 mol/L, then solvent only."""
    synthesizer = FrameSynthesizer(geometry, seed=7)
    radii = np.linspace(1.0, 3.0, count)
    return [synthesizer.synthesize(np.array([r]), np.array([2e-5]), 260.0, 0.075)[0] for r in radii]


def measure(path, geometry, frames, compression, zlevel):
    with open_frame_file(path, geometry, FRAME_DTYPE, "2026-01-01T00:00:00", swmr=True,
                         compression=compression, zlevel=zlevel) as handle:
        t = time.perf_counter()
        for k, frame in enumerate(frames):
            append_frame(handle, frame, float(k), k + 1, 1e13, 2.5e12, 1)
        write_s = (time.perf_counter() - t) / len(frames)
        stored = handle[FRAMES].id.get_storage_size() / len(frames)
    with h5py.File(path, "r") as handle:
        dataset = handle[FRAMES]
        t = time.perf_counter()
        for k in range(len(frames)):
            back = dataset[k]
        read_s = (time.perf_counter() - t) / len(frames)
        assert np.array_equal(back, frames[-1]), compression
    return write_s, read_s, stored


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--zlevel", type=int, default=6, help="zlib level (the plugin's ZLevel)")
    args = parser.parse_args()
    geometry = DetectorGeometry()
    frames = frames_of_a_run(geometry, args.frames)
    print(f"{args.frames} frames {geometry.shape} uint32, median {np.median(frames[0]):.0f} counts/pixel; "
          f"zlib level {args.zlevel}")
    print(f"{'compression':<12}{'write ms':>10}{'read ms':>10}{'kB/frame':>10}{'ratio':>8}"
          f"{'MB per ' + str(RUN_FRAMES):>12}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {c: measure(os.path.join(tmp, f"{c}.h5"), geometry, frames, c, args.zlevel)
                   for c in SUPPORTED_COMPRESSIONS}
    raw = results["None"][2]
    for compression, (write_s, read_s, stored) in results.items():
        print(f"{compression:<12}{write_s * 1e3:10.2f}{read_s * 1e3:10.2f}{stored / 1e3:10.1f}"
              f"{raw / stored:8.2f}{stored * RUN_FRAMES / 1e6:12.1f}")
    fastest = min((c for c in results if c != "None"), key=lambda c: results[c][0])
    print(f"fastest lossless writer: {fastest}; zlib / Blosc write time: "
          f"{results['zlib'][0] / results['Blosc'][0]:.1f}x")


if __name__ == "__main__":
    main()
