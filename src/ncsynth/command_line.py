"""What the ``ncsynth`` command line may say: its parser, and the checks of what it is given.

Light on purpose (argparse, the configuration and its schema, the kernel's validation, the
plans' pure argument checks: numpy at most): a bad option, configuration or plan argument is
refused in one line before :mod:`ncsynth.cli` imports what the command needs (bluesky, ophyd,
Tiled, pyFAI take seconds). ``benchmarks/startup.py`` measures how soon.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsynth import validation
from ncsynth.command_checks import check_command
from ncsynth.config_schema import SCHEMA

#: Commands that work on a stored run of the data directory's catalog.
STORED_RUN_COMMANDS = ("replay", "export", "report", "validate")
#: How those commands name the run (:mod:`ncsynth.run_lookup`).
RUN_HELP = "uid, partial uid, scan id, or a negative index (-1: the latest run)"
#: The embedded catalog's database in a data directory
#: (:attr:`ncsynth.storage.layout.DataDirectory.catalog_db`).
CATALOG_FILE = "catalog.db"

#: Largest growth exponent n the simulated flask takes: the top of the interval the growth
#: analysis searches (``ncsynth.analysis.growth.EXPONENT_BOUNDS``), beyond it n is unmeasurable.
MAX_GROWTH_EXPONENT = 12.0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="configuration file (TOML); default: NCSYNTH_CONFIG or "
                                    "the packaged defaults")
    p.add_argument("--data-dir", help="catalog and frames go here (default: NCSYNTH_DATA_DIR "
                                      "or data.dir of the configuration)")


def parser() -> argparse.ArgumentParser:
    """The ``ncsynth`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="ncsynth", description="In-situ SAXS of nanocrystal syntheses: dry runs on the simulated "
        "beamline, the hutch session, stored runs (replay, export, report, validate) and the "
        "flow reactor. 'ncsynth COMMAND --help' for a command's options.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="the simulated beamline")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the simulators until interrupted; print "
                                             "their addresses and calibration files as one JSON line")
    serve.add_argument("--calibration-dir", default=None,
                       help="write the PONI and mask files here (default: a temporary directory "
                            "removed when the simulators stop)")
    serve.add_argument("--water-standard", action="store_true",
                       help="also measure a water standard and its empty cell (frame files beside "
                            "the PONI; printed as detector.water_standard and detector.empty_cell)")
    serve.add_argument("--speed", type=float, default=1.0,
                       help="world clock speed: 1 = real time (default), K = K times faster")
    serve.add_argument("--seed", type=int, default=None, help="detector noise seed")

    dry = sub.add_parser("dry-run", help="run the full hot-injection protocol against the "
                                         "simulated beamline and store it in the catalog")
    _add_config_args(dry)
    dry.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    dry.add_argument("--speed", type=float, default=None,
                     help="run the world clock K times real time (1 = rehearsal) instead of "
                          "jumping to each deadline (the default; so does 0)")
    dry.add_argument("--frames", type=int, default=575,
                     help="frames after the injection, on the geometric schedule of seed 000 "
                          "§S.1.4: frame n+1 starts INTEGRATION + DEAD_TIME·RATIO^(n-1) after "
                          "frame n (default 575: 97 ms apart at first, ~2.1 h in all; 20 frames "
                          "span 1.9 s, 200 frames 42 s)")
    dry.add_argument("--ratio", type=float, default=1.015,
                     help="growth of the gap between frames, >= 1 (default 1.015)")
    dry.add_argument("--integration", type=float, default=0.075,
                     help="exposure time of a frame, s (default 0.075)")
    dry.add_argument("--dead-time", type=float, default=0.022,
                     help="gap after the first frame's exposure, s (default 0.022)")
    dry.add_argument("--background-frames", type=int, default=5,
                     help="frames of the hot solvent before the injection, averaged as the "
                          "background of every frame (default 5)")
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
    dry.add_argument("--operator", default="dry-run",
                     help="who ran it, stored in the run (default dry-run)")
    dry.add_argument("--sample", default="CdSe hot injection (simulated)",
                     help="sample name, stored in the run and shown on its figures")
    dry.add_argument("--seed", type=int, default=None,
                     help="detector noise seed (default: [simulation] seed of the "
                          "configuration); the same seed gives the same frames and fits")
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
    dry.add_argument("--target-radius", type=float, default=None, metavar="NM",
                     help="end the growth (heater off) when the live fits' running mean "
                          "radius reaches NM with the configured confidence ([steering])")
    dry.add_argument("--quench", action="store_true",
                     help="with --target-radius: piston B, loaded with cold solvent, quenches "
                          "the flask (dilution and cooling, no precursor)")
    dry.add_argument("--second-injection-at-radius", type=float, default=None, metavar="NM",
                     help="fire piston B (Cd precursor, --second-cd-molar) when the first "
                          "population's running mean radius reaches NM")
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
    fdry.add_argument("--residence", type=float, default=None,
                      help="residence time (nucleation chamber and growth oven), s (default 14)")
    fdry.add_argument("--speed", type=float, default=None,
                      help="run the world clock K times real time instead of jumping to each "
                           "deadline (default: [simulation] speed of the configuration)")
    fdry.add_argument("--seed", type=int, default=None,
                      help="the simulator's noise, McSAS's and its bootstrap's seed (default: "
                           "[simulation] seed of the configuration)")
    fdry.add_argument("--processes", type=int, default=None,
                      help="processes for the SAXS noise bootstrap's refits (default: one per "
                           "CPU; 1: none besides this one); the numbers do not depend on it")
    fdry.add_argument("--no-progress", action="store_true", help="no progress bar")
    rec = sub.add_parser("recover", help="complete runs left behind by a killed process")
    _add_config_args(rec)

    rep = sub.add_parser("replay", help="re-analyse a stored run with the live analysis code")
    _add_config_args(rep)
    rep.add_argument("run", help=RUN_HELP)
    rep.add_argument("--q-range", nargs=2, type=float, metavar=("QMIN", "QMAX"),
                     help="q range of reduction and fit, nm^-1 (default 0.1 5)")
    rep.add_argument("--model", choices=["gaussian_spheres"], default="gaussian_spheres",
                     help="scattering model (the one-population Gaussian-sphere fit)")
    rep.add_argument("--processes", type=int, default=None,
                     help="processes for the analysis (default: one per CPU): one runs the "
                          "frames' skewed fits beside this one's reductions and Gaussian fits, "
                          "from 3 the others the skewed fits' cold starts; 1: none besides "
                          "this one (and the catalog writer's); the numbers do not depend on it")
    rep.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    exp = sub.add_parser("export", help="export a run's per-frame fit table")
    _add_config_args(exp)
    exp.add_argument("run", help=RUN_HELP)
    exp.add_argument("--format", choices=["csv", "nexus"], default="csv",
                     help="csv: the per-frame fit table; nexus: NXcanSAS HDF5 with the reduced "
                          "patterns, the fit table and the instrument")
    exp.add_argument("-o", "--output", help="file to write (default: a new file in "
                                            "<data-dir>/exports named after the run, "
                                            "scan0007-1a2b3c4d-fits.csv)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    rpt = sub.add_parser("report", help="PNG with the paper's Fig. 1 panels for a run")
    _add_config_args(rpt)
    rpt.add_argument("run", help=RUN_HELP)
    rpt.add_argument("-o", "--output", help="PNG to write (default: a new file in "
                                            "<data-dir>/reports named after the run, "
                                            "scan0007-1a2b3c4d.png)")
    rpt.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    val = sub.add_parser("validate", help="a dry run's headline numbers against the simulated "
                                          "flask, with pulls")
    _add_config_args(val)
    val.add_argument("run", help=RUN_HELP)

    ses = sub.add_parser("session", help="IPython at the hutch: RE, catalog, devices, plans")
    _add_config_args(ses)
    ses.add_argument("--sim", action="store_true", help="simulated hardware (real-time clock)")
    ses.add_argument("--speed", type=float, default=None,
                     help="simulated clock speed (1 real time, K times faster, 0 jump)")
    ses.add_argument("--fast", action="store_true",
                     help="rehearsal: the simulated clock jumps from deadline to deadline "
                          "(--speed 0); a 2-hour protocol in minutes, no frame skipped")

    cat = sub.add_parser("catalog", help="the catalog server")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True)
    srv = cat_sub.add_parser("serve", help="serve the catalog over HTTP (Tiled, API key)")
    _add_config_args(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=None,
                     help="TCP port (default: the port of [catalog] server_url, else 8000)")
    key = srv.add_mutually_exclusive_group()
    key.add_argument("--api-key-file", default=None,
                     help="file whose first line is the API key (mode 0600); default: the "
                          "environment variable named by catalog.api_key_env")
    key.add_argument("--api-key", default=None,
                     help="the API key itself (discouraged: visible in the process list)")
    srv.add_argument("--public", action="store_true", help="let clients without a key read")
    ana = sub.add_parser("analysis", help="the live analysis in a process of its own")
    ana_sub = ana.add_subparsers(dest="analysis_command", required=True)
    ana_srv = ana_sub.add_parser("serve", help="analyse what a bluesky 0MQ proxy publishes (the "
                                               "dry run's or session's documents), into the catalog")
    _add_config_args(ana_srv)
    ana_srv.add_argument("--proxy", default=None, metavar="HOST:PORT",
                         help="the proxy's output (default: analysis.subscribe_address)")
    agt = sub.add_parser("agent", help="the run-to-run agent: syntheses queued through the queue "
                                       "server until the final radius is on target")
    _add_config_args(agt)
    agt.add_argument("--target-radius", type=float, required=True, help="final radius, nm")
    agt.add_argument("--tolerance", type=float, default=0.05, help="nm (default 0.05)")
    agt.add_argument("--target-dispersion", type=float, default=None, metavar="SIGMA_OVER_R",
                     help="final size dispersion sigma/radius too: the agent then varies the "
                          "growth temperature as well as the reaction time")
    agt.add_argument("--dispersion-tolerance", type=float, default=None,
                     help="absolute, on sigma/radius (default 0.005)")
    agt.add_argument("--max-runs", type=int, default=8, help="syntheses at most (default 8)")
    agt.add_argument("--queue", default="tcp://127.0.0.1:60615",
                     help="the queue server's 0MQ control address")
    agt.add_argument("--no-reload", action="store_true",
                     help="queue no new_batch (hutch: the flask is refilled by hand)")
    mig = cat_sub.add_parser("migrate", help="move the data directory's SQLite catalog into a "
                                             "database server (PostgreSQL)")
    _add_config_args(mig)
    mig.add_argument("--to", default=None, metavar="URI",
                     help="the target catalog database, postgresql://user@host/db (default: "
                          "catalog.database_uri of the configuration)")
    mig.add_argument("--tables-to", default=None, metavar="URI",
                     help="the target event-table database (default: catalog.tables_uri, else "
                          "the catalog's database)")
    return parser


def check_arguments(args) -> dict | None:
    """Refuse a bad configuration (:class:`ConfigError`), what only the command line decides
    (clock speed, seed, the simulated flask's growth exponent, a port, a q range, a number
    of processes), the dry
    run's plan arguments (the plan's own checks, :mod:`ncsynth.plans.checks`) and a data
    directory without a catalog for a stored-run command: TypeError/ValueError naming the
    file, key or option, before anything heavy is imported or started; a plan checks its
    arguments again when it is called, before anything moves. Returns the configuration
    (None for a command that takes none).

    Growth exponent n, read from seed 000: S4.12 (j_G = A·S/r^n) calls n = 0 reaction-
    limited and n = 1 diffusion-limited growth, Fig. S6.2 simulates n = 0, 2 and 4, and
    S6.16's offset B keeps k_a finite for every n >= 0; a negative n is nowhere used (S4.14
    divides by n + 1). So 0 <= n <= ``MAX_GROWTH_EXPONENT``: n = 0 is a valid flask (no
    focusing), not an error."""
    configuration = config(args) if hasattr(args, "config") else None
    if getattr(args, "speed", None) is not None:
        SCHEMA["simulation"]["speed"].check("--speed", args.speed)
    if getattr(args, "seed", None) is not None:
        SCHEMA["simulation"]["seed"].check("--seed", args.seed)
    if getattr(args, "growth_exponent", None) is not None:
        validation.real("--growth-exponent", args.growth_exponent, minimum=0,
                        maximum=MAX_GROWTH_EXPONENT)
    if getattr(args, "port", None) is not None:
        validation.integer("--port", args.port, minimum=1, maximum=65535)
    if getattr(args, "processes", None) is not None:
        from ncsynth.analysis.pool import MAX_PROCESSES

        validation.integer("--processes", args.processes, minimum=1, maximum=MAX_PROCESSES)
    if getattr(args, "q_range", None) is not None:
        low = validation.real("--q-range QMIN", args.q_range[0], above=0, unit="nm^-1")
        if not validation.real("--q-range QMAX", args.q_range[1], unit="nm^-1") > low:
            raise ValueError(f"--q-range: QMAX must be above QMIN, got {args.q_range[0]:g} "
                             f"{args.q_range[1]:g}")
    if getattr(args, "output", None) and Path(args.output).is_dir():
        raise ValueError(f"-o {args.output}: is a directory; give a file name (without -o a new "
                         f"file named after the run is written)")
    if getattr(args, "output", None) and Path(args.output).exists() and not args.overwrite:
        raise ValueError(f"-o {args.output}: the file exists; give --overwrite to replace it "
                         f"(without -o a new file named after the run is written)")
    check_command(args, configuration)
    if args.command == "dry-run":
        _check_plan(args, configuration)
    if args.command == "agent":
        _check_campaign(args, configuration)
    if args.command in STORED_RUN_COMMANDS and not configuration["catalog"].get("database_uri"):
        _check_catalog(Path(configuration["data"]["dir"]).expanduser())
    return configuration


def config(args, **overrides) -> dict:
    """The configuration: ``--config`` (or NCSYNTH_CONFIG, or the packaged defaults) with
    ``overrides`` and ``--data-dir``; :class:`~ncsynth.config.ConfigError` if refused."""
    from ncsynth.config import load_config

    configuration = load_config(args.config, **overrides)
    if getattr(args, "data_dir", None):
        configuration["data"]["dir"] = args.data_dir
    return configuration


def dry_run_arguments(args) -> tuple[dict, dict | None, dict]:
    """``(plan_kwargs, second_injection, recipe_kwargs)`` of a ``dry-run`` command line (see
    :func:`ncsynth.dryrun.dry_run`); ValueError for a piston chosen with a double injection."""
    plan_kwargs = dict(n_frames=args.frames, ratio=args.ratio, integration_s=args.integration,
                       dead_time_s=args.dead_time, n_background=args.background_frames,
                       acquisition=args.acquisition, monitor_period_s=args.monitor_period,
                       cooldown_s=args.cooldown)
    second = None
    if args.second_injection is None:
        plan_kwargs["piston"] = args.piston
    elif args.piston != "A":
        raise ValueError("--piston: the double injection fires A, then B")
    else:
        second = {"delay_s": args.second_injection, "cd_molar": args.second_cd_molar}
        plan_kwargs.update(second_n_frames=args.second_frames, second_ratio=args.second_ratio)
    recipe_kwargs = dict(operator=args.operator, sample=args.sample,
                         injection_temperature_c=args.injection_temperature,
                         growth_temperature_c=args.growth_temperature,
                         reaction_time_s=args.reaction_time)
    return plan_kwargs, second, recipe_kwargs


def steering_arguments(args) -> dict | None:
    """The dry run's ``steering`` request (:func:`ncsynth.dryrun.dry_run`), None without one."""
    if args.target_radius is None and args.second_injection_at_radius is None and \
            not args.quench:
        return None
    steering = {"target_radius_nm": args.target_radius, "quench": args.quench,
                "second_injection_at_radius_nm": args.second_injection_at_radius}
    if args.second_injection_at_radius is not None:
        steering["cd_molar"] = args.second_cd_molar
    return steering


def _check_steering(args, configuration: dict) -> None:
    """The steering options against the configuration's ``[steering]`` limits."""
    steering = steering_arguments(args)
    if steering is None:
        return
    from ncsynth.plans.decisions import SteeringLimits, check_steering

    names = {"target_radius_nm": "--target-radius",
             "second_injection_at_radius_nm": "--second-injection-at-radius"}
    if args.no_analysis:
        raise ValueError("--target-radius/--second-injection-at-radius decide from the live "
                         "fits: drop --no-analysis")
    try:
        check_steering(SteeringLimits.from_config(configuration),
                       fixed_second_injection=args.second_injection is not None,
                       acquisition=args.acquisition,
                       **{k: v for k, v in steering.items() if k != "cd_molar"})
    except ValueError as exc:
        text = str(exc)
        for name, option in names.items():
            text = text.replace(name, option)
        raise ValueError(text) from None
    if args.piston != "A":
        raise ValueError("--piston: a steered synthesis fires A first")
    if args.second_injection_at_radius is not None:
        validation.real("--second-cd-molar", args.second_cd_molar, above=0, unit="mol/L")


def _check_plan(args, configuration: dict) -> None:
    """The dry run's plan arguments through the plan's own checks, against the configured
    heater limit (the recipe's simulated syringe contents are the dry run's, not the user's)."""
    from ncsynth.plans.checks import (check_protocol, double_injection_schedules,
                                      hot_injection_schedule)
    from ncsynth.plans.recipe import Recipe

    plan_kwargs, second, recipe_kwargs = dry_run_arguments(args)
    recipe = check_protocol(Recipe(**recipe_kwargs), plan_kwargs.pop("n_background"),
                            plan_kwargs.pop("acquisition"), plan_kwargs["monitor_period_s"],
                            plan_kwargs["cooldown_s"],
                            max_temperature_c=configuration["heater"]["max_temperature_c"])
    _check_steering(args, configuration)
    if second is None:
        hot_injection_schedule(recipe, **plan_kwargs)
    else:
        validation.real("--second-cd-molar", second["cd_molar"], above=0, unit="mol/L")
        double_injection_schedules(recipe, delay_s=second["delay_s"], **plan_kwargs)


def _check_campaign(args, configuration: dict) -> None:
    """The agent's campaign against the configuration's limits, named by its options."""
    from ncsynth.agent_protocol import DISPERSION_TOLERANCE, SynthesisProtocol, check_campaign

    if args.dispersion_tolerance is not None and args.target_dispersion is None:
        raise ValueError("--dispersion-tolerance needs --target-dispersion")
    tolerance = DISPERSION_TOLERANCE if args.dispersion_tolerance is None else \
        args.dispersion_tolerance
    try:
        check_campaign(args.target_radius, SynthesisProtocol(), configuration, args.max_runs,
                       args.tolerance, args.target_dispersion, tolerance)
    except ValueError as exc:
        text = str(exc)
        for name, option in {"target_radius_nm": "--target-radius", "max_runs": "--max-runs",
                             "tolerance_nm": "--tolerance",
                             "target_dispersion": "--target-dispersion",
                             "dispersion_tolerance": "--dispersion-tolerance"}.items():
            text = text.replace(name, option)
        raise ValueError(text) from None


def _check_catalog(root: Path) -> None:
    """A data directory holding a catalog (a file there is left to the catalog's own check)."""
    if not root.is_file() and not (root / CATALOG_FILE).exists():
        raise ValueError(f"{root}: no catalog in this data directory (no {CATALOG_FILE}); "
                         f"give the one the run was stored in (--data-dir)")
