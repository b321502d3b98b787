"""The ``ncsynth`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback

from ncsynth import validation
from ncsynth.config_schema import SCHEMA

# One BLAS thread: the frame synthesis and the fits are small matrix products that
# multithreaded OpenBLAS slows 50x on a loaded 2-core machine. Must precede numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


#: Largest growth exponent n the simulated flask takes: the top of the interval the growth
#: analysis searches (``ncsynth.analysis.growth.EXPONENT_BOUNDS``), beyond it n is unmeasurable.
MAX_GROWTH_EXPONENT = 12.0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration file (TOML); default: NCSYNTH_CONFIG or "
                                    "the packaged defaults")
    p.add_argument("--data-dir", help="catalog and frames go here (default: NCSYNTH_DATA_DIR "
                                      "or data.dir of the configuration)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncsynth", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="the simulated beamline")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the simulators until interrupted; print "
                                             "their URLs as one JSON line")
    serve.add_argument("--speed", type=float, default=1.0,
                       help="world clock speed: 1 = real time (default), K = K times faster")
    serve.add_argument("--seed", type=int, default=None, help="detector noise seed")

    dry = sub.add_parser("dry-run", help="run the full hot-injection protocol against the "
                                         "simulated beamline and store it in the catalog")
    _add_config_args(dry)
    dry.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    dry.add_argument("--speed", type=float, default=None,
                     help="run the world clock K times real time (1 = rehearsal) instead of "
                          "jumping to each deadline")
    dry.add_argument("--frames", type=int, default=575, help="number of frames (default 575)")
    dry.add_argument("--ratio", type=float, default=1.015, help="frame spacing ratio")
    dry.add_argument("--integration", type=float, default=0.075, help="exposure time, s")
    dry.add_argument("--dead-time", type=float, default=0.022, help="initial dead time, s")
    dry.add_argument("--background-frames", type=int, default=5)
    dry.add_argument("--acquisition", choices=["software", "detector"], default="software",
                     help="software: the RunEngine triggers each frame at its deadline; "
                          "detector: the detector keeps the schedule itself (flyer)")
    dry.add_argument("--piston", choices=["A", "B"], default="A",
                     help="the injector's piston to fire (not with --second-injection)")
    dry.add_argument("--monitor-period", type=float, default=10.0,
                     help="heater read-back period between frames, s (0: none)")
    dry.add_argument("--cooldown", type=float, default=0.0,
                     help="after the last frame, record the cool-down this long, s")
    dry.add_argument("--injection-temperature", type=float, default=290.0, help="°C")
    dry.add_argument("--growth-temperature", type=float, default=260.0, help="°C")
    dry.add_argument("--reaction-time", type=float, default=7200.0, help="s")
    dry.add_argument("--operator", default="dry-run")
    dry.add_argument("--sample", default="CdSe hot injection (simulated)")
    dry.add_argument("--seed", type=int, default=None, help="detector noise seed")
    dry.add_argument("--second-injection", type=float, default=None, metavar="DELAY_S",
                     help="superfocusing experiment (seed 000 §S.5): fire piston B DELAY_S "
                          "after A, restart the frames densely, report the growth exponent")
    dry.add_argument("--second-cd-molar", type=float, default=0.1,
                     help="Cd(OA)2 concentration in syringe B, mol/L (default 0.1)")
    dry.add_argument("--second-frames", type=int, default=None,
                     help="frames after piston B (default: --frames)")
    dry.add_argument("--second-ratio", type=float, default=None,
                     help="frame spacing ratio after piston B (default: --ratio)")
    dry.add_argument("--growth-exponent", type=float, default=None,
                     help="the simulated flask's growth exponent n (S6.16; 0 to 12, "
                          "default 4)")
    dry.add_argument("--no-analysis", action="store_true", help="do not run the live analysis")
    dry.add_argument("--no-progress", action="store_true", help="no progress bar")
    flow = sub.add_parser("flow", help="the continuous-flow reactor (seed 002)")
    flow_sub = flow.add_subparsers(dest="flow_command", required=True)
    fdry = flow_sub.add_parser("dry-run", help="temperature grid on the simulated flow reactor: "
                               "spectra, SAXS, cluster families, temperature map")
    _add_config_args(fdry)
    fdry.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    fdry.add_argument("--nucleation", nargs="+", type=float, default=None, metavar="T_C",
                      help="nucleation-chamber temperatures, °C (default 240-300 step 10)")
    fdry.add_argument("--growth", nargs="+", type=float, default=None, metavar="T_C",
                      help="growth-oven temperatures, °C (only those <= nucleation are used)")
    fdry.add_argument("--residence", type=float, default=None, help="residence time, s")
    fdry.add_argument("--speed", type=float, default=None, help="simulated clock speed")
    fdry.add_argument("--seed", type=int, default=None)
    fdry.add_argument("--no-progress", action="store_true")
    rec = sub.add_parser("recover", help="complete runs left behind by a killed process")
    _add_config_args(rec)

    rep = sub.add_parser("replay", help="re-analyse a stored run with the live analysis code")
    _add_config_args(rep)
    rep.add_argument("run", help="uid, partial uid, scan id, or -1 for the latest")
    rep.add_argument("--q-range", nargs=2, type=float, metavar=("QMIN", "QMAX"),
                     help="q range of reduction and fit, nm^-1 (default 0.1 5)")
    rep.add_argument("--model", choices=["gaussian_spheres"], default="gaussian_spheres",
                     help="scattering model (the one-population Gaussian-sphere fit)")

    exp = sub.add_parser("export", help="export a run's per-frame fit table")
    _add_config_args(exp)
    exp.add_argument("run")
    exp.add_argument("--format", choices=["csv", "nexus"], default="csv",
                     help="csv: the per-frame fit table; nexus: NXcanSAS HDF5 with the reduced "
                          "patterns, the fit table and the instrument")
    exp.add_argument("-o", "--output", help="file to write (default: <data-dir>/exports/...)")

    rpt = sub.add_parser("report", help="PNG with the paper's Fig. 1 panels for a run")
    _add_config_args(rpt)
    rpt.add_argument("run")
    rpt.add_argument("-o", "--output", help="PNG to write (default: <data-dir>/reports/...)")

    val = sub.add_parser("validate", help="a dry run's headline numbers against the simulated "
                                          "flask, with pulls")
    _add_config_args(val)
    val.add_argument("run")

    ses = sub.add_parser("session", help="IPython at the hutch: RE, catalog, devices, plans")
    _add_config_args(ses)
    ses.add_argument("--sim", action="store_true", help="simulated hardware (real-time clock)")
    ses.add_argument("--speed", type=float, default=None, help="simulated clock speed")

    cat = sub.add_parser("catalog", help="the catalog server")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True)
    srv = cat_sub.add_parser("serve", help="serve the catalog over HTTP (Tiled, API key)")
    _add_config_args(srv)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=None)
    key = srv.add_mutually_exclusive_group()
    key.add_argument("--api-key-file", default=None,
                     help="file whose first line is the API key (mode 0600); default: the "
                          "environment variable named by catalog.api_key_env")
    key.add_argument("--api-key", default=None,
                     help="the API key itself (discouraged: visible in the process list)")
    srv.add_argument("--public", action="store_true", help="let clients without a key read")
    return parser


def _check_arguments(args) -> None:
    """Refuse a bad configuration (:class:`ConfigError`) and what only the command line
    decides (clock speed, seed, the simulated flask's growth exponent) before anything
    heavy is imported or started; a plan checks its own arguments when it is called,
    before anything moves. TypeError/ValueError naming the file, key or option.

    Growth exponent n, read from seed 000: S4.12 (j_G = A·S/r^n) calls n = 0 reaction-
    limited and n = 1 diffusion-limited growth, Fig. S6.2 simulates n = 0, 2 and 4, and
    S6.16's offset B keeps k_a finite for every n >= 0; a negative n is nowhere used (S4.14
    divides by n + 1). So 0 <= n <= ``MAX_GROWTH_EXPONENT``: n = 0 is a valid flask (no
    focusing), not an error."""
    if hasattr(args, "config"):
        _config(args)
    if getattr(args, "speed", None) is not None:
        SCHEMA["simulation"]["speed"].check("--speed", args.speed)
    if getattr(args, "seed", None) is not None:
        SCHEMA["simulation"]["seed"].check("--seed", args.seed)
    if getattr(args, "growth_exponent", None) is not None:
        validation.real("--growth-exponent", args.growth_exponent, minimum=0,
                        maximum=MAX_GROWTH_EXPONENT)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    command = " ".join(filter(None, (args.command, getattr(args, "sim_command", None),
                                     getattr(args, "flow_command", None),
                                     getattr(args, "catalog_command", None))))
    try:
        _check_arguments(args)
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"ncsynth {command}: {exc}", file=sys.stderr)
        return 2
    return _command(args)


def _command(args) -> int:
    if args.command == "sim":
        return _sim_serve(args)
    if args.command == "dry-run":
        return _dry_run(args)
    if args.command == "recover":
        return _reporting_failures(args, _recover)
    if args.command == "flow":
        return _flow_dry_run(args)
    if args.command in ("replay", "export", "report", "validate"):
        return _reporting_failures(args, _stored_run)
    if args.command == "session":
        from ncsynth.session import start_session

        return start_session(_config(args), sim=True if args.sim else None, speed=args.speed)
    if args.command == "catalog":
        return _reporting_failures(args, _catalog_serve)
    return 2


def _reporting_failures(args, command) -> int:
    """``command(args)``, with any failure told in one line naming what failed and why (the
    traceback only with -v): exit 2 for a bad reference, value or file, 1 otherwise."""
    try:
        return command(args)
    except Exception as exc:
        from ncsynth.errors import first_line

        if args.verbose:
            traceback.print_exc()
        expected = isinstance(exc, (LookupError, ValueError, TypeError, OSError))
        what = first_line(exc) if expected else f"{type(exc).__name__}: {first_line(exc)}"
        print(f"ncsynth {args.command}: {what}", file=sys.stderr)
        return 2 if isinstance(exc, (LookupError, ValueError, TypeError)) else 1


def _catalog_serve(args) -> int:
    from ncsynth.catalog_server import serve_catalog

    serve_catalog(_config(args), host=args.host, port=args.port, api_key=_api_key(args),
                  allow_anonymous_read=args.public)
    return 0


def _api_key(args) -> str | None:
    """The key of --api-key-file (first line), or of --api-key (with a warning: the process list
    shows it), or None (the server reads the environment)."""
    if args.api_key_file:
        from ncsynth.catalog_server import api_key_from_file

        return api_key_from_file(args.api_key_file)
    if args.api_key:
        print("ncsynth catalog serve: warning: --api-key shows the key to every local user in the "
              "process list; use --api-key-file or the environment variable", file=sys.stderr)
    return args.api_key


def _stored_run(args) -> int:
    from ncsynth.config import data_dir
    from ncsynth.runs import export_fits, replay_run, report
    from ncsynth.storage import open_catalog

    root = data_dir(_config(args))
    with open_catalog(root) as catalog:
        ref = _run_ref(catalog, args.run)
        if args.command == "replay":
            settings = {"q_range_nm": tuple(args.q_range)} if args.q_range else {}
            print(json.dumps(replay_run(catalog, ref, **settings), default=str))
        elif args.command == "export":
            suffix = {"csv": "csv", "nexus": "nxs"}[args.format]
            path = args.output or root / "exports" / f"{args.run}-fits.{suffix}"
            print(export_fits(catalog, ref, path, format=args.format))
        elif args.command == "validate":
            from ncsynth.truth_report import format_validation, validate_run

            print(format_validation(validate_run(catalog, ref, root)))
        else:
            path = args.output or root / "reports" / f"{args.run}.png"
            print(report(catalog, ref, path))
    return 0


def _run_ref(catalog, text: str):
    """A run reference as typed: a negative index, a scan id, or a uid (prefix). Digits are a
    scan id unless no run has that scan id and they are long enough to be a uid prefix (a
    uid may well start with eight digits)."""
    from ncsynth.storage.catalog import MIN_PARTIAL_UID

    if not text.lstrip("-").isdigit():
        return text
    number = int(text)
    if number > 0 and len(text) >= MIN_PARTIAL_UID:
        try:
            catalog[number]
        except KeyError:
            return text
    return number


def _config(args, **overrides) -> dict:
    from ncsynth.config import load_config

    config = load_config(args.config, **overrides)
    if getattr(args, "data_dir", None):
        config["data"]["dir"] = args.data_dir
    return config


def _recover(args) -> int:
    from ncsynth.config import data_dir
    from ncsynth.storage import open_catalog

    config = _config(args)
    with open_catalog(data_dir(config)) as catalog:
        records = catalog.recover()
    if not records:
        print("nothing to recover")
    for record in records:
        print(f"{record.uid}  {record.status:<16} events={record.events:<6} "
              f"exit_status={record.exit_status}")
        for line in [*map(str, record.damage), *filter(None, [record.error])]:
            print(f"ncsynth recover: {line}", file=sys.stderr)
    return 0 if all(record.ok for record in records) else 1


def _sim_serve(args) -> int:
    from ncsynth.simulators.beamline import SimulatedBeamline

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SimulatedBeamline(speed=args.speed, seed=args.seed) as sim:
        print(json.dumps(sim.urls), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _dry_run(args) -> int:
    from ncsynth.dryrun import DryRunError, dry_run

    try:
        config = _config(args, hardware="sim")
        plan_kwargs = dict(n_frames=args.frames, ratio=args.ratio,
                           integration_s=args.integration, dead_time_s=args.dead_time,
                           n_background=args.background_frames, acquisition=args.acquisition,
                           monitor_period_s=args.monitor_period, cooldown_s=args.cooldown)
        second = None
        if args.second_injection is None:
            plan_kwargs["piston"] = args.piston
        elif args.piston != "A":
            raise ValueError("--piston: the double injection fires A, then B")
        else:
            second = {"delay_s": args.second_injection, "cd_molar": args.second_cd_molar}
            plan_kwargs.update(second_n_frames=args.second_frames, second_ratio=args.second_ratio)
        summary = dry_run(
            config, speed=args.speed, seed=args.seed, analysis=not args.no_analysis,
            progress=not (args.no_progress or args.json), plan_kwargs=plan_kwargs,
            second_injection=second,
            beamline_options=({"growth_exponent": args.growth_exponent}
                              if args.growth_exponent is not None else None),
            recipe_kwargs=dict(operator=args.operator, sample=args.sample,
                               injection_temperature_c=args.injection_temperature,
                               growth_temperature_c=args.growth_temperature,
                               reaction_time_s=args.reaction_time))
    except (ValueError, TypeError, FileNotFoundError, DryRunError) as exc:
        print(f"ncsynth dry-run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        from ncsynth.summary_text import format_summary

        print(format_summary(summary))
    if summary.get("terminated_by"):
        from ncsynth.termination import exit_code

        return exit_code(summary["terminated_by"])
    return 0 if summary.get("exit_status") == "success" else 1


def _flow_dry_run(args) -> int:
    from ncsynth.flow_dryrun import flow_dry_run

    grid = None
    if args.nucleation or args.growth:
        grid = {"nucleation_c": args.nucleation or [280.0], "growth_c": args.growth or [260.0]}
    try:
        summary = flow_dry_run(_config(args, hardware="sim"), grid=grid,
                               residence_s=args.residence, speed=args.speed, seed=args.seed,
                               progress=not (args.no_progress or args.json))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"ncsynth flow dry-run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        for key in ("uid", "exit_status", "families", "figure", "analysis_errors", "wall_s"):
            print(f"{key:>16}: {summary.get(key)}")
        for point in summary.get("points", []):
            print(f"  {point}")
    return 0 if summary.get("exit_status") == "success" else 1


def run() -> None:
    """The console script: :func:`main`; after a dry run, the process ends without the
    interpreter's teardown. Everything a dry run opens is closed by then, and after a
    failed commit on a full disk the catalog's ADBC SQLite connection, garbage-collected
    at interpreter exit, crashed the process (exit 139 after the summary, 60 MB tmpfs)."""
    if len(sys.argv) < 2 or sys.argv[1] not in ("dry-run", "flow"):
        sys.exit(main())
    try:
        code = main()
    except Exception:  # reported as Python would, then the same teardown-free exit
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
