"""What opening an embedded catalog again costs a process (issue 18): with Tiled's routers
shared by every app of the process (:mod:`ncsynth.storage.shared_router`, the default) and with
each app building its own (Tiled's builders called directly: the baseline, in the same run).

    python benchmarks/catalog_open.py [--opens N]

Writes one short run into a temporary catalog, then alternates rounds of N opens (each opens the
catalog, builds its in-process app, counts the runs and reads the last run's metadata, closes);
prints the median CPU and wall seconds per open of each way and their ratio. Run on a quiet
machine (``flock /tmp/ncsynth-heavy.lock``): about half a minute on 2 shared cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from ncsynth.storage import open_catalog, shared_router


def one_open(root) -> tuple[float, float]:
    """(CPU s, wall s) of one open, count and read."""
    cpu, wall = time.process_time(), time.perf_counter()
    with open_catalog(root) as catalog:
        len(catalog)
        catalog[-1].metadata  # noqa: B018
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=10, help="opens per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way (default 3)")
    args = parser.parse_args()
    shared_router.share_api_routers()
    with tempfile.TemporaryDirectory() as root:
        with open_catalog(root) as catalog:  # one run in it; the first app of the process
            writer = catalog.writer()
            RE = RunEngine({})
            RE.subscribe(writer)
            RE(count([det], 3))
            writer.close()
        samples: dict[str, list[tuple[float, float]]] = {"shared": [], "own": []}
        for _ in range(args.rounds):
            samples["shared"] += [one_open(root) for _ in range(args.opens)]
            with shared_router.routers_built_per_app():
                samples["own"] += [one_open(root) for _ in range(args.opens)]
    median = {way: (statistics.median(c for c, _ in s), statistics.median(w for _, w in s))
              for way, s in samples.items()}
    print(f"{'per open (median of ' + str(args.rounds * args.opens) + ')':32s} {'CPU s':>8s} {'wall s':>8s}")
    for way, label in (("own", "each app builds its routers"), ("shared", "routers shared (default)")):
        print(f"{label:32s} {median[way][0]:8.3f} {median[way][1]:8.3f}")
    print(f"{'ratio own / shared':32s} {median['own'][0] / median['shared'][0]:8.2f} "
          f"{median['own'][1] / median['shared'][1]:8.2f}")


if __name__ == "__main__":
    main()
