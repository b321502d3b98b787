"""Storage benchmark: what the catalog writer costs the RunEngine, and what TiledWriter costs.

    python benchmarks/store.py [--events N]

Prints, for an N-event ``count`` of ``ophyd.sim.det`` (same process, same run):
  - events/s of the RunEngine with no subscriber (the baseline),
  - events/s with ``Catalog.writer()`` subscribed (journal + background TiledWriter), with and
    without waiting for the catalog at the stop document, and the ratio to the baseline,
  - TiledWriter subscribed directly on the RunEngine thread: whole-run batching (its default)
    and ``batch_size=1`` (one write per event), as per-event costs.
Runs in a temporary data directory; about a minute on 2 shared cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import bluesky.plans as bp
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import det

from ncsynth.storage import open_catalog


def timed_run(RE: RunEngine, events: int) -> float:
    start = time.perf_counter()
    RE(bp.count([det], events))
    return time.perf_counter() - start


def measure(RE: RunEngine, events: int, subscriber=None, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times (s) for one run, with ``subscriber`` if given."""
    token = RE.subscribe(subscriber) if subscriber is not None else None
    try:
        return min(timed_run(RE, events) for _ in range(repeats))
    finally:
        if token is not None:
            RE.unsubscribe(token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="events per run (default 300)")
    events = parser.parse_args().events
    if events < 1:
        raise SystemExit(f"--events must be >= 1, got {events}")

    with tempfile.TemporaryDirectory() as data_dir, open_catalog(data_dir) as catalog:
        RE = RunEngine({}, context_managers=[])
        timed_run(RE, 10)  # warm up imports and caches
        baseline = measure(RE, events)

        rows = [("no subscriber (baseline)", baseline)]
        for label, options in (("catalog.writer(), waits at stop", {}),
                               ("catalog.writer(wait_at_stop=False)", {"wait_at_stop": False})):
            writer = catalog.writer(**options)
            rows.append((label, measure(RE, events, writer)))
            writer.close()

        batched = measure(RE, events, TiledWriter(catalog.client))
        per_event = measure(RE, min(events, 100), TiledWriter(catalog.client, batch_size=1), repeats=1)
        rows.append(("TiledWriter on RE thread, whole-run batch", batched))

        print(f"{events}-event count of ophyd.sim.det, best of 2 runs")
        print(f"{'subscriber':45s} {'s/run':>8s} {'events/s':>10s} {'ratio':>7s}")
        for label, seconds in rows:
            print(f"{label:45s} {seconds:8.3f} {events / seconds:10.0f} {baseline / seconds:7.2f}")
        base_per_event = baseline / events
        print()
        print("TiledWriter cost per event (minus the baseline RunEngine cost):")
        print(f"  whole-run batch : {(batched / events - base_per_event) * 1e3:7.2f} ms")
        print(f"  batch_size=1    : {(per_event / min(events, 100) - base_per_event) * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
