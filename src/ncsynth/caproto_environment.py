"""Channel Access clients that survive another thread changing ``os.environ``.

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
"""

from __future__ import annotations

import functools

import caproto
import caproto._utils

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


def install() -> None:
    """Make caproto's environment reads retry a copy that another thread's change broke
    (idempotent)."""
    for module in (caproto._utils, caproto):  # the package re-exports it (``ca.get_...``)
        if not getattr(module.get_environment_variables, "ncsynth_retrying", False):
            module.get_environment_variables = _retrying(module.get_environment_variables)
