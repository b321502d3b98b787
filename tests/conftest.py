"""Test-wide settings."""

import os
import signal
import sys
import threading

import pytest

from ncsynth.simulators.clock import single_blas_thread

# One BLAS thread, as the CLI sets: the small matrix products of frame synthesis and fitting
# are ~50x slower with multithreaded OpenBLAS on a loaded 2-core machine. The variable reaches
# the processes the tests start; this one has numpy loaded already (by a plugin), so its
# OpenBLAS is limited at run time too (a jumping clock does the same: see simulators/clock.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
single_blas_thread()

# Compiled modules cached as Python does by default (in __pycache__, which .gitignore leaves
# out): a machine with PYTHONDONTWRITEBYTECODE set compiles every test module (with pytest's
# assertion rewriting) and every module of ncsynth again in each of the suite's workers and in
# every command a test starts — 3.5 of the 11 CPU-s a worker's collection takes on the 2-core
# machine (issue 18). Done here, before the workers start, it holds for them and what they start.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

# Ctrl-C as a terminal's foreground job sees it, however the suite was started: a background job
# of a non-interactive shell (a CI script's `cmd &`) starts with SIGINT ignored, and an ignored
# signal stays ignored across exec. The commands the tests start (Ctrl-C outside a plan must end
# them with one line and 130) then ignored it too, unless an earlier test of the same worker had
# put a Python handler in (which exec turns back into the default): a two-hog suite started that
# way failed tests/test_flow_dry_run_signals.py's second Ctrl-C with exit 1 once, by the order in
# which its worker had run other files. Done here, it holds for the workers too (conftest runs in
# each).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: caproto's client threads, shared by every Channel Access channel of the process: an uncaught
#: error ends one (e.g. a subscription given to the activation thread as its IOC went away,
#: caproto issue #712, now survived: ncsynth.caproto_environment), and every later monitor,
#: search or circuit of the process is silent.
CAPROTO_THREADS = frozenset({"activate_subscriptions", "retry", "search", "command", "selector",
                             "check_for_unresponsive_servers"})
_caproto_threads_seen: set[str] = set()


#: The suite's slowest files, slowest first (their tests' setup + call + teardown times summed
#: from a `-n 2 --durations=0` run of the whole suite, redis, PostgreSQL and chromium present,
#: 2026-12-05, issue 18: files of 9 s and more, 1682 test seconds in all). The README command
#: hands whole files to its three workers (`--dist loadfile`) in collection order
#: (`--no-loadscope-reorder`): these go first, longest first, so that the last file to start
#: is short and the other workers idle little; the rest, seconds each, fill the gaps in name
#: order. A file missing here only runs later; nothing else changes.
SLOWEST_FIRST = ("test_dry_run.py", "test_damaged_data.py", "test_analysis_service.py",
                 "test_protocol.py", "test_run_agent.py",
                 "test_postgres_dry_run.py", "test_steered_dry_run.py", "test_quiet_commands.py",
                 "test_hutch_path.py", "test_triggered_sequence.py", "test_session_terminal.py",
                 "test_postgres.py", "test_water_calibration.py", "test_flow_reactor.py",
                 "test_queueserver.py", "test_determinism.py", "test_storage.py",
                 "test_session_steering.py", "test_steering_plan.py", "test_session.py",
                 "test_session_synthesis.py", "test_double_injection.py", "test_area_detector.py",
                 "test_analysis_service_missed.py", "test_skipped_frames.py",
                 "test_flow_dry_run_signals.py", "test_superfocusing.py",
                 "test_concurrent_writers.py", "test_nexus.py", "test_world_stepping.py",
                 "test_browser.py", "test_injector.py",
                 "test_ioc_teardown.py", "test_size_model_error.py", "test_catalog_server.py",
                 "test_steering_fallback.py", "test_flask_protocol.py", "test_pump.py",
                 "test_run_outputs.py", "test_catalog_views.py")


def pytest_collection_modifyitems(items):
    """Run the files of :data:`SLOWEST_FIRST` first, in its order (a stable sort: the tests of
    a file keep their order)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def caproto_client_survives():
    """Fail the test during which a caproto client thread of this process died, naming it: the
    tests after it in this process would otherwise fail far from the cause (every detector
    frame 'not written to HDF5 within 10 s')."""
    yield
    alive = {thread.name for thread in threading.enumerate()} & CAPROTO_THREADS
    dead = _caproto_threads_seen - alive
    _caproto_threads_seen.clear()
    _caproto_threads_seen.update(alive)
    if dead:
        pytest.fail(f"caproto's {', '.join(sorted(dead))} thread died during this test: the "
                    f"Channel Access monitors and searches of this process are dead from here on")


@pytest.fixture
def rebuilt(monkeypatch):
    """Every dependency FastAPI analyses from now on (through ``fastapi.dependencies.utils``:
    the routes' dependencies, recursively), by the callable analysed: what an in-process Tiled
    app costs FastAPI (test_fastapi_overrides, test_shared_router)."""
    import fastapi.dependencies.utils as fastapi_dependencies

    calls = []
    build = fastapi_dependencies.get_dependant
    monkeypatch.setattr(fastapi_dependencies, "get_dependant",
                        lambda *args, **kwargs: (calls.append(kwargs.get("call")),
                                                 build(*args, **kwargs))[1])
    return calls
