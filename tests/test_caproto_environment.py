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
