"""How a synthesis plan ends: safely, recorded, and with a reason a person can read.

* :func:`ending_safely` wraps a plan inside its run: whatever ends it (completion, error,
  abort, Ctrl-C, SIGTERM) the injector is disarmed and the heater driven safe, and the
  heater's safe state is recorded in the stream ``safety`` before the run closes. The
  heater pursues its safe state until its read-back confirms it (see
  :mod:`ncsynth.devices.safe_state`); a run that would otherwise have succeeded fails when
  the confirmation has not come.
* :func:`named_failures` turns bluesky's ``FailedStatus: DeviceStatus(device=...)`` into one
  line naming the device and the cause (sensor break, piston jam, lost link, ...), which is
  what the stop document's ``reason`` and the dry run's summary then say.
* :func:`~ncsynth.plans.stubs.check_heater` (used by the acquisition stubs) ends the run
  as a failure once the heater has tripped on a fault.
"""

from __future__ import annotations

import logging

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import FailedStatus

from ncsynth.devices.heater import HeaterNotSafeError

from .stubs import call

logger = logging.getLogger(__name__)

SAFETY = "safety"


class DeviceFailure(RuntimeError):
    """A device's Status failed; the message names the device and the cause."""


def failure_text(error: FailedStatus) -> str:
    """"<device>: <cause>" for a failed Status, from the Status's own exception."""
    status = error.args[0] if error.args else None
    obj = getattr(status, "device", None) or getattr(status, "obj", None)
    try:
        cause = status.exception() if status is not None else None
    except Exception:  # not an ophyd Status
        cause = None
    text = f"{type(cause).__name__}: {cause}" if cause is not None else "its Status failed"
    if isinstance(cause, RuntimeError | IOError) and str(cause):
        text = str(cause)  # the project's device errors already say what and why
    names = [getattr(obj, "name", None), getattr(getattr(obj, "root", None), "name", None)]
    names = [name for name in names if name]
    if names and not any(text.startswith(f"{name}:") for name in names):
        text = f"{names[0]}: {text}"
    return text


def named_failures(plan):
    """Run ``plan``; a failed Status leaves it as :class:`DeviceFailure` naming the device
    and the cause (the original exception chained)."""
    try:
        return (yield from plan)
    except FailedStatus as error:
        raise DeviceFailure(failure_text(error)) from error


def make_safe(heater, injector):
    """Disarm the injector and drive the heater safe, each tried even if the other fails,
    then record the heater's safe state and the injector's arming in stream ``safety``."""
    for action in (injector.disarm, heater.safe_off):
        try:
            yield from call(action)
        except Exception as exc:  # the other action must still run; the original error wins
            logger.critical("while making the set-up safe, %s failed: %s",
                            getattr(action, "__qualname__", action), exc)
    # A Status of the interrupted acquisition that fails late (a second read of a lost
    # link) is thrown into whichever message comes next: try the record again after it.
    for attempt in range(3):
        try:
            yield from bps.trigger_and_read([heater.safe_state, injector.armed], name=SAFETY)
            return
        except Exception as exc:  # recording must not hide the error that ended the plan
            logger.error("could not record the safe state in the run (attempt %d): %s",
                         attempt + 1, exc)


def ending_safely(plan, heater, injector):
    """``plan`` followed, whatever ends it, by :func:`make_safe`; if ``plan`` succeeded
    but the heater is not confirmed safe, the run fails with :class:`HeaterNotSafeError`."""
    result = yield from bpp.finalize_wrapper(plan, make_safe(heater, injector))
    if not heater.safe_confirmed:
        raise HeaterNotSafeError(f"{heater.name}: {heater.safe_state.get()}")
    return result

