"""One simulated world: a clock and the physical models it advances.

Models are advanced lazily: whoever needs the world's state (a protocol
interface serving a request, the detector synthesising a frame) calls
:meth:`World.advance`, which steps every model from the last advance up to
``clock.now()`` in fixed sub-steps of at most ``dt_s``. Models are stepped in
registration order with ``model.step(dt_s, world)``. A model with
``slow = True`` (the reaction kinetics, which sub-steps adaptively itself) is
handed the accumulated time once per slow window, at the end of every advance
that asks for it and before a delivery, and reads the flask's mean temperature
over that time (:attr:`World.mean_flask_temperature_c`).

The slow window is ``slow_dt_s``, or, with ``slow_max_dt_s`` > ``slow_dt_s``, adaptive:
the largest step the slow models say they would take next (``preferred_dt_s``, e.g. the
kinetics' own error-controlled sub-step), clamped to [``slow_dt_s``, ``slow_max_dt_s``].
While the reaction moves fast (nucleation, an injection) that is ``slow_dt_s``; once it
only ripens, the window grows, and the world steps the reaction as rarely as its accuracy
and the readers (a detector frame asks for the state now) allow.

The coupling between models is explicit: :meth:`World.deliver` is what the
injector calls when a piston has pushed its syringe into the flask.

A reader that must see the world at a given time, however late its thread runs (a detector
exposure's middle), registers a :meth:`World.probe` beforehand: the world stops there on its
way, whichever request takes it past.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class SyringeCharge:
    """What one syringe holds.

    Defaults: the Cd precursor of seed 000 §S.1.2, 3.56 g of 0.1 mol/L Cd(OA)2
    in ODE at room temperature (density ~0.79 g/mL -> ~4.5 mL).
    """

    mass_g: float = 3.56
    volume_ml: float = 4.5
    temperature_c: float = 25.0
    cd_molar: float = 0.1

    def __post_init__(self):
        for field in ("mass_g", "volume_ml", "cd_molar"):
            value = getattr(self, field)
            if not value >= 0:
                raise ValueError(f"SyringeCharge.{field} must be >= 0, got {value!r}")


class Probe:
    """A sample of the world taken at one world time (:meth:`World.probe`)."""

    def __init__(self, world: World, at_s: float, sample: Callable[[], Any]):
        self.at_s, self.done, self.value = at_s, False, None
        self._world, self._sample = world, sample

    def take(self) -> None:
        """Take the sample now (the world's lock held)."""
        self.value, self.done = self._sample(), True

    def read(self) -> Any:
        """The sample: the world is brought up to the clock's now first, but not past ``at_s``,
        which takes it at ``at_s`` if the clock has reached that (else it is taken as the world
        is now). Not past: the reader's thread runs late by a different wall time in each run,
        and the models' steps must not end where it happens to come (a step's end shifts
        the fixed steps after it, and a sample's noise with it: the same seed gave other fits)."""
        if not self.done:
            self._world.advance(until_s=self.at_s)
        with self._world.lock:
            if not self.done:
                self.take()
        return self.value

    def cancel(self) -> None:
        """Not wanted any more: the world passes its time without stepping there."""
        self.done = True


class World:
    """The simulated flask, controller, injector, reaction and detector, in one time."""

    def __init__(self, clock, dt_s: float = 0.05, slow_dt_s: float = 0.5,
                 slow_max_dt_s: float | None = None):
        if not dt_s > 0 or not slow_dt_s > 0:
            raise ValueError(f"dt_s and slow_dt_s must be positive, got {dt_s!r}, {slow_dt_s!r}")
        if slow_max_dt_s is not None and not slow_max_dt_s >= slow_dt_s:
            raise ValueError(f"slow_max_dt_s must be >= slow_dt_s, got {slow_max_dt_s!r}")
        self.clock = clock
        self.dt_s = dt_s
        self.slow_dt_s = slow_dt_s
        self.slow_max_dt_s = slow_dt_s if slow_max_dt_s is None else float(slow_max_dt_s)
        self._slow_window = slow_dt_s  # the current slow window, s
        self.lock = threading.RLock()
        self.time = clock.now()
        self.deliveries: list[tuple[float, SyringeCharge]] = []
        self._models: dict[str, Any] = {}
        self._slow_pending = 0.0
        self._probes: list[tuple[float, int, Probe]] = []  # (world time, order, probe): a heap
        self._probe_seq = itertools.count()
        self._slow_heat_c_s = 0.0  # ∫ T_flask dt over the slow models' pending time, °C·s
        #: the flask's mean temperature over the interval a slow model is being stepped, °C
        self.mean_flask_temperature_c: float | None = None

    def add(self, name: str, model) -> Any:
        """Register ``model`` under ``name`` (stepped in registration order)."""
        if name in self._models:
            raise ValueError(f"a model named {name!r} is already in the world")
        self._models[name] = model
        return model

    def replace(self, name: str, model) -> Any:
        """Put ``model`` in the place of the model registered as ``name`` (same step order)."""
        if name not in self._models:
            raise ValueError(f"no model named {name!r} in the world")
        with self.lock:
            self._models[name] = model
        return model

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.__dict__.get("_models", {}).get(name)

    def advance(self, slow: bool = True, until_s: float | None = None) -> float:
        """Bring every model up to the clock's now (or ``until_s``, epoch s, if that is
        earlier); return world time.

        ``slow=False`` leaves the slow models' last fraction of ``slow_dt_s`` pending (they
        are then up to ``slow_dt_s`` behind): for requests that only read the fast models,
        e.g. the controller's thermocouple, which need not pay for a kinetics step each.
        """
        # the world works at the clock's now: a jumping clock stands still meanwhile (its
        # patience with a process that never rests would otherwise move it on during a long
        # advance, and a reply be stamped at a later deadline than the state it reports)
        with getattr(self.clock, "busy", contextlib.nullcontext)(), self.lock:
            target = self.clock.now() if until_s is None else min(self.clock.now(), until_s)
            while self._probes and self._probes[0][0] <= target:
                at, _, probe = heapq.heappop(self._probes)
                if not probe.done:
                    self._step_to(at)
                    self._step_slow()
                    probe.take()
            self._step_to(target)
            if slow:
                self._step_slow()
            return self.time

    def probe(self, at_s: float, sample: Callable[[], Any]) -> Probe:
        """``sample()`` of the world as it is at world time ``at_s`` (epoch s), every model
        (the slow ones too) stepped up to exactly then, whenever the world passes it: a
        reading that does not depend on when its caller's thread runs (a detector's exposure
        sampled at its middle, also if the clock has moved on by the time its thread asks;
        :meth:`Probe.read`). Once the world has passed ``at_s``, the sample is taken now."""
        with self.lock:
            probe = Probe(self, at_s, sample)
            if at_s <= self.time:
                probe.take()
            else:
                heapq.heappush(self._probes, (at_s, next(self._probe_seq), probe))
            return probe

    def _step_to(self, time_s: float) -> None:
        while self.time < time_s:
            self._step(min(self.dt_s, time_s - self.time))

    def deliver(self, charge: SyringeCharge) -> None:
        """A syringe emptied into the flask: cold liquid in, precursor to the reaction."""
        with self.lock:
            self._step_slow()  # the reaction so far, at the temperature before the cold liquid
            flask = self.flask
            volume_before = flask.volume_ml if flask is not None else 0.0
            if flask is not None:
                flask.add_liquid(mass_g=charge.mass_g, temperature_c=charge.temperature_c,
                                 volume_ml=charge.volume_ml)
            total = volume_before + charge.volume_ml
            if self.reaction is not None and total > 0:
                self.reaction.add_precursor(charge.cd_molar * charge.volume_ml / total,
                                            dilution=volume_before / total)
                self._slow_window = self.slow_dt_s  # the burst that follows: fine steps again
            self.deliveries.append((self.time, charge))

    def _step(self, dt: float) -> None:
        for model in self._models.values():
            if getattr(model, "slow", False):
                continue
            model.step(dt, self)
        self.time += dt
        self._slow_pending += dt
        temperature_c = getattr(self.flask, "temperature_c", None)
        if temperature_c is not None:
            self._slow_heat_c_s += temperature_c * dt
        if self._slow_pending >= self._slow_window:
            self._step_slow()

    def _step_slow(self) -> None:
        dt, self._slow_pending = self._slow_pending, 0.0
        heat, self._slow_heat_c_s = self._slow_heat_c_s, 0.0
        if dt <= 0:
            return
        if getattr(self.flask, "temperature_c", None) is not None:
            self.mean_flask_temperature_c = heat / dt
        window = self.slow_max_dt_s
        for model in self._models.values():
            if getattr(model, "slow", False):
                model.step(dt, self)
                preferred = getattr(model, "preferred_dt_s", None)
                if preferred is not None:
                    window = min(window, preferred)
        if self.slow_max_dt_s > self.slow_dt_s:
            self._slow_window = max(self.slow_dt_s, window)
