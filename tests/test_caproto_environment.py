"""caproto's client reads os.environ from its search thread while this process changes it
(simulated IOCs come and go; pytest sets PYTEST_CURRENT_TEST): the read must not fail."""

import os
import sys
import threading

import caproto._utils

from ncsynth import caproto_environment

READS = 3000


def _reads_failing(read, reads: int = READS, *, until_first: bool = False) -> int:
    """How many of ``reads`` calls of ``read()`` raise while another thread adds and deletes a
    key (``until_first``: stop at the first)."""
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            os.environ["NCSYNTH_ENV_CHURN"] = "1"
            del os.environ["NCSYNTH_ENV_CHURN"]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that the race shows within READS
    thread = threading.Thread(target=churn)
    thread.start()
    failures = 0
    try:
        for _ in range(reads):
            try:
                read()
            except KeyError:
                failures += 1
                if until_first:
                    break
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    return failures


def test_the_race_is_real_for_an_unguarded_read():
    original = caproto._utils.get_environment_variables
    original = getattr(original, "__wrapped__", original)
    assert _reads_failing(original, 30 * READS, until_first=True) > 0


def test_the_installed_read_never_fails_while_the_environment_changes():
    caproto_environment.install()
    assert caproto._utils.get_environment_variables.ncsynth_retrying
    assert _reads_failing(caproto._utils.get_address_list) == 0
    env = caproto._utils.get_environment_variables()
    assert env["EPICS_CA_SERVER_PORT"] == int(os.environ.get("EPICS_CA_SERVER_PORT", 5064))


def test_importing_the_detector_installs_it():
    import ncsynth.devices.area_detector  # noqa: F401
    import caproto
    assert caproto._utils.get_environment_variables.ncsynth_retrying
    assert caproto.get_environment_variables.ncsynth_retrying


# -- a search answered by a server gone before the circuit --------------------------------------
def _closed_port() -> tuple[str, int]:
    """A loopback TCP address nobody listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()


def _a_gone_server_answers(context, name: str) -> None:
    """What caproto's broadcaster hands the search-results thread when a server answered a search
    for ``name`` and went away before the client opened its circuit: its address and the name."""
    gone = _closed_port()
    context.broadcaster.server_protocol_versions[gone] = 13
    context._search_results_queue.put((gone, [name]))


def _until(condition, timeout_s: float) -> bool:
    """Poll ``condition()`` every 10 ms until it holds or ``timeout_s`` has passed; its last value."""
    import time

    gave_up = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < gave_up:
        time.sleep(0.01)
    return condition()


def test_a_server_gone_between_its_answer_and_the_circuit_does_not_end_channel_access():
    """caproto 1.3's search-results thread died of the refused circuit (a fresh-clone CI run
    printed it); no channel of its context connected after. Installed, the channel is searched
    for again and connects once a live IOC answers, and later channels connect too."""
    import time

    from caproto.threading.client import Context

    from ncsynth.simulators.beamline import SimulatedBeamline
    from ncsynth.simulators.ca_loopback import point_clients_at

    caproto_environment.install()
    with SimulatedBeamline(seed=1) as sim:
        prefix = sim.detector.prefix
        release = point_clients_at(_closed_port())  # nobody answers the first searches
        context = Context()
        try:
            (acquire,) = context.get_pvs(f"{prefix}cam1:Acquire", timeout=10.0)
            _a_gone_server_answers(context, acquire.name)
            _until(context._search_results_queue.empty, 5.0)
            time.sleep(0.2)  # taken from the queue: the refused circuit has been tried
            assert context._search_results_queue.empty()
            assert context._process_search_results_thread.is_alive()
            release()
            release = point_clients_at(sim.detector.address)  # now the IOC answers
            acquire.wait_for_connection(timeout=20.0)
            assert acquire.connected and acquire.read().data is not None
            (later,) = context.get_pvs(f"{prefix}cam1:AcquireTime_RBV", timeout=10.0)
            later.wait_for_connection(timeout=20.0)
            assert later.connected
        finally:
            context.disconnect()
            release()


# -- a monitor whose server went away before it was started -------------------------------------


def test_a_monitor_whose_server_went_away_before_it_started_does_not_end_monitors():
    """caproto issue #712, seen in a fresh-clone CI run: a subscription queued for activation
    whose IOC stopped before caproto's activation thread got to it timed out there and ended the
    thread; no monitor of the process started again. Installed, the thread goes on, the
    subscription waits for its channel's next connection, and a later IOC's monitor delivers."""
    import queue

    from caproto.threading.client import Context

    from ncsynth.simulators.beamline import SimulatedBeamline
    from ncsynth.simulators.ca_loopback import point_clients_at

    caproto_environment.install()
    context = Context()
    try:
        with SimulatedBeamline(seed=1) as sim:
            release = point_clients_at(sim.detector.address)
            try:
                (gone,) = context.get_pvs(f"{sim.detector.prefix}cam1:AcquireTime_RBV", timeout=1.0)
                gone.wait_for_connection(timeout=20.0)
                manager = gone.circuit_manager
            finally:
                release()
        assert _until(lambda: not gone.connected, 10.0), "the stopped IOC's channel still looks connected"
        stale = gone.subscribe()
        ignore = lambda *args, **kwargs: None  # noqa: E731  (caproto holds callbacks weakly)
        stale.add_callback(ignore)
        with context.subscriptions_lock:  # as caproto queues it when the channel connects
            context.subscriptions_to_activate[manager].add(stale)
        context.activate_subscriptions_now.set()
        # the activation thread waits out the channel's 1-s time-out, leaves the subscription
        # for the channel's next connection (started again if that IOC comes back), goes on
        assert _until(lambda: stale.needs_reactivation, 20.0)
        assert context._activate_subscriptions_thread.is_alive()

        with SimulatedBeamline(seed=2) as sim:
            release = point_clients_at(sim.detector.address)
            try:
                (later,) = context.get_pvs(f"{sim.detector.prefix}cam1:AcquireTime_RBV", timeout=10.0)
                later.wait_for_connection(timeout=20.0)
                updates = queue.Queue()
                keep = lambda sub, response: updates.put(response.data[0])  # noqa: E731
                later.subscribe().add_callback(keep)
                assert updates.get(timeout=10.0) is not None  # the monitor's first update
                (setpoint,) = context.get_pvs(f"{sim.detector.prefix}cam1:AcquireTime", timeout=10.0)
                setpoint.write([0.125], wait=True, timeout=10.0)
                assert _until(lambda: not updates.empty() and updates.queue[-1] == 0.125, 10.0)
            finally:
                release()
    finally:
        context.disconnect()
