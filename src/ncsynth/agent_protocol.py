"""What a run-to-run campaign (issue 19, :mod:`ncsynth.run_agent`) holds fixed from one
synthesis to the next, and what it refuses before anything is queued.

Light on purpose (the kernel's validation only; bluesky-queueserver-api is imported when a
queue item is built): ``ncsynth agent`` refuses a bad campaign in one line with it, before it
imports bluesky, the queue server's client or the catalog (:mod:`ncsynth.command_line`).
Radii in nm, times in s, temperatures in °C.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncsynth import validation

#: The short protocol of the tests and the docs: background frame, injection at t = 0, frames
#: 5..600 s after it (geometric), 1 s exposures; the final radius is the last frame's.
SHORT_SCHEDULE_S = (0.0, 5.0, 9.0, 17.0, 32.0, 60.0, 110.0, 200.0, 360.0, 600.0)
#: A dispersion target (sigma / radius) above this is refused: a Gaussian size distribution
#: that wide is no longer a population of nanocrystals the Gaussian fit of the live analysis
#: describes (seed 000 reports 5-10 %).
MAX_DISPERSION = 0.5
#: The default tolerance on the dispersion (sigma / radius), absolute.
DISPERSION_TOLERANCE = 0.005


@dataclass(frozen=True)
class SynthesisProtocol:
    """What stays fixed from run to run: the recipe but its reaction time (and, for the
    two-knob agent, its growth temperature), the frame schedule (s after the injection) and
    the reaction times (s) and growth temperatures (°C) the agent may choose between."""

    operator: str = "run-to-run agent"
    sample: str = "simulated CdSe"
    injection_temperature_c: float = 290.0
    growth_temperature_c: float = 260.0
    schedule_s: tuple[float, ...] = SHORT_SCHEDULE_S
    integration_s: float = 1.0
    n_background: int = 1
    min_reaction_time_s: float = 20.0
    max_reaction_time_s: float = 580.0
    min_growth_temperature_c: float = 200.0
    max_growth_temperature_c: float = 290.0

    def check(self) -> "SynthesisProtocol":
        """ValueError naming the bad field: bounds positive, ordered, the longest before the last
        frame (the final radius is measured after the heater went off)."""
        low = validation.real("min_reaction_time_s", self.min_reaction_time_s, above=0, unit="s")
        high = validation.real("max_reaction_time_s", self.max_reaction_time_s, above=low,
                               unit="s")
        if high >= self.schedule_s[-1]:
            raise ValueError(f"max_reaction_time_s ({high} s) must end before the last frame "
                             f"({self.schedule_s[-1]} s): the final radius is read after the "
                             f"heater went off")
        return self

    def recipe(self, reaction_time_s: float, growth_temperature_c: float | None = None) -> dict:
        """The recipe's dict form (:meth:`~ncsynth.plans.Recipe.to_metadata`) for one run
        (``growth_temperature_c`` None: the protocol's)."""
        growth = self.growth_temperature_c if growth_temperature_c is None else \
            growth_temperature_c
        return {"operator": self.operator, "sample": self.sample,
                "injection_temperature_c": self.injection_temperature_c,
                "growth_temperature_c": float(growth),
                "reaction_time_s": float(reaction_time_s)}

    def item(self, reaction_time_s: float, md: dict, growth_temperature_c: float | None = None):
        """The queue item of one synthesis (devices named as in the session namespace)."""
        from bluesky_queueserver_api import BPlan

        return BPlan("hot_injection", "heater", "injector", "detector",
                     self.recipe(reaction_time_s, growth_temperature_c), timer="timer", md=md,
                     schedule_s=list(self.schedule_s), integration_s=self.integration_s,
                     n_background=self.n_background, monitor_period_s=0.0)


def check_campaign(target_radius_nm: float, protocol: SynthesisProtocol, config: dict,
                   max_runs: int, tolerance_nm: float = 0.05,
                   target_dispersion: float | None = None,
                   dispersion_tolerance: float = DISPERSION_TOLERANCE) -> None:
    """Refuse, before anything is queued, a target outside ``[steering]`` min/max_radius_nm,
    a dispersion target outside 0..``MAX_DISPERSION`` or a tolerance not above 0 (or
    above the dispersion target), growth-temperature bounds not ordered or beyond the
    heater's limit, a bad protocol or run count (ValueError, one line)."""
    steering = config["steering"]
    validation.real("target_radius_nm", target_radius_nm, minimum=steering["min_radius_nm"],
                    maximum=steering["max_radius_nm"], unit="nm")
    validation.real("tolerance_nm", tolerance_nm, above=0, unit="nm")
    validation.integer("max_runs", max_runs, minimum=1, maximum=100)
    if target_dispersion is not None:
        validation.real("target_dispersion", target_dispersion, above=0,
                        maximum=MAX_DISPERSION)
        validation.real("dispersion_tolerance", dispersion_tolerance, above=0,
                        maximum=target_dispersion)
    limit = config["heater"]["max_temperature_c"]
    for name in ("injection_temperature_c", "growth_temperature_c", "min_growth_temperature_c",
                 "max_growth_temperature_c"):
        validation.real(name, getattr(protocol, name), minimum=20, maximum=limit, unit="°C")
    validation.real("max_growth_temperature_c", protocol.max_growth_temperature_c,
                    above=protocol.min_growth_temperature_c, unit="°C")
    protocol.check()
