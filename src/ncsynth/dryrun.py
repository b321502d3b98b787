"""The dry run: the full hot-injection protocol on the simulated beamline
(:mod:`ncsynth.dryrun_protocol`), writing to the embedded catalog.

This module opens the catalog and starts its writer first, then imports the beamline's
stack: with the writer in a process of its own (the default) that process imports Tiled and
opens the catalog (creating it on first use) while this one imports bluesky, ophyd and the
simulators, and this process builds no Tiled app at all (issue 18).
"""

from __future__ import annotations

import time
from contextlib import closing

from ncsynth.config import catalog_databases, data_dir
from ncsynth.storage import open_catalog

#: what runs in a process of its own (``dry_run(processes=...)``)
DEFAULT_PROCESSES = ("writer", "analysis")


class DryRunError(RuntimeError):
    """The dry run could not be carried out (not a failure of the protocol itself)."""


def dry_run(config: dict, *, speed: float | None = None, seed: int | None = None,
            analysis: bool = True, progress: bool = True, plan_kwargs: dict | None = None,
            recipe_kwargs: dict | None = None, beamline_options: dict | None = None,
            second_injection: dict | None = None, steering: dict | None = None,
            processes: tuple[str, ...] | None = None) -> dict:
    """Run the protocol against simulated hardware; return the summary dict.

    ``speed`` None/0: the world's clock jumps from deadline to deadline; K: K × real time.
    ``plan_kwargs`` go to the plan, ``recipe_kwargs`` to :class:`Recipe`.
    ``second_injection`` ({"delay_s": s, "cd_molar": Cd in syringe B, mol/L}) runs the
    superfocusing experiment (:func:`~ncsynth.plans.double_injection`, seed 000 §S.5)
    instead, and the summary gains the growth exponent from the frames after piston B.
    ``steering`` ({"target_radius_nm": nm, "quench": bool} or
    {"second_injection_at_radius_nm": nm, "cd_molar": Cd in syringe B}) runs
    :func:`~ncsynth.plans.steered_synthesis`, deciding from the live fits
    (:mod:`ncsynth.steering_setup`); the summary gains ``decisions`` and ``steering``.
    ``processes``: which of ``"writer"`` (the catalog's Tiled app) and ``"analysis"`` (the
    live analysis and its figure) run in a process of their own (same documents, same fits);
    ``()`` keeps both in this process; None: :data:`DEFAULT_PROCESSES`
    (``benchmarks/dryrun.py`` compares them).
    """
    wall0 = time.perf_counter()
    processes = tuple(DEFAULT_PROCESSES if processes is None else processes)
    unknown = set(processes) - {"writer", "analysis"}
    if unknown:
        raise ValueError(f"processes: unknown {sorted(unknown)}; known: writer, analysis")
    root = data_dir(config)
    # lazy: in-process, Tiled's app is built only if this process reads the catalog; a new
    # catalog is created by the writer's process (this one then imports no Tiled catalog)
    writes_here = "writer" not in processes
    with open_catalog(root, lazy=not writes_here, create=writes_here,
                      **catalog_databases(config)) as catalog, \
            closing(catalog.writer(worker="thread" if writes_here else "process")) as writer:
        from ncsynth.dryrun_protocol import run_protocol  # the beamline's stack, meanwhile

        summary = run_protocol(
            catalog, writer, root, config, speed=speed, seed=seed, analysis=analysis,
            progress=progress, plan_kwargs=plan_kwargs, recipe_kwargs=recipe_kwargs,
            beamline_options=beamline_options, second_injection=second_injection,
            steering=steering, processes=processes)
    summary["wall_s"] = round(time.perf_counter() - wall0, 2)
    return summary
