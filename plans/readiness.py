"""Is the set-up ready for a synthesis? Asked of the hardware before anything moves.

A synthesis preheats the flask for ~10 minutes before it fires a piston; a piston fired in
an earlier synthesis (or never loaded) would only fail it then. :func:`check_loaded` asks
the injector (one ``STATUS?``, a trigger) what each piston the plan will fire holds, and
refuses in one line (:class:`~ncsynth.errors.RefusedToStart`) before the run opens.
At the hutch the remedy is the user's: reload the syringe and retract the piston by hand;
in a simulated session ``sim.new_batch()`` does it (and refills the flask).
"""

from __future__ import annotations

import bluesky.plan_stubs as bps

from ncsynth.errors import RefusedToStart

#: What an injector state means for a synthesis that would fire that piston.
NOT_READY = {"EXTENDED": "is spent (fired in an earlier synthesis)", "EMPTY": "holds no syringe",
             "JAMMED": "is jammed", "MOVING": "is still moving"}
REMEDY = ("reload the syringe and retract the piston (simulated beamline: sim.new_batch() "
          "reloads both and refills the flask)")


def check_loaded(injector, pistons):
    """Refuse (RefusedToStart, one line) unless every piston in ``pistons`` is loaded and
    retracted, as the injector reports it now. Use before the run's first move."""
    yield from bps.trigger(injector, wait=True)  # STATUS? into the state signals
    problems = []
    for piston in pistons:
        state = yield from bps.rd(getattr(injector, f"state_{piston.lower()}"))
        if state in NOT_READY:
            problems.append(f"piston {piston} {NOT_READY[state]}")
    if problems:
        raise RefusedToStart(f"{injector.name}: {'; '.join(problems)}: not starting the "
                             f"synthesis (nothing heated); {REMEDY}")
