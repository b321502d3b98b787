"""What reading a stored run through the embedded catalog costs a process (issue 18): with the
in-process client asking for responses as they are (``Accept-Encoding: identity``,
:data:`ncsynth.storage.catalog.IN_PROCESS_HEADERS`, the default) and with Tiled's default (blosc2,
zstd, lz4, gzip: the app compresses every response over 500 bytes and the client decompresses
it; the baseline, in the same run).

    python benchmarks/catalog_reads.py [--data-dir DIR] [--rounds N]

Reads the last run of DIR (without one: a 40-frame ``ncsynth dry-run`` into a temporary
directory first) as a notebook does: the primary stream's table, its detector frames, the run's
documents. Alternates the two ways, ``--rounds`` times each (each a fresh open), checks that
both read the same values, and prints the median CPU and wall seconds of each and their ratio.
Run on a quiet machine (``flock /tmp/ncsynth-heavy.lock``): about a minute on 2 shared cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ncsynth.storage import catalog as catalog_module
from ncsynth.storage import open_catalog


def read_last_run(root) -> tuple[float, float, tuple]:
    """(CPU s, wall s, what was read) of one open and read of the last run."""
    cpu, wall = time.process_time(), time.perf_counter()
    with open_catalog(root) as catalog:
        run = catalog[-1]
        table = run["primary"].read()
        frames = run["primary"]["saxs_image"].read()
        documents = list(catalog.documents(-1))
    read = (np.asarray(table["saxs_frame_time"]), np.asarray(frames), len(documents))
    return time.process_time() - cpu, time.perf_counter() - wall, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="data directory whose last run is read (default: "
                        "a 40-frame dry run into a temporary one)")
    parser.add_argument("--rounds", type=int, default=5, help="reads of each way (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_dir
        if root is None:
            root = scratch
            subprocess.run([sys.executable, "-m", "ncsynth.cli", "dry-run", "--data-dir", root,
                            "--frames", "40", "--reaction-time", "60", "--no-progress"],
                           check=True, stdout=subprocess.DEVNULL,
                           env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        ways = {"identity": dict(catalog_module.IN_PROCESS_HEADERS), "compressed": {}}
        samples: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
        reads = {}
        for _ in range(args.rounds):
            for way, headers in ways.items():
                catalog_module.IN_PROCESS_HEADERS = headers
                cpu, wall, reads[way] = read_last_run(root)
                samples[way].append((cpu, wall))
    same = all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(reads["identity"], reads["compressed"]))
    frames = reads["identity"][1]
    median = {way: (statistics.median(c for c, _ in s), statistics.median(w for _, w in s))
              for way, s in samples.items()}
    print(f"run read: table, {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}, "
          f"{reads['identity'][2]} documents; both ways read the same: {same}")
    print(f"{'per read (median of ' + str(args.rounds) + ')':34s} {'CPU s':>8s} {'wall s':>8s}")
    for way, label in (("compressed", "compressed (Tiled's default)"),
                       ("identity", "as they are (default)")):
        print(f"{label:34s} {median[way][0]:8.3f} {median[way][1]:8.3f}")
    print(f"{'ratio compressed / as they are':34s} {median['compressed'][0] / median['identity'][0]:8.2f} "
          f"{median['compressed'][1] / median['identity'][1]:8.2f}")


if __name__ == "__main__":
    main()
