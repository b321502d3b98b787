"""The hutch session: one startup for IPython (``ncsynth session``) and bluesky-queueserver.

:func:`session_namespace` builds everything a scientist needs at the hutch, from the
configuration file (which names hutch or simulated hardware, ports and limits):

* ``RE`` — a RunEngine whose ``RE.md`` is bluesky's ``PersistentDict`` in
  ``<data_dir>/runengine-md`` (scan ids, operator, sample… survive the session);
* ``cat`` — the catalog the configuration names (embedded, or the catalog server at
  ``[catalog] server_url``, :func:`ncsynth.catalog_server.open_configured_catalog`), with its
  writer subscribed to ``RE``;
* the devices (``heater``, ``injector``, ``detector``, ``timer``; ``devices`` holds them all);
* the plans (``hot_injection``, ``Recipe``, the protocol stubs, bluesky's ``count``/``scan``/
  ``list_scan``/``grid_scan``, ``mv``/``mvr``; the modules ``bp``/``bps``);
* live display (:mod:`ncsynth.session_display`): ``fit_table``, bluesky's LiveTable of the
  analysis (radius, width, concentration, yield, χ² per frame); ``figure``, the Fig. 1 PNG
  redrawn in ``<data_dir>/figures``; ``progress``, a status line while the RunEngine waits
  (preheat, settling); ``end_of_run``, the summary printed at each run's end; ``bec``,
  bluesky's BestEffortCallback (headings, plots only when a display is available); and the
  live analysis (``analysis``, whose derived runs go into ``cat``; ``analysis.summary()``);
* ``steered_synthesis`` — :func:`ncsynth.plans.steered_synthesis` deciding from this
  session's live fits (``fit_feed``) within the configuration's ``[steering]`` limits
  (:func:`session_steering`, docs/steering.md);
* one Ctrl-C pauses at once (then ``RE.resume()``, ``RE.stop()`` or ``RE.abort()``);
* ``sim`` — the :class:`~ncsynth.simulators.beamline.SimulatedBeamline` when simulated (its
  world clock, real time by default, is the time base of the session), else None;
* ``config`` and ``close()`` (stop the simulators, release the ports, flush the catalog).

:func:`start_session` embeds IPython with that namespace; :mod:`ncsynth.session_startup` is the
same namespace as a module, for ``start-re-manager --startup-module ncsynth.session_startup
--keep-re``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import os
from pathlib import Path

from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky.utils import PersistentDict

import ncsynth.plans
from ncsynth import timebase
from ncsynth.catalog_server import open_configured_catalog
from ncsynth.config import HARDWARE, data_dir
from ncsynth.errors import RefusedToStart
from ncsynth.progress import StatusLine, Terminal
from ncsynth.run_engine import RunEngine
from ncsynth.session_display import PauseAtOnce, live_display

logger = logging.getLogger(__name__)

#: Directory of ``RE.md`` inside the data directory.
METADATA_DIRNAME = "runengine-md"
#: World-clock speed of a simulated session unless ``[session] speed`` or ``speed=`` says
#: otherwise: real time.
DEFAULT_SIM_SPEED = 1.0
#: bluesky plans offered besides ncsynth's.
BLUESKY_PLANS = {"count": bp.count, "scan": bp.scan, "list_scan": bp.list_scan,
                 "grid_scan": bp.grid_scan, "mv": bps.mv, "mvr": bps.mvr}


def _session_config(config: dict, sim: bool | None) -> dict:
    if not isinstance(config, dict) or "data" not in config:
        raise TypeError(f"config must be a configuration dict (ncsynth.config.load_config), got {config!r}")
    if sim is not None and not isinstance(sim, bool):
        raise TypeError(f"sim must be True, False or None, got {sim!r}")
    config = copy.deepcopy(config)
    if sim is not None:
        config["hardware"] = "sim" if sim else "hutch"
    if config.get("hardware") not in HARDWARE:
        raise ValueError(f"hardware must be one of {HARDWARE}, got {config.get('hardware')!r}")
    return config


def _sim_speed(config: dict, speed: float | None) -> float | None:
    if speed is None:
        speed = (config.get("session") or {}).get("speed", DEFAULT_SIM_SPEED)
    if speed == 0:
        return None  # jump mode, as [simulation] speed = 0 means for the dry run
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0:
        raise ValueError(f"speed must be a positive number (1 = real time) or 0 (jump), got {speed!r}")
    return float(speed)


def _display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _release_metadata(md: PersistentDict) -> None:
    """Write ``RE.md`` out for the last time and stop it writing again: bluesky's
    PersistentDict rewrites its whole cache when it is garbage-collected, which would
    overwrite what a later session on the same data directory wrote since (e.g. scan_id)."""
    md._finalizer()  # a weakref.finalize: runs its final write once, then never again


def plans_namespace() -> dict:
    """The plans a session offers: ncsynth's (``ncsynth.plans.__all__``) and bluesky's
    common ones, plus the modules ``bp`` and ``bps``."""
    names = {name: getattr(ncsynth.plans, name) for name in ncsynth.plans.__all__}
    return {**BLUESKY_PLANS, **names, "bp": bp, "bps": bps}


def session_namespace(config: dict, sim: bool | None = None, *, speed: float | None = None,
                      live_plots: bool | None = None, analysis: bool = True) -> dict:
    """Everything of a hutch session in one dict (see the module docstring for the names).

    Parameters
    ----------
    config : the configuration (``ncsynth.config.load_config``); ``[data] dir`` holds
        ``RE.md`` and the catalog; ``hardware`` says hutch or simulated.
    sim : True: simulated beamline whatever the file says (``ncsynth session --sim``);
        False: hutch hardware; None: ``config["hardware"]``.
    speed : world-clock speed of the simulated beamline (1 = real time, K = K times faster,
        0 = jump from deadline to deadline); default ``[session] speed`` or 1.
    live_plots : BestEffortCallback plots; default: when a display is available.
    analysis : subscribe the live analysis (if it can be imported).

    Call ``namespace["close"]()`` when done; it is idempotent.
    """
    config = _session_config(config, sim)
    simulated = config["hardware"] == "sim"
    sim_speed = _sim_speed(config, speed) if simulated else None
    if live_plots is None:
        live_plots = _display_available()
    from ncsynth.instruments import connect, simulated_hutch  # imports every device class

    stack = contextlib.ExitStack()
    try:
        root = Path(data_dir(config))
        md = PersistentDict(str(root / METADATA_DIRNAME))
        stack.callback(_release_metadata, md)
        cat = open_configured_catalog(config)
        stack.callback(cat.close)
        RE = RunEngine(md, scan_id_source=cat.scan_ids(), context_managers=[PauseAtOnce])
        terminal = Terminal()
        progress = StatusLine(terminal)
        stack.callback(progress.close)
        RE.waiting_hook = progress.waiting  # before a simulated clock chains its own hook
        RE.subscribe(progress)
        writer = cat.writer()
        stack.callback(writer.close)
        RE.subscribe(writer)

        beamline = None
        if simulated:
            from ncsynth.simulators.beamline import BeamlineOptions, SimulatedBeamline

            seed = (config.get("simulation") or {}).get("seed")
            beamline = stack.enter_context(SimulatedBeamline(options=BeamlineOptions(speed=sim_speed, seed=seed)))
            stack.enter_context(timebase.use_clock(beamline.clock))
            beamline.clock.follow(RE)  # a jumping clock holds still while a plan works
        devices = connect(simulated_hutch(config, beamline) if simulated else config)
        stack.callback(devices.close)
        progress.heater = devices.heater
        display = live_display(RE, terminal, writer, root, analysis=analysis,
                               live_plots=live_plots, stack=stack,
                               publish_to=(config.get("analysis") or {}).get("publish_address") or None)
    except BaseException:
        stack.close()
        raise

    def close() -> None:
        """Stop the live analysis, commit the catalog, release the ports, stop the simulated
        beamline and restore the wall clock. Idempotent."""
        stack.close()

    namespace = {"RE": RE, "cat": cat, "config": config, "sim": beamline, "devices": devices,
                 **devices.as_dict(), **display, "progress": progress, "close": close}
    namespace.update(plans_namespace())
    namespace["steered_synthesis"] = session_steering(display["fit_feed"], config)
    from bluesky_tiled_plugins.queries import TimeRange
    from tiled.queries import Key

    namespace.update(Key=Key, TimeRange=TimeRange)  # cat.search(Key("sample") == "CdSe-07")
    logger.info("session ready: %s hardware, data in %s, %s", config["hardware"], root, cat)
    return namespace


def session_steering(feed, config: dict):
    """:func:`ncsynth.plans.steered_synthesis` with the session's ``feed`` (the
    :class:`~ncsynth.steering_feed.FitFeed` its live analysis fills) and the configuration's
    ``[steering]`` limits filled in: ``RE(steered_synthesis(heater, injector, detector, recipe,
    target_radius_nm=2.0))``. Without fits in this process (``analysis=False``, or
    ``[analysis] publish_address``) it refuses at the call, before anything moves."""
    from ncsynth.plans import steered_synthesis
    from ncsynth.plans.decisions import SteeringLimits

    limits = SteeringLimits.from_config(config)

    @functools.wraps(steered_synthesis)
    def steered(*args, **kwargs):
        if feed is None:
            raise RefusedToStart("steered_synthesis decides from the live fits of this session, "
                                 "and it has none (no live analysis here, or [analysis] "
                                 "publish_address sends the documents elsewhere)")
        kwargs.setdefault("feed", feed)
        kwargs.setdefault("limits", limits)
        return steered_synthesis(*args, **kwargs)

    return steered


def start_session(config: dict, sim: bool | None = None, *, speed: float | None = None) -> int:
    """Open IPython with :func:`session_namespace`; close it when IPython exits. Returns 0.

    SIGTERM (a service manager) or SIGHUP (the terminal closed) abort a running plan as
    Ctrl-C does, then the heater is driven safe and the injector disarmed, the session
    closed (the heater confirmed safe first) and the process ends with 128 + the signal's
    number: nobody may be left at the prompt to do it (:mod:`ncsynth.termination`).
    """
    import IPython

    from ncsynth.termination import TerminationSignals, exit_code

    namespace = session_namespace(config, sim, speed=speed)
    close = namespace["close"]  # IPython clears its user namespace when it exits

    def finish(signal_name: str) -> None:
        make_hardware_safe(namespace["devices"])
        close()
        logger.critical("session ended by %s", signal_name)
        logging.shutdown()
        os._exit(exit_code(signal_name))  # IPython would catch SystemExit and go on

    argv = ["--no-banner", "--matplotlib=auto"] if _display_available() else ["--no-banner"]
    print(session_banner(namespace), flush=True)
    try:
        with TerminationSignals(namespace["RE"], finish=finish):
            IPython.start_ipython(argv=argv, user_ns=namespace, config=_ipython_config())
    finally:
        close()
    return 0


def _ipython_config():
    """IPython's configuration: plans that refuse to start say so in one line, a pause shows
    its options; neither with a traceback."""
    from traitlets.config import Config

    config = Config()
    config.InteractiveShellApp.exec_lines = [
        "from ncsynth.session_display import untraced_interruptions as _untraced; "
        "_untraced(get_ipython()); del _untraced"]
    return config


def make_hardware_safe(devices) -> None:
    """Disarm the injector and drive the heater safe (each tried even if the other fails),
    outside any plan: for a session that ends with nobody at the prompt."""
    for name, action in (("injector", "disarm"), ("heater", "safe_off")):
        device = getattr(devices, name, None)
        if device is None:
            continue
        try:
            getattr(device, action)()
        except Exception as exc:  # the heater's pursuit goes on; close() waits for it
            logger.critical("%s.%s() failed while ending the session: %s", name, action, exc)


def session_banner(namespace: dict) -> str:
    """What a session holds, for the top of the IPython screen."""
    sim = namespace.get("sim")
    hardware = "hutch hardware" if sim is None else f"simulated beamline, {_clock_text(sim.clock.speed)}"
    batch = ("sim.new_batch() reloads the syringes and refills the flask for the next synthesis"
             if sim is not None else "reload the injector by hand between syntheses")
    cat = namespace["cat"]
    where = getattr(cat, "url", None) or cat.layout.root  # not len(cat): Tiled caches it for 1 s
    devices = ", ".join(namespace["devices"].as_dict())
    offered = plans_namespace()
    plans = sorted(name for name, obj in offered.items()
                   if name in BLUESKY_PLANS or inspect.isgeneratorfunction(obj))
    helpers = sorted(set(offered) - set(plans))
    return (f"ncsynth session — {hardware}\n"
            f"  RE (RE.md persists in {namespace['RE'].md.directory}), cat: catalog in {where}\n"
            f"  devices: {devices}\n  plans: {', '.join(plans)}\n  also: {', '.join(helpers)}\n"
            f"  live analysis: {_analysis_text(namespace.get('analysis'))}; "
            f"one Ctrl-C pauses (RE.resume() / RE.abort()); close() ends the session\n"
            f"  {batch}; a spent piston is refused before the preheat")


def _analysis_text(analysis) -> str:
    """Where the session's documents are analysed, for the banner."""
    if analysis is None:
        return "off"
    address = getattr(analysis, "address", None)  # PublishedAnalysis
    return f"published to {address} (ncsynth analysis serve)" if address else "on"


def _clock_text(speed: float | None) -> str:
    """What the simulated clock's speed means for the user."""
    if not speed:
        return ("REHEARSAL clock (--fast, speed 0): world time jumps from deadline to deadline, "
                "a 2-hour protocol takes minutes, every frame is taken; times are simulated")
    if speed == 1:
        return "real time (speed 1; `ncsynth session --sim --fast` rehearses in minutes)"
    return (f"{speed:g}x real time: frames whose deadline passes while the machine is busy are "
            f"skipped (--fast rehearses without losing any)")
