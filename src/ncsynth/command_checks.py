"""Refusals of the commands besides the dry run that the command line and configuration
decide alone, before :mod:`ncsynth.cli` imports what the command needs (issue 18: a refusal
in at most 1 s; bluesky, ophyd, Tiled, pyFAI take seconds). Each check raises ValueError in
one line naming the option or file and why; the command checks the same again when it runs
(the same functions: :mod:`ncsynth.plans.flow_points`, :func:`ncsynth.config.data_path`,
:func:`ncsynth.config.subscribe_address`, :func:`ncsynth.api_keys.server_api_key`).
"""

from __future__ import annotations

from pathlib import Path

from ncsynth.api_keys import api_key_from_file, server_api_key
from ncsynth.config import data_path, subscribe_address


def flow_grid(args) -> dict | None:
    """The flow dry run's grid of the command line, ``{"nucleation_c": [...], "growth_c":
    [...]}`` in °C (280 or 260 °C for the axis not given), None for the default grid."""
    if not (args.nucleation or args.growth):
        return None
    return {"nucleation_c": args.nucleation or [280.0], "growth_c": args.growth or [260.0]}


def check_flow(args, configuration: dict) -> None:
    """The flow dry run's points (grid and reaction time, °C and s) against the configured
    zones' and pumps' limits, as :func:`ncsynth.plans.flow.flow_scan` checks them."""
    from ncsynth.plans.flow_points import (DEFAULT_GRID, DEFAULT_RESIDENCE_S, PUMPS, ReactorSpec,
                                           ZoneLimit, check_points, grid_points)

    flow = configuration["flow"]
    grid = {**DEFAULT_GRID, **(flow_grid(args) or {})}
    residence_s = DEFAULT_RESIDENCE_S if args.residence is None else args.residence
    points = grid_points(grid["nucleation_c"], grid["growth_c"], residence_s)
    chamber, oven = (ZoneLimit(key, flow[key]["max_temperature_c"]) for key in ("chamber", "oven"))
    check_points(points, chamber, oven, ReactorSpec.from_config(flow), len(PUMPS))


def api_key(args) -> str | None:
    """The key of ``--api-key-file`` (its first line; ValueError naming the file if it cannot
    be read or holds none), else of ``--api-key``, else None (the server reads the
    environment)."""
    if not args.api_key_file:
        return args.api_key
    try:
        return api_key_from_file(args.api_key_file)
    except OSError as exc:
        raise ValueError(f"--api-key-file {args.api_key_file}: {exc.strerror or exc}") from None


def check_command(args, configuration: dict | None) -> None:
    """What each command besides ``dry-run``'s plan can be refused for before it starts: a
    data directory that is a file (the commands that write one), ``recover`` on a data
    directory that does not exist (a mistyped --data-dir: it would create one), the flow dry run's points,
    the analysis service's proxy address, the catalog server's API key (:func:`api_key`,
    else the environment's), ``sim serve --calibration-dir`` naming a file."""
    command = args.command
    if command in ("dry-run", "flow", "session", "recover"):
        path = data_path(configuration)
        if command == "recover" and not path.exists():
            raise ValueError(f"{path}: no such data directory, nothing to recover there; give "
                             f"the one the runs were written to (--data-dir)")
    if command == "flow":
        check_flow(args, configuration)
    if command == "analysis":
        subscribe_address(configuration, args.proxy)
    if command == "catalog" and args.catalog_command == "serve":
        server_api_key(configuration, api_key(args))
    calibration = getattr(args, "calibration_dir", None)
    if calibration and Path(calibration).expanduser().exists() and \
            not Path(calibration).expanduser().is_dir():
        raise ValueError(f"--calibration-dir {calibration}: a file, not a directory")
