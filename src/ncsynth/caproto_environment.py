"""Channel Access clients that survive another thread changing ``os.environ``, or a server
gone between its search answer and the circuit.

caproto 1.3's client reads the EPICS environment at every search
(``caproto._utils.get_environment_variables``, called from its search-retry thread) with
``dict(os.environ)``. ``os.environ`` lists its keys and then looks each one up, so a key that
another thread deletes in between raises ``KeyError`` in caproto's thread, which dies: no PV
is searched for again, and a detector waiting for a reconnection waits for ever. This process
changes its environment while clients run (:func:`ncsynth.simulators.ca_loopback.point_clients_at`
when a simulated IOC starts or stops; pytest sets ``PYTEST_CURRENT_TEST`` at every test phase),
and the race was seen in the test suite (the search-retry thread killed by ``KeyError:
'PYTEST_CURRENT_TEST'``). :func:`install` makes caproto take its copy again when the
environment changed under it; importing :mod:`ncsynth.devices.area_detector` installs it.

Its thread that turns search answers into circuits dies the same way (caproto 1.3.0, the newest
release, unchanged on its main branch): ``Context._process_search_results_loop`` opens the TCP
circuit to the server that answered, and a server gone in between (an IOC restarted or stopped
right after it answered: the test suite's simulated IOCs, a hutch IOC restarted) refuses it;
``ConnectionRefusedError`` ends the thread, and no channel of that context connects again
(seen in a fresh-clone CI run: the traceback from ``get_circuit_manager``). :func:`install`
also runs that loop under :func:`_supervised`: on such an error it searches again for every
channel left without a circuit, and goes on.

Its thread that activates monitors dies too (caproto issue #712): a subscription queued as its
channel connected, whose server then went away before the thread got to it, waits for the
channel (``Subscription.compose_command``) and raises ``CaprotoTimeoutError``; no monitor of
that context is started again (seen in a fresh-clone CI run: an IOC stopped as the next test's
detector subscribed, and every later frame of that process "not written to HDF5 within 10 s").
:func:`install` makes such a subscription wait for its channel's next connection instead
(:func:`_composed_or_deferred`), and keeps that thread under :func:`_supervised` as well.
"""

from __future__ import annotations

import functools
import logging

import caproto
import caproto._utils
from caproto import CaprotoTimeoutError
from caproto.threading import client as threading_client

logger = logging.getLogger(__name__)

#: Copies of the environment tried before the last attempt's error is let through.
ATTEMPTS = 100


def _retrying(read_environment):
    @functools.wraps(read_environment)
    def read():
        for _ in range(ATTEMPTS - 1):
            try:
                return read_environment()
            except (KeyError, RuntimeError):  # a key deleted / the mapping resized while copied
                continue
        return read_environment()
    read.ncsynth_retrying = True
    return read


def _supervised(loop, recover=None):
    """caproto's thread loop ``loop`` (a method of a context), started again after any error
    ends it, with ``recover(context)`` called first (if given). Nothing is lost silently: the
    error is logged with its traceback."""
    @functools.wraps(loop)
    def run(context):
        while True:
            try:
                return loop(context)
            except Exception as err:
                logger.warning("Channel Access: caproto's %s loop failed (%r); it goes on",
                               loop.__name__, err, exc_info=not isinstance(err, OSError))
                if recover is None:
                    continue
                try:
                    recover(context)
                except Exception:  # a channel destroyed meanwhile: the loop must go on
                    logger.exception("Channel Access: recovering from that failed")
    run.ncsynth_supervised = True
    return run


def _composed_or_deferred(compose):
    """``Subscription.compose_command``, but a subscription whose channel does not connect
    within its time-out is left for that channel's next connection (caproto's
    ``needs_reactivation``: the PV queues it again as it connects) instead of raising in the
    thread that activates every monitor of the context."""
    @functools.wraps(compose)
    def compose_or_defer(subscription, *args, **kwargs):
        try:
            return compose(subscription, *args, **kwargs)
        except CaprotoTimeoutError:
            pv = subscription.pv
            with subscription.callback_lock:
                subscription.needs_reactivation = bool(subscription.callbacks)
            manager = pv.circuit_manager
            if pv.connected and manager is not None:  # it connected as the wait ran out
                context = manager.context
                with context.subscriptions_lock, subscription.callback_lock:
                    if subscription.needs_reactivation:
                        subscription.needs_reactivation = False
                        context.subscriptions_to_activate[manager].add(subscription)
                context.activate_subscriptions_now.set()
            return None
    compose_or_defer.ncsynth_deferring = True
    return compose_or_defer


def _search_again(context) -> None:
    """Search again for the channels of ``context`` that the interrupted loop left without a
    circuit: PVs neither connected, nor waiting for a search answer, nor on a live circuit
    (one whose channel is being created there)."""
    def on_live_circuit(pv):
        manager = pv.circuit_manager
        return (manager is not None and not manager.dead.is_set()
                and any(other is pv for other in manager.pvs.values()))

    with context.pv_cache_lock:
        waiting = {id(pv) for pvs in context.pvs_needing_circuits.values() for pv in pvs}
        lost = [key for key, pv in context.pvs.items()
                if not pv.connected and id(pv) not in waiting and not on_live_circuit(pv)]
    if lost:
        context.reconnect(lost)


def install() -> None:
    """Make caproto's environment reads retry a copy that another thread's change broke, its
    search-results loop survive a refused circuit and its monitor activation a server gone
    (idempotent; the loops of contexts made after)."""
    for module in (caproto._utils, caproto):  # the package re-exports it (``ca.get_...``)
        if not getattr(module.get_environment_variables, "ncsynth_retrying", False):
            module.get_environment_variables = _retrying(module.get_environment_variables)
    context = threading_client.Context
    if not getattr(context._process_search_results_loop, "ncsynth_supervised", False):
        context._process_search_results_loop = _supervised(context._process_search_results_loop,
                                                           _search_again)
    if not getattr(context._activate_subscriptions, "ncsynth_supervised", False):
        context._activate_subscriptions = _supervised(context._activate_subscriptions)
    subscription = threading_client.Subscription
    if not getattr(subscription.compose_command, "ncsynth_deferring", False):
        subscription.compose_command = _composed_or_deferred(subscription.compose_command)
