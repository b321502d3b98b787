"""The ``ncsynth`` command: each command imports what it needs once its arguments are checked
(:mod:`ncsynth.command_line`)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from ncsynth import quiet
from ncsynth.command_checks import api_key, flow_grid
from ncsynth.command_line import (STORED_RUN_COMMANDS, check_arguments, dry_run_arguments, parser,
                                  steering_arguments)
from ncsynth.command_line import config as _config

# One BLAS thread: the frame synthesis and the fits are small matrix products that
# multithreaded OpenBLAS slows 50x on a loaded 2-core machine. Must precede numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    quiet.configure(args.verbose)
    if getattr(args, "api_key", None):  # told before the key is checked, used or refused
        print("ncsynth catalog serve: warning: --api-key shows the key to every local user in the "
              "process list; use --api-key-file or the environment variable", file=sys.stderr)
    command = _command_name(args)
    try:
        check_arguments(args)
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"ncsynth {command}: {exc}", file=sys.stderr)
        return 2
    return _command(args)


def _command_name(args) -> str:
    """The command as typed, with its subcommand ("catalog serve"), for one-line errors."""
    return " ".join(filter(None, (args.command, getattr(args, "sim_command", None),
                                  getattr(args, "flow_command", None),
                                  getattr(args, "catalog_command", None),
                                  getattr(args, "analysis_command", None))))


def _command(args) -> int:
    if args.command == "sim":
        return _sim_serve(args)
    if args.command == "dry-run":
        return _dry_run(args)
    if args.command == "recover":
        return _reporting_failures(args, _recover)
    if args.command == "flow":
        return _flow_dry_run(args)
    if args.command == "replay":
        return _reporting_failures(args, _replay)
    if args.command in STORED_RUN_COMMANDS:
        return _reporting_failures(args, _stored_run)
    if args.command == "session":
        return _reporting_failures(args, _session)
    if args.command == "catalog":
        return _reporting_failures(args, _catalog_migrate if args.catalog_command == "migrate"
                                   else _catalog_serve)
    if args.command == "analysis":
        return _reporting_failures(args, _analysis_serve)
    if args.command == "agent":
        return _reporting_failures(args, _agent)
    return 2


def _reporting_failures(args, command) -> int:
    """``command(args)``, with any failure told in one line naming what failed and why (the
    traceback only with -v): exit 2 for a bad reference, value or file, 1 otherwise."""
    try:
        return command(args)
    except BrokenPipeError:  # the reader went away (`| head`): not a failure of the command
        raise
    except Exception as exc:
        from ncsynth.errors import first_line

        if args.verbose:
            traceback.print_exc()
        expected = isinstance(exc, (LookupError, ValueError, TypeError, OSError))
        what = first_line(exc) if expected else f"{type(exc).__name__}: {first_line(exc)}"
        print(f"ncsynth {_command_name(args)}: {what}", file=sys.stderr)
        return 2 if isinstance(exc, (LookupError, ValueError, TypeError)) else 1


def _session(args) -> int:
    """The session; a failure to start it (a detector IOC that does not answer, a data
    directory that cannot be created) in one line, before IPython opens."""
    from ncsynth.session import start_session

    return start_session(_config(args), sim=True if args.sim else None,
                         speed=0 if args.fast else args.speed)


def _catalog_serve(args) -> int:
    from ncsynth.catalog_server import serve_catalog

    serve_catalog(_config(args), host=args.host, port=args.port, api_key=api_key(args),
                  allow_anonymous_read=args.public)
    return 0


def _analysis_serve(args) -> int:
    from ncsynth.analysis_service import serve

    serve(_config(args), args.proxy, ready=lambda: print(
        "ncsynth analysis serve: subscribed; analysing into the catalog until interrupted", flush=True))
    return 0


def _agent(args) -> int:
    from ncsynth.run_agent import campaign_command

    return campaign_command(_config(args), args.target_radius, tolerance_nm=args.tolerance,
                            max_runs=args.max_runs, queue=args.queue, reload=not args.no_reload,
                            target_dispersion=args.target_dispersion,
                            dispersion_tolerance=args.dispersion_tolerance)


def _catalog_migrate(args) -> int:
    """Move the SQLite catalog of the data directory into the databases of --to/--tables-to
    (or of the configuration); one line per run, then the configuration to use."""
    from sqlalchemy.engine import make_url

    from ncsynth.command_line import CATALOG_FILE
    from ncsynth.config import catalog_databases, data_dir
    from ncsynth.storage import open_catalog
    from ncsynth.storage.migrate import migrate_catalog

    config = _config(args)
    configured = catalog_databases(config)
    database = args.to or configured["database_uri"]
    if not database:
        raise ValueError("no target: give --to postgresql://user@host/database or set "
                         "[catalog] database_uri in the configuration")
    tables = args.tables_to or (configured["tables_uri"] if not args.to else None) or database
    root = data_dir(config)
    if not (root / CATALOG_FILE).exists():
        raise ValueError(f"{root}: no catalog to move (no {CATALOG_FILE})")
    with open_catalog(root) as source, \
            open_catalog(root, database_uri=database, tables_uri=tables) as target:
        moved = migrate_catalog(source, target, report=lambda run: print(
            f"{run.uid}  {run.status:<13} events={run.documents.get('event', 0)} "
            f"frames={run.documents.get('frames', 0)}", flush=True))
    shown = [make_url(uri).render_as_string(hide_password=True) for uri in (database, tables)]
    print(f"{len(moved)} runs in the target; to use it, set in the configuration:\n[catalog]\n"
          f'database_uri = "{shown[0]}"\ntables_uri = "{shown[1]}"')
    return 0


def _replay(args) -> int:
    """Replay with the frames' skewed fits in a process beside this one's reductions and
    Gaussian fits (and from 3 processes a pool for the skewed fits' cold starts), the catalog
    written by a worker process (this one builds no Tiled app for a run its journal holds)
    and a progress bar on a terminal."""
    config = _config(args)
    _refuse_an_absent_run(config, args.run)  # before the pool and the catalog start
    from ncsynth.config import catalog_databases, data_dir
    from ncsynth.progress import ProgressBar
    from ncsynth.runs import replay_run
    from ncsynth.storage import open_catalog

    settings = {"q_range_nm": tuple(args.q_range)} if args.q_range else {}
    processes = (os.cpu_count() or 1) if args.processes is None else args.processes
    with open_catalog(data_dir(config), lazy=True, **catalog_databases(config)) as catalog:
        summary = replay_run(catalog, _run_ref(catalog, args.run), processes=processes,
                             progress=ProgressBar(), worker="process",
                             figure_directory=catalog.layout.root / "reports", **settings)
    _add_simulator_truth(summary, summary["data_dir"])  # the catalog's own directory
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        from ncsynth.summary_text import format_summary

        print(format_summary(summary))
    return 0


def _add_simulator_truth(summary: dict, root) -> None:
    """A dry run's replay shows what its simulated flask held, as the dry run's summary did
    (``<data dir>/truth``); a damaged truth file is said in one line, the replay stands."""
    from ncsynth.flask_truth import stored_truth

    try:
        truth = stored_truth(root, summary["uid"])
    except ValueError as exc:
        print(f"ncsynth replay: {exc}; the summary shows no flask beside", file=sys.stderr)
        return
    if truth is not None:
        summary["simulator_truth"] = truth["headline"]


def _refuse_an_absent_run(config, ref: str) -> None:
    """LookupError in one line, within a fraction of a second, when the data directory's
    embedded catalog surely holds no run ``ref`` (:mod:`ncsynth.run_lookup`); else nothing."""
    from ncsynth.config import catalog_databases, data_dir
    from ncsynth.run_lookup import absent_run

    if not any(catalog_databases(config).values()):
        reason = absent_run(data_dir(config), ref)
        if reason:
            raise LookupError(reason)


def _stored_run(args) -> int:
    from ncsynth.config import catalog_databases, data_dir

    config = _config(args)
    _refuse_an_absent_run(config, args.run)  # before the catalog's imports
    root = data_dir(config)
    from ncsynth.runs import export_fits, report
    from ncsynth.storage import open_catalog

    with open_catalog(root, read_only=True, **catalog_databases(config)) as catalog:
        if catalog.layout.snapshot is not None and args.command != "validate" and not args.output:
            raise ValueError(f"{root}: the data directory is read-only; give --output, a file "
                             f"in a writable place, for the {args.command}")
        ref = _run_ref(catalog, args.run)
        if args.command == "export":
            print(export_fits(catalog, ref, args.output, format=args.format,
                              directory=root / "exports"))
        elif args.command == "validate":
            from ncsynth.truth_report import format_validation, validate_run

            print(format_validation(validate_run(catalog, ref, root)))
        else:
            print(report(catalog, ref, args.output, directory=root / "reports"))
    return 0


def _run_ref(catalog, text: str):
    """A run reference as typed: a negative index, a scan id, or a uid (prefix). Digits are a
    scan id unless no run has that scan id and they are long enough to be a uid prefix (a
    uid may well start with eight digits)."""
    from ncsynth.run_lookup import MIN_PARTIAL_UID, raw_run_uid

    if not text.lstrip("-").isdigit():
        return text
    number = int(text)
    if number > 0 and len(text) >= MIN_PARTIAL_UID and not (
            catalog.layout.local and raw_run_uid(catalog.layout.root, number)):  # no Tiled app
        try:
            catalog[number]
        except KeyError:
            return text
    return number


def _recover(args) -> int:
    from ncsynth.config import catalog_databases, data_dir
    from ncsynth.storage import open_catalog

    config = _config(args)
    with open_catalog(data_dir(config), relocate=True, **catalog_databases(config)) as catalog:
        records = catalog.recover()
    if catalog.relocated:
        written, moved = catalog.relocated
        print(f"relocated: the catalog referred to {moved} files in {written}, where its runs "
              f"were written; it now refers to them in {catalog.layout.root}")
    elif not records:
        print("nothing to recover")
    for record in records:
        print(f"{record.uid}  {record.status:<16} events={record.events:<6} "
              f"exit_status={record.exit_status}")
        for line in [*map(str, record.damage), *map(str, record.left_out),
                     *filter(None, [record.error])]:
            print(f"ncsynth recover: {line}", file=sys.stderr)
    return 0 if all(record.ok for record in records) else 1


def _sim_serve(args) -> int:
    """Serve the simulated beamline; print, as one JSON line, what a ``hardware = "hutch"``
    configuration needs to use it (its sections' keys: URLs, PV prefix, monitor PVs, PONI and
    mask files, with ``--water-standard`` a water standard and its empty cell) and, under
    ``"environment"``, the Channel Access client settings."""
    if args.calibration_dir:  # made before the simulators start: one line if it cannot be
        try:
            Path(args.calibration_dir).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"ncsynth sim serve: --calibration-dir {args.calibration_dir}: cannot create "
                  f"it: {exc.strerror or exc}", file=sys.stderr)
            return 2
    import tempfile

    from ncsynth.simulators.ca_loopback import epics_client_environment
    from ncsynth.simulators.beamline import SimulatedBeamline

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SimulatedBeamline(speed=args.speed, seed=args.seed) as sim, \
            tempfile.TemporaryDirectory(prefix="ncsynth-sim-") as scratch:
        settings = sim.hutch_settings(args.calibration_dir or scratch, water_standard=args.water_standard)
        settings["environment"] = epics_client_environment(sim.detector.address)
        print(json.dumps(settings), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _dry_run(args) -> int:
    from ncsynth.dryrun import DryRunError, dry_run

    try:
        config = _config(args, hardware="sim")
        plan_kwargs, second, recipe_kwargs = dry_run_arguments(args)
        summary = dry_run(
            config, speed=args.speed, seed=args.seed, analysis=not args.no_analysis,
            progress=not (args.no_progress or args.json), plan_kwargs=plan_kwargs,
            second_injection=second, steering=steering_arguments(args),
            beamline_options=({"growth_exponent": args.growth_exponent}
                              if args.growth_exponent is not None else None),
            recipe_kwargs=recipe_kwargs)
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
    # a plan that succeeded but whose run the catalog did not take (recover stores it) is not done
    return 0 if summary.get("exit_status") == "success" and not summary.get("error") else 1


def _flow_dry_run(args) -> int:
    from ncsynth.flow_dryrun import flow_dry_run

    try:
        summary = flow_dry_run(_config(args, hardware="sim"), grid=flow_grid(args),
                               residence_s=args.residence, speed=args.speed, seed=args.seed,
                               processes=args.processes,
                               progress=not (args.no_progress or args.json))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"ncsynth flow dry-run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        from ncsynth.summary_text import format_flow_summary

        print(format_flow_summary(summary))
    if summary.get("terminated_by"):
        from ncsynth.termination import exit_code

        return exit_code(summary["terminated_by"])
    return 0 if summary.get("exit_status") == "success" and not summary.get("error") else 1


def run() -> None:
    """The console script: :func:`main`; after a dry run or a command on stored runs
    (:data:`TEARDOWN_FREE`) the process ends without the interpreter's teardown
    (:func:`_end_without_teardown`). Everything such a command opens is closed by then;
    the teardown only freed, one by one, the objects of the libraries it imported (Tiled,
    pandas, dask, matplotlib): ~1 s of the ~4 s of ``ncsynth recover`` with nothing to
    recover, ~2 s of a command forked from a process that imported them (issue 18). And
    after a failed commit on a full disk the catalog's ADBC SQLite connection,
    garbage-collected at interpreter exit, crashed the process (exit 139 after the summary,
    60 MB tmpfs).
    Output to a reader that went away (``ncsynth validate -1 | head -3``) ends the command
    quietly with 141 (128 + SIGPIPE), as a shell tool would; Ctrl-C outside a plan (a
    replay, a dry run's analysis) with one line and 130 (128 + SIGINT), no traceback.
    The command is the first word that is not an option (``ncsynth -v dry-run`` is a dry run
    too: with ``sys.argv[1]`` it crashed with 139 on a full disk)."""
    command = next((word for word in sys.argv[1:] if not word.startswith("-")), None)
    teardown_free = command in TEARDOWN_FREE
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        code = 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # outside a plan (a plan's Ctrl-C aborts it and is reported)
        command = itertools.takewhile(lambda word: not word.startswith("-"), sys.argv[1:3])
        print(f"{' '.join(['ncsynth', *command])}: interrupted (Ctrl-C)", file=sys.stderr)
        code = 128 + signal.SIGINT
    except Exception:  # reported as Python would, then the same teardown-free exit
        if not teardown_free:
            raise
        traceback.print_exc()
        code = 1
        sys.stdout.flush()
    if not teardown_free:
        sys.exit(code)
    _end_without_teardown(code)


#: Commands that end without the interpreter's teardown (:func:`run`): the dry runs and the
#: commands on stored runs; not the servers and the session, which end as Python does.
TEARDOWN_FREE = ("dry-run", "flow", "recover", *STORED_RUN_COMMANDS)


def _end_without_teardown(code: int) -> None:
    """End the process with exit status ``code`` now: standard output and error flushed, the
    logs shut down, every HDF5 file still open flushed to disk (the HDF5 library's own exit
    handler, which would, does not run), no interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    h5py = sys.modules.get("h5py")
    if h5py is not None:
        for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
            h5py.h5f.flush(file_id)
    os._exit(code)


if __name__ == "__main__":
    run()
