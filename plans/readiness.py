"""Is the set-up ready for a synthesis? Asked of the hardware before anything moves.

A synthesis preheats the flask for ~10 minutes before it fires a piston; a piston fired in
an earlier synthesis (or never loaded) would only fail it then. :func:`check_loaded` asks
the injector (one ``STATUS?``, a trigger) what each piston the plan will fire holds, and
refuses in one line (:class:`~ncsynth.errors.RefusedToStart`) before the run opens.
At the hutch the remedy is the user's: reload the syringe and retract the piston by hand;
in a simulated session ``sim.new_batch()`` does it (and refills the flask).

A heating controller or an injector board that does not answer (unplugged, off, another
port) is refused the same way (:func:`check_answers`, :func:`check_loaded`): the heater's
first setpoint would otherwise fail the run after it opened, and the plan's safe ending
would pursue the safe state of a controller it never reached, logging every 10 s.
"""

from __future__ import annotations

import math

import bluesky.plan_stubs as bps

from ncsynth.devices.injector_board import InjectorCommsError
from ncsynth.devices.pump import PumpCommunicationError
from ncsynth.errors import RefusedToStart, first_line

NOT_STARTED = "not starting the synthesis (nothing heated)"

#: What an injector state means for a synthesis that would fire that piston.
NOT_READY = {"EXTENDED": "is spent (fired in an earlier synthesis)", "EMPTY": "holds no syringe",
             "JAMMED": "is jammed", "MOVING": "is still moving"}
REMEDY = ("reload the syringe and retract the piston (simulated beamline: sim.new_batch() "
          "reloads both and refills the flask)")


def check_answers(heater, *, section: str = "heater", not_started: str = NOT_STARTED):
    """Refuse (RefusedToStart, one line) unless the heating controller answers a read of its
    temperature now (the device's retries included) with a number: a thermocouple reading
    open circuit (the device trips, :attr:`~ncsynth.devices.heater.HeatingController.fault`)
    is refused too, before a setpoint heats a flask nobody measures. Use before the run opens;
    ``section``: the configuration section of its port, named in the refusal."""
    try:
        temperature_c = yield from bps.rd(heater.temperature)
    except OSError as exc:  # HeaterCommunicationError: no reply after the retries
        raise _unanswered(f"{heater.name} does not answer ({first_line(exc)})", not_started,
                          section) from exc
    if not math.isfinite(temperature_c):
        raise RefusedToStart(f"{heater.name}: {heater.fault or 'no temperature reading'}: "
                             f"{not_started}; check the thermocouple")


def _unanswered(what: str, not_started: str, section: str) -> RefusedToStart:
    """The refusal of a device that does not answer: ``what`` it said, what is not done, and
    where to look (the configuration ``section`` of its port)."""
    return RefusedToStart(f"{what}: {not_started}; check its power, cable and port "
                          f"([{section}] url)")


def check_flow_answers(pumps, zones):
    """The flow reactor's :func:`check_answers`: every zone's controller and every pump
    (one status query each) answers now, else RefusedToStart in one line naming it, before
    the run opens and a zone heats (a dead pump failed the scan only after the preheat)."""
    not_started = "not starting the scan (nothing heated, nothing pumped)"
    for zone in zones:
        yield from check_answers(zone, section=f"flow.{zone.name}", not_started=not_started)
    for pump in pumps:
        try:
            yield from bps.trigger(pump, wait=True)
        except PumpCommunicationError as exc:
            raise _unanswered(first_line(exc), not_started, f"flow.{pump.name}") from exc


def check_loaded(injector, pistons):
    """Refuse (RefusedToStart, one line) unless every piston in ``pistons`` is loaded and
    retracted, as the injector reports it now. Use before the run's first move."""
    try:
        yield from bps.trigger(injector, wait=True)  # STATUS? into the state signals
    except InjectorCommsError as exc:
        raise _unanswered(first_line(exc), NOT_STARTED, "injector") from exc
    problems = []
    for piston in pistons:
        state = yield from bps.rd(getattr(injector, f"state_{piston.lower()}"))
        if state in NOT_READY:
            problems.append(f"piston {piston} {NOT_READY[state]}")
    if problems:
        raise RefusedToStart(f"{injector.name}: {'; '.join(problems)}: {NOT_STARTED}; {REMEDY}")
