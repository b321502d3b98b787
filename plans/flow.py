"""Plans of the continuous-flow reactor (seed 002): temperature grids and residence-time series.

Seed 002 varies the nucleation-chamber temperature, the growth-oven temperature (at most the
nucleation temperature, 10 °C steps, Fig. 1) and the reaction time (1.5, 4.5, 14 s, Fig. 2 and
S2), and records in-situ UV-Vis spectra and SAXS frames of the outlet at steady state.

Stubs (use them inside an open run):

* :func:`flow_conditions` — pumps to their share of the total flow (returns once they report
  pumping), both zones sent to their setpoints (their settle Statuses join ``group``).
* :func:`wait_steady` — waits for ``group`` (the :class:`~ncsynth.devices.HeatingController`
  settle: read-back inside ``tolerance_c`` for ``settle_time_s``; ``bps.mv`` is exactly this
  set-then-wait), then for ``flush_volumes`` residence volumes of the whole reactor to pass,
  on a :class:`~ncsynth.devices.DeadlineTimer` to an absolute deadline.  With the simulator's
  10 tanks in series, 3 volumes bring the outlet within 1e-5 of its steady state.
* :func:`record_point` — spectra and SAXS frames (and whatever else is read) into one stream.
* :func:`take_blanks` — dark (lamp blocked through ``block_lamp``), reference and SAXS
  background frames with the reactor still full of solvent.

Plans :func:`temperature_grid` and :func:`residence_series` are one :func:`flow_scan` each:

1. validate everything (ValueError naming the parameter) before a RunEngine runs anything;
   then, before the run opens, every zone's controller and every pump must answer
   (:func:`~ncsynth.plans.readiness.check_flow_answers`: RefusedToStart in one line);
2. open the run; pumps stopped, flow cells full of solvent (the reactor is primed with solvent
   before the plan, at the hutch as in the simulator): dark, reference, stream ``blank``;
3. preheat both zones to the first point with the pumps stopped (no precursor is spent, none
   sits in a cold reactor);
4. per point: checkpoint, conditions, steady state, ``frames_per_point`` events in stream
   ``primary``;
5. whatever ends the plan (completion, error, abort): pumps stopped, then both heaters
   :meth:`~ncsynth.devices.HeatingController.safe_off` (``finalize_wrapper``); everything
   emitted stays in the run.

Data layout: one run, the conditions in every event (``condition_index``,
``condition_nucleation_c``, ``condition_growth_c``, ``condition_residence_s``,
``condition_flow_ml_min``; nominal), next to the zones' read-backs and the pumps' state.  One
``primary`` stream replays best: one descriptor, one table with a row per event that a
replay groups by ``condition_index`` (several frames per point) or pivots onto the
nucleation × growth grid; a stream per point would spread 28 descriptors over the run.
The start document holds ``points`` (every point's conditions, in acquisition order) and
``reactor`` (volumes, limits) for reading the plan without its events.

Flow: the total flow Q (mL/min) for a reaction time τ (s) is Q = 60·(V_chamber + V_oven)/τ,
split equally between the pumps (the seed keeps the precursor ratio fixed).  Units: °C, s,
mL, mL/min.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict
from typing import Callable, Sequence

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from ncsynth import timebase
from ncsynth.devices.clock import DeadlineTimer
from ncsynth.validation import is_finite_number

from .flow_points import FlowPoint, ReactorSpec, _positive, check_points, grid_points
from .readiness import check_flow_answers
from .safety import named_failures
from .stubs import call

logger = logging.getLogger(__name__)

PRIMARY, BLANK, ZONES = "primary", "blank", "zones"
#: Residence times of the seed's series (s): SAXS at 1.5 s (Fig. 2), spectra at 4.5 s (Fig. S2)
#: and 14 s (Fig. 1).
SEED_RESIDENCE_S = (1.5, 4.5, 14.0)


class FlowCondition(Device):
    """The nominal conditions of the point being recorded, read into every event."""

    index = Cpt(Signal, value=-1, kind="hinted")
    nucleation_c = Cpt(Signal, value=math.nan, kind="normal")
    growth_c = Cpt(Signal, value=math.nan, kind="normal")
    residence_s = Cpt(Signal, value=math.nan, kind="normal")
    flow_ml_min = Cpt(Signal, value=math.nan, kind="normal")


class _Action:
    """A blocking device call returning a Status (take_dark, ...) as something to trigger, so
    the RunEngine waits on its Status (and a jumping world clock may move meanwhile)."""

    def __init__(self, name: str, action: Callable[[], Status]):
        self.name, self._action = name, action

    def trigger(self) -> Status:
        return self._action()


def _count(name: str, value, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    return value


def _check_scan(pumps, chamber, oven, spectrometer, points, reactor, flush_volumes,
                frames_per_point, n_blank, block_lamp) -> list[FlowPoint]:
    pumps = list(pumps)
    if not pumps:
        raise ValueError("pumps must hold at least one pump")
    if not isinstance(reactor, ReactorSpec):
        raise TypeError(f"reactor must be a ReactorSpec, got {type(reactor).__name__}")
    checked = check_points(points, chamber, oven, reactor, len(pumps))
    if not _positive(flush_volumes):
        raise ValueError(f"flush_volumes must be a positive number of reactor volumes, "
                         f"got {flush_volumes!r}")
    _count("frames_per_point", frames_per_point, 1)
    _count("n_blank", n_blank, 1)
    if block_lamp is None and getattr(spectrometer, "dark", None) is None:
        raise ValueError("block_lamp is None and the spectrometer holds no dark: give block_lamp "
                         "(a callable(blocked: bool)) or take a dark before the plan")
    if block_lamp is not None and not callable(block_lamp):
        raise ValueError(f"block_lamp must be a callable(blocked: bool), got {block_lamp!r}")
    return checked


# -- stubs -------------------------------------------------------------------------------------
def flow_conditions(pumps, chamber, oven, *, rate_ml_min: float, nucleation_c: float,
                    growth_c: float, group: str = ZONES):
    """Total flow ``rate_ml_min`` (split equally between ``pumps``) and both zones' setpoints.

    The pumps are waited for (running at their rate); the zones' settle Statuses join
    ``group`` for :func:`wait_steady`.  Values are checked here (ValueError) before any message.
    """
    pumps = list(pumps)
    if not _positive(rate_ml_min):
        raise ValueError(f"rate_ml_min must be a positive number, got {rate_ml_min!r}")
    for name, value in (("nucleation_c", nucleation_c), ("growth_c", growth_c)):
        if not is_finite_number(value):
            raise ValueError(f"{name} must be a finite temperature (°C), got {value!r}")
    if growth_c > nucleation_c:
        raise ValueError(f"growth_c={growth_c!r} °C must not exceed nucleation_c={nucleation_c!r} °C")
    chamber.check_setpoint(nucleation_c)
    oven.check_setpoint(growth_c)
    yield from bps.abs_set(chamber, nucleation_c, group=group)
    yield from bps.abs_set(oven, growth_c, group=group)
    share = rate_ml_min / len(pumps)
    yield from bps.mv(*[item for pump in pumps for item in (pump, share)])


def wait_steady(timer, *, rate_ml_min: float, volume_ml: float, flush_volumes: float = 3.0,
                group: str = ZONES):
    """Temperatures settled (the zones' settle Statuses in ``group``), then ``flush_volumes`` ×
    ``volume_ml`` pumped at ``rate_ml_min``: a wait to the absolute deadline
    now + 60·flush_volumes·volume_ml/rate_ml_min (s) on ``timer``."""
    for name, value in (("rate_ml_min", rate_ml_min), ("volume_ml", volume_ml),
                        ("flush_volumes", flush_volumes)):
        if not _positive(value):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    yield from bps.wait(group=group)
    deadline = timebase.now() + 60.0 * flush_volumes * volume_ml / rate_ml_min
    yield from bps.mv(timer, deadline)


def record_point(spectrometer, detector, readables=(), *, n_frames: int = 1,
                 stream: str = PRIMARY):
    """``n_frames`` events in ``stream``, each one spectrum (the spectrometer's ``averages``
    scans) and one SAXS frame acquired together, with ``readables`` read alongside."""
    _count("n_frames", n_frames, 1)
    for _ in range(n_frames):
        yield from bps.trigger_and_read([spectrometer, detector, *readables], name=stream)


def take_blanks(spectrometer, detector, readables=(), *, n_frames: int = 1,
                block_lamp: Callable[[bool], None] | None = None):
    """Dark, reference and the ``blank`` stream, with the flow cells full of solvent.

    ``block_lamp(True)`` blocks the lamp for the dark and ``block_lamp(False)`` unblocks it
    (also if the dark fails); None keeps the spectrometer's stored dark.  The reference is the
    blank cell now; ``n_frames`` events of stream ``blank`` follow (spectrum and SAXS
    background frame each), the detector staged for them alone (one file per stream).
    """
    if block_lamp is not None:
        def dark():
            yield from call(block_lamp, True)
            yield from bps.trigger(_Action(f"{spectrometer.name}_dark", spectrometer.take_dark),
                                   wait=True)

        yield from bpp.finalize_wrapper(dark(), call(block_lamp, False))
    yield from bps.trigger(_Action(f"{spectrometer.name}_reference", spectrometer.take_reference),
                           wait=True)
    yield from bpp.stage_wrapper(
        record_point(spectrometer, detector, readables, n_frames=n_frames, stream=BLANK),
        [spectrometer, detector])


def make_flow_safe(pumps, chamber, oven):
    """Stop every pump, then switch both heaters off (``safe_off``).

    Every action is tried even if another fails, all in one plan step: a Status failing
    meanwhile (the RunEngine throws it in at the next message) cannot skip one.  A zone's
    settle still pending (an error struck between setting it and waiting for it) is first
    ended with ``stop(success=True)``, as the RunEngine ends the devices it moved: failing it,
    which ``safe_off`` alone does, would throw a second error into this clean-up.
    """
    zones = (chamber, oven)
    actions = [*(pump.stop for pump in pumps),
               *(functools.partial(zone.stop, success=True) for zone in zones),
               *(zone.safe_off for zone in zones)]
    try:
        yield from bps.null()
    finally:
        for action in actions:
            try:
                action()
            except Exception:  # the others must still run; the original error wins
                logger.exception("could not complete %s while making the reactor safe", action)


# -- plans -------------------------------------------------------------------------------------
def flow_scan(pumps, chamber, oven, spectrometer, detector, points: Sequence[FlowPoint], *,
              reactor: ReactorSpec = ReactorSpec(), flush_volumes: float = 3.0,
              frames_per_point: int = 1, n_blank: int = 1,
              block_lamp: Callable[[bool], None] | None = None,
              timer: DeadlineTimer | None = None, plan_name: str = "flow_scan",
              md: dict | None = None):
    """Record ``points`` (:class:`FlowPoint`, in this order) at steady state in one run.

    See the module docstring for the procedure and the data layout; every argument is
    validated when this function is called (ValueError), before anything moves.
    """
    pumps = list(pumps)
    points = _check_scan(pumps, chamber, oven, spectrometer, list(points), reactor, flush_volumes,
                         frames_per_point, n_blank, block_lamp)
    timer = timer or DeadlineTimer(name="timer")
    condition = FlowCondition(name="condition")
    readables = [condition, chamber, oven, *pumps]
    metadata = {
        "plan_name": plan_name,
        "num_points": len(points) * frames_per_point,
        "points": [asdict(p) for p in points],
        "reactor": asdict(reactor),
        "flush_volumes": flush_volumes, "frames_per_point": frames_per_point,
        "n_blank": n_blank,
        "detectors": [spectrometer.name, detector.name],
        "hints": {"dimensions": [([condition.index.name], PRIMARY)]},
        **(md or {}),
    }

    def measure_points():
        for index, point in enumerate(points):
            rate = reactor.flow_ml_min(point.residence_s)
            yield from bps.checkpoint()  # a resumed pause redoes the whole point
            yield from bps.mv(condition.index, index, condition.nucleation_c, point.nucleation_c,
                              condition.growth_c, point.growth_c,
                              condition.residence_s, point.residence_s,
                              condition.flow_ml_min, rate)
            logger.info("point %d/%d: %s at %.3g mL/min", index + 1, len(points), point, rate)
            yield from flow_conditions(pumps, chamber, oven, rate_ml_min=rate,
                                       nucleation_c=point.nucleation_c, growth_c=point.growth_c)
            yield from wait_steady(timer, rate_ml_min=rate, volume_ml=reactor.total_volume_ml,
                                   flush_volumes=flush_volumes)
            yield from record_point(spectrometer, detector, readables, n_frames=frames_per_point)

    def blanks_then_points():
        yield from take_blanks(spectrometer, detector, readables, n_frames=n_blank,
                               block_lamp=block_lamp)
        yield from bps.mv(chamber, points[0].nucleation_c, oven, points[0].growth_c)
        yield from bpp.stage_wrapper(measure_points(), [spectrometer, detector, *pumps])

    @bpp.run_decorator(md=metadata)
    def protocol():  # a failed Status ends the run naming the device and why (a pump's ?OOR)
        yield from named_failures(blanks_then_points())

    return bpp.pchain(check_flow_answers(pumps, (chamber, oven)),
                      bpp.finalize_wrapper(protocol(), make_flow_safe(pumps, chamber, oven)))


def temperature_grid(pumps, chamber, oven, spectrometer, detector, *,
                     nucleation_c: Sequence[float], growth_c: Sequence[float],
                     residence_s: float = 14.0, **options):
    """Nucleation × growth temperature grid (growth <= nucleation) at one reaction time.

    ``nucleation_c``, ``growth_c``: the temperatures (°C) of each axis, e.g.
    ``range(240, 301, 10)``; the points are :func:`grid_points` (serpentine order).
    ``residence_s``: reaction time (s; seed Fig. 1: 14 s).  ``options`` go to :func:`flow_scan`.
    """
    points = grid_points(nucleation_c, growth_c, residence_s)
    return flow_scan(pumps, chamber, oven, spectrometer, detector, points,
                     plan_name="temperature_grid", **options)


def residence_series(pumps, chamber, oven, spectrometer, detector, *, nucleation_c: float,
                     growth_c: float, residence_s: Sequence[float] = SEED_RESIDENCE_S, **options):
    """Reaction times ``residence_s`` (s, in the order given) at fixed zone temperatures (°C)."""
    try:
        times = [float(t) for t in residence_s]
    except (TypeError, ValueError):
        raise ValueError(f"residence_s must be a sequence of seconds, got {residence_s!r}") from None
    points = [FlowPoint(nucleation_c, growth_c, t) for t in times]
    return flow_scan(pumps, chamber, oven, spectrometer, detector, points,
                     plan_name="residence_series", **options)
