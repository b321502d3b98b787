"""What a command prints at the default verbosity: its results, warnings and errors of its own,
no library chatter. ``-v`` shows every log record from INFO up.

Dropped at the default verbosity (each says nothing the user can act on):

* silx/pyFAI below ERROR: "Unable to import pyOpenCl" (the integration runs on the CPU);
* Tiled below WARNING: the "Tiled version ..." banner of every in-process catalog app;
* bluesky below CRITICAL: "Run aborted" with the plan's traceback, "No open traces left to
  close!" — the command (dry run summary, exit status, IPython's exception) tells how a run
  ended;
* a serial link's per-attempt retry warnings (the request's failure, if it comes, is an error);
* Starlette's deprecation warning about Tiled's in-process test client.

The worker processes a command starts (catalog writer, live analysis) inherit the choice
through the environment (:data:`VERBOSE_ENV`) and call :func:`configure` too.
"""

from __future__ import annotations

import logging
import os
import warnings

#: "1" in the environment: verbose (``ncsynth -v``), for this process and those it starts.
VERBOSE_ENV = "NCSYNTH_VERBOSE"
#: Lowest level shown by default from these libraries' loggers (and their children).
LIBRARY_LEVELS = {"silx": logging.ERROR, "pyFAI": logging.ERROR, "tiled": logging.WARNING,
                  "bluesky": logging.CRITICAL}
#: Log messages (format strings) dropped by default: a link's retries
#: (:meth:`ncsynth.devices.modbus_rtu.ModbusRtuPort.transact`).
RETRY_MESSAGES = frozenset({"%s: %s, attempt %d of %d: %s"})
#: Python warnings dropped by default (regular expressions matched at the message's start).
IGNORED_WARNINGS = (r"Using `httpx` with `starlette.testclient` is deprecated",)
#: Loggers that print with a handler of their own (not only through the root's).
OWN_HANDLER_LOGGERS = ("tiled.server.app",)
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def is_noise(record: logging.LogRecord) -> bool:
    """Whether ``record`` is library chatter or a retry, dropped at the default verbosity."""
    if record.msg in RETRY_MESSAGES:
        return True
    for name, level in LIBRARY_LEVELS.items():
        if record.name == name or record.name.startswith(name + "."):
            return record.levelno < level
    return False


def _keep(record: logging.LogRecord) -> bool:
    return not is_noise(record)


def configure(verbose: bool | None = None) -> bool:
    """Set up logging for a command: INFO and everything when ``verbose``, else WARNING without
    the noise above. ``verbose`` None: from the environment (a worker process). Returns it."""
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV) == "1"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return True
    os.environ.pop(VERBOSE_ENV, None)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_keep)
    for name in OWN_HANDLER_LOGGERS:
        logging.getLogger(name).addFilter(_keep)
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    return False
