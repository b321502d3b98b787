"""The two-piston hot-injection controller (seed 000 §S.1.4) as an ophyd Device.

Two syringes above the flask are pushed by compressed-air pistons fired
remotely; firing piston A injects the §S.1.2 Cd precursor and defines t = 0 of
the reaction. The controller board speaks the ASCII line protocol of
``docs/protocols.md`` ("Two-piston injector (ASCII)").

Usage at the hutch or in a dry run::

    inj = Injector("socket://127.0.0.1:PORT", name="injector")
    inj.arm()
    status = inj.fire("A")          # returns at once, with the firing time known
    status.wait()                   # done when A's extended end switch closes
    inj.fire_time_a.get()           # epoch s, ± inj.fire_time_a_uncertainty.get()

In a plan: ``yield from bps.abs_set(inj, "arm", wait=True)`` and
``yield from bps.abs_set(inj, "A", wait=True)`` (fire piston A; see :meth:`Injector.set`).

Timing: the board stamps a firing with its own microsecond counter. The device
maps board µs to epoch seconds from clock samples, each a request bracketed by
``timebase.now()`` before sending and after the reply: the board read its
counter inside that window, so the window's midpoint is the estimate and half
its width the uncertainty. The sharpest of the samples taken at the firing is
used and the uncertainty exposed as ``fire_time_<p>_uncertainty``.
"""

from __future__ import annotations

import logging
import math
import threading

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from ncsynth import timebase, validation
from . import background

from .injector_board import (BoardLine, ClockSample, InjectorCommsError, InjectorError,
                             InjectorJamError, Reply)
from .serial_link import LinkFault, SerialLink, attempts_text

logger = logging.getLogger(__name__)

PISTONS = ("A", "B")
_REFUSED_STATES = {"EMPTY": "no syringe loaded", "EXTENDED": "already fired (spent)",
                   "JAMMED": "jammed", "MOVING": "still moving"}
_REFUSAL_CODES = {"EMPTY": "EMPTY", "EXTENDED": "SPENT", "JAMMED": "JAMMED", "MOVING": "BUSY"}


class Injector(Device):
    """Two-piston air injector behind the ASCII board protocol.

    Parameters
    ----------
    url:
        Anything ``serial.serial_for_url`` opens: ``/dev/ttyUSB0``,
        ``socket://host:port``.
    jam_timeout_s:
        A fired piston that has not reached its extended end switch this long
        (experiment time, :mod:`ncsynth.timebase`) after firing fails its
        Status with :class:`InjectorJamError`. A free stroke takes ~0.3 s.
    timeout_s:
        Wall-clock time-out for one reply (serial I/O).
    retries:
        Re-sends after a failed exchange (time-out, garbled reply, closed
        port). A ``FIRE`` is never re-sent unless the board proved it did not
        execute it.
    poll_s:
        Interval between ``STATUS?`` polls while a piston moves (experiment time).
    """

    armed = Cpt(Signal, value=0, kind="normal", doc="1 when the air supply is armed")
    state_a = Cpt(Signal, value="UNKNOWN", kind="normal",
                  doc="READY, MOVING, EXTENDED, JAMMED or EMPTY")
    state_b = Cpt(Signal, value="UNKNOWN", kind="normal",
                  doc="READY, MOVING, EXTENDED, JAMMED or EMPTY")
    end_switch_a = Cpt(Signal, value="?", kind="normal",
                       doc="R retracted, X extended, - between")
    end_switch_b = Cpt(Signal, value="?", kind="normal",
                       doc="R retracted, X extended, - between")
    fire_time_a = Cpt(Signal, value=math.nan, kind="normal",
                      doc="epoch s at which piston A fired (t = 0); NaN if not fired")
    fire_time_a_uncertainty = Cpt(Signal, value=math.nan, kind="normal",
                                  doc="± s of fire_time_a (half the clock-sample round trip)")
    fire_time_b = Cpt(Signal, value=math.nan, kind="normal",
                      doc="epoch s at which piston B fired; NaN if not fired")
    fire_time_b_uncertainty = Cpt(Signal, value=math.nan, kind="normal",
                                  doc="± s of fire_time_b")
    controller_id = Cpt(Signal, value="", kind="config", doc="the board's ID? reply")
    jam_timeout = Cpt(Signal, value=math.nan, kind="config", doc="s, see jam_timeout_s")

    def __init__(self, url: str, *, name: str, jam_timeout_s: float = 2.0,
                 timeout_s: float = 0.5, retries: int = 2, poll_s: float = 0.05, **kwargs):
        url = validation.text("url", url)
        jam_timeout_s, timeout_s, poll_s = (
            validation.real(label, value, above=0, unit="s")
            for label, value in (("jam_timeout_s", jam_timeout_s), ("timeout_s", timeout_s),
                                 ("poll_s", poll_s)))
        retries = validation.integer("retries", retries, minimum=0)
        super().__init__(prefix="", name=name, **kwargs)
        self.url = url
        self.jam_timeout_s = jam_timeout_s
        self.timeout_s = timeout_s
        self.retries = retries
        self.poll_s = poll_s
        self.jam_timeout.put(self.jam_timeout_s)
        self._line = BoardLine(SerialLink(url, self.timeout_s, baudrate=115200), self.timeout_s)
        self._lock = threading.RLock()
        self._board_armed: bool | None = None  # None: not known yet
        self._board_states: dict[str, str | None] = dict.fromkeys(PISTONS)
        self._cancels: list[threading.Event] = []  # one per stroke being watched

    # -- actions -----------------------------------------------------------------------
    def arm(self) -> None:
        """Arm the air supply, then read the board's status."""
        self._request("ARM")
        self._put(self.armed, 1)
        self._board_armed = True
        self.refresh()

    def disarm(self) -> None:
        """Disarm the air supply. Always attempted; raises InjectorCommsError if it failed."""
        self._request("DISARM")
        self._put(self.armed, 0)
        self._board_armed = False

    def fire(self, piston: str) -> DeviceStatus:
        """Fire ``piston`` ("A" or "B"); the Status completes at its extended end switch.

        Returns once the board has confirmed the firing and ``fire_time_<p>`` is
        set. Refused with :class:`InjectorError` (``code`` NOT_ARMED, EMPTY,
        SPENT, JAMMED or BUSY) before sending when the device knows the state,
        else by the board. The Status fails with :class:`InjectorJamError` when
        the board reports the piston JAMMED or it is not extended
        ``jam_timeout_s`` after firing.
        """
        if not isinstance(piston, str):
            raise TypeError(f"piston must be 'A' or 'B', got {piston!r}")
        piston = piston.strip().upper()
        if piston not in PISTONS:
            raise ValueError(f"piston must be 'A' or 'B', got {piston!r}")
        with self._lock:
            if self._board_armed is None or self._board_states[piston] is None:
                self.refresh()
            self._check_can_fire(piston)
            t_fired = timebase.now()
            try:
                fired_us, sample = self._send_fire(piston)
            except InjectorError as err:
                if err.code is not None:  # refused: the device's knowledge was stale
                    self._refresh_quietly()
                raise
            samples = [sample]
            try:
                samples.append(self.sync_clock())
            except InjectorCommsError as err:
                logger.warning("%s: clock sync after firing %s failed (%s); using the firing "
                               "exchange itself", self.name, piston, err)
            best = min(samples, key=lambda s: s.uncertainty_s)
            self._put(getattr(self, f"fire_time_{piston.lower()}"), best.to_epoch(fired_us))
            self._put(getattr(self, f"fire_time_{piston.lower()}_uncertainty"),
                      best.uncertainty_s)
        status = DeviceStatus(self)
        cancel = threading.Event()
        self._cancels = [c for c in self._cancels if not c.is_set()] + [cancel]
        background.run(self._watch_stroke, piston, t_fired, status, cancel,
                       name=f"{self.name}-fire-{piston}")
        return status

    def set(self, action: str) -> DeviceStatus:
        """Bluesky entry point: ``"A"``/``"fire A"``, ``"B"``/``"fire B"``, ``"arm"``, ``"disarm"``.

        Firing returns the stroke's Status (see :meth:`fire`); arm and disarm
        are one exchange each and return a finished Status.
        """
        words = action.split() if isinstance(action, str) else []
        if len(words) == 2 and words[0].lower() == "fire":
            words = words[1:]
        if len(words) == 1 and words[0].upper() in PISTONS:
            return self.fire(words[0])
        if len(words) == 1 and words[0].lower() in ("arm", "disarm"):
            getattr(self, words[0].lower())()
            return self._done()
        raise ValueError(f"action must be 'A', 'B', 'fire A', 'fire B', 'arm' or 'disarm', "
                         f"got {action!r}")

    def trigger(self) -> DeviceStatus:
        """Read the board's status into the signals (one ``STATUS?``)."""
        self.refresh()
        return self._done()

    def stop(self, *, success: bool = False) -> None:
        """Stop watching strokes (a stroke itself cannot be stopped) and disarm.

        The RunEngine calls this on abort, on pause and at the end of every plan
        that ``set`` the injector, so the air supply is never left armed; a plan
        resumed after a pause must arm again before firing. Raises
        :class:`InjectorCommsError` when the board could not be reached.
        """
        for cancel in self._cancels:
            cancel.set()
        try:
            self.disarm()
        except InjectorCommsError:
            logger.error("%s: disarm on stop failed", self.name)
            raise
        finally:
            super().stop(success=success)

    def close(self) -> None:
        """Close the serial port (it is reopened by the next request)."""
        with self._lock:
            self._line.link.close()

    # -- board state -------------------------------------------------------------------
    def refresh(self) -> dict:
        """Ask ``STATUS?``, update the signals, return the parsed fields."""
        reply = self._request("STATUS?")
        fields = dict(word.split("=", 1) for word in reply.words[1:] if "=" in word)
        try:
            sample = reply.sample(int(fields["T"]))
            armed = fields["ARMED"] == "1"
            pistons = {p: (fields[p], fields[f"SW{p}"], fields[f"F{p}"]) for p in PISTONS}
        except (KeyError, ValueError) as err:
            raise InjectorCommsError(f"{self.name}: STATUS? reply lacks field {err}: "
                                     f"{' '.join(reply.words)!r}") from err
        self._board_armed = armed
        self._put(self.armed, int(armed))
        for p, (state, switch, fired) in pistons.items():
            self._board_states[p] = state
            self._put(getattr(self, f"state_{p.lower()}"), state)
            self._put(getattr(self, f"end_switch_{p.lower()}"), switch)
            fire_time = getattr(self, f"fire_time_{p.lower()}")
            if fired == "-":
                self._put(fire_time, math.nan)
                self._put(getattr(self, f"fire_time_{p.lower()}_uncertainty"), math.nan)
            elif math.isnan(fire_time.get()):  # fired before this session knew: map it now
                self._put(fire_time, sample.to_epoch(int(fired)))
                self._put(getattr(self, f"fire_time_{p.lower()}_uncertainty"),
                          sample.uncertainty_s)
        return fields

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except InjectorCommsError as err:
            logger.warning("%s: status refresh failed: %s", self.name, err)

    def identify(self) -> str:
        """Ask ``ID?``; store and return the board's identification."""
        text = " ".join(self._request("ID?").words[1:])
        self._put(self.controller_id, text)
        return text

    def sync_clock(self, samples: int = 3) -> ClockSample:
        """Sample the board clock ``samples`` times with ``TIME?``; return the sharpest."""
        samples = validation.integer("samples", samples, minimum=1)
        taken = []
        for _ in range(samples):
            reply = self._request("TIME?")
            taken.append(reply.sample(self._int_word(reply, 1, "TIME?")))
        return min(taken, key=lambda s: s.uncertainty_s)

    # -- firing internals -------------------------------------------------------------
    def _check_can_fire(self, piston: str) -> None:
        if self._board_armed is False:
            raise InjectorError(f"{self.name}: cannot fire piston {piston}: not armed "
                                f"(call arm() first)", code="NOT_ARMED")
        state = self._board_states[piston]
        if state in _REFUSED_STATES:
            raise InjectorError(f"{self.name}: cannot fire piston {piston}: "
                                f"{_REFUSED_STATES[state]} (state {state})",
                                code=_REFUSAL_CODES[state])

    def _send_fire(self, piston: str) -> tuple[int, ClockSample]:
        """Send ``FIRE`` without blind re-sends; return (board µs of firing, clock sample)."""
        command = f"FIRE {piston}"
        causes = []
        for _ in range(self.retries + 1):
            try:
                reply = self._line.exchange(command)
            except LinkFault as fault:  # ambiguous: did the board execute it?
                causes.append(str(fault))
                fired = self._fired_us_after_ambiguity(piston, command, fault)
                if fired is not None:
                    return fired
                continue  # the board proved it did not fire: sending again is safe
            if reply.kind == "ERR" and reply.words[1] == "BAD_CHECKSUM":
                causes.append("request garbled on the line (ERR 02), not executed")
                continue
            self._raise_if_refused(command, reply)
            us = self._int_word(reply, 2, command)
            self._board_states[piston] = "MOVING"
            return us, reply.sample(us)
        raise InjectorCommsError(f"{self.name}: {command} not executed after "
                                 f"{self.retries + 1} attempts: {attempts_text(causes)}")

    def _fired_us_after_ambiguity(self, piston, command, fault):
        """After a lost FIRE reply, learn from ``STATUS?`` whether the board fired."""
        try:
            fields = self.refresh()
        except InjectorCommsError as err:
            raise InjectorCommsError(
                f"{self.name}: {command}: reply lost ({fault}) and the status could not be "
                f"read ({err}); whether piston {piston} fired is UNKNOWN — check the "
                f"injector before doing anything else") from err
        if fields[f"F{piston}"] == "-":
            logger.warning("%s: %s reply lost (%s); status shows it did not fire",
                           self.name, command, fault)
            if fields["ARMED"] != "1":
                raise InjectorError(f"{self.name}: {command}: board is not armed",
                                    code="NOT_ARMED")
            return None
        logger.warning("%s: %s reply lost (%s); status shows it fired", self.name, command, fault)
        fired_us = int(fields[f"F{piston}"])
        fire_time = getattr(self, f"fire_time_{piston.lower()}")
        # refresh() mapped the firing with the STATUS exchange as clock sample
        uncertainty = getattr(self, f"fire_time_{piston.lower()}_uncertainty").get()
        return fired_us, ClockSample(fired_us, fire_time.get(), uncertainty)

    def _watch_stroke(self, piston: str, t_fired: float, status: DeviceStatus,
                      cancel: threading.Event) -> None:
        deadline = t_fired + self.jam_timeout_s
        try:
            while True:
                state = self.refresh()[piston]
                if state == "EXTENDED":
                    cancel.set()
                    status.set_finished()
                    return
                if state == "JAMMED":
                    raise InjectorJamError(f"{self.name}: piston {piston} jammed: the board's "
                                           f"stroke watchdog tripped before the end switch "
                                           f"closed", code="JAMMED")
                if timebase.now() >= deadline:
                    raise InjectorJamError(
                        f"{self.name}: piston {piston} jammed: not extended "
                        f"{self.jam_timeout_s:g} s after firing (state {state})", code="JAMMED")
                if not timebase.sleep(min(self.poll_s, max(deadline - timebase.now(), 0.0)),
                                      cancel):
                    raise InjectorError(f"{self.name}: stopped while watching piston {piston} "
                                        f"(a stroke under way still completes)", code="STOPPED")
        except Exception as exc:  # the Status carries every failure to the waiter
            cancel.set()
            status.set_exception(exc)

    # -- transport ---------------------------------------------------------------------
    def _request(self, command: str) -> Reply:
        """Exchange ``command`` with bounded retries; raise on ERR or persistent faults."""
        causes = []
        with self._lock:
            for _ in range(self.retries + 1):
                try:
                    reply = self._line.exchange(command)
                except LinkFault as fault:
                    causes.append(str(fault))
                    continue
                if reply.kind == "ERR" and reply.words[1] == "BAD_CHECKSUM":
                    causes.append("request garbled on the line (ERR 02)")
                    continue
                self._raise_if_refused(command, reply)
                return reply
        raise InjectorCommsError(f"{self.name}: {command} failed after {self.retries + 1} "
                                 f"attempts on {self.url}: {attempts_text(causes)}")

    def _raise_if_refused(self, command: str, reply: Reply) -> None:
        if reply.kind == "ERR":
            code = reply.words[1]
            raise InjectorError(f"{self.name}: {command} refused by the controller: "
                                f"{' '.join(reply.words)}", code=code)

    def _int_word(self, reply: Reply, index: int, command: str) -> int:
        try:
            return int(reply.words[index])
        except (IndexError, ValueError) as err:
            raise InjectorCommsError(f"{self.name}: {command}: malformed reply "
                                     f"{' '.join(reply.words)!r}") from err

    def _put(self, signal: Signal, value) -> None:
        signal.put(value, timestamp=timebase.now())

    def _done(self) -> DeviceStatus:
        status = DeviceStatus(self)
        status.set_finished()
        return status
