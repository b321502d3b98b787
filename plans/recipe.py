"""The synthesis recipe: what is in the flask and the syringes, and the protocol.

Defaults are the CdSe hot injection of seed 000 §S.1.2. A recipe is validated
before anything moves and stored in the run's start document (``md["recipe"]``),
where the analysis finds the initial Cd concentration for the yield (S2.6).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ncsynth import validation

from .schedule import MAX_DURATION_S


@dataclass(frozen=True)
class Chemical:
    """One ingredient: name and mass in grams."""

    name: str
    mass_g: float


DEFAULT_FLASK = (Chemical("TOPO", 0.81), Chemical("ODA", 2.33), Chemical("Se-TOP precursor", 3.78))
DEFAULT_SYRINGE_A = (Chemical("Cd(OA)2 precursor in ODE", 3.56),)


@dataclass(frozen=True)
class Recipe:
    """A hot-injection synthesis (temperatures in °C, times in s, concentrations in mol/L).

    ``cd_initial_molar`` is c_Cd,0 of S2.6: the Cd concentration in the flask just
    after injection (0.1 mol/L × 4.5 mL in ~16.5 mL hot mixture ≈ 0.027 mol/L, the
    [P]_i = 27 mol/m³ of Table S6.1). ``cd_second_molar`` is the Cd concentration that
    piston B adds to the flask in a double injection (§S.5), 0 when B is not fired.
    """

    operator: str
    sample: str
    flask: tuple[Chemical, ...] = DEFAULT_FLASK
    syringe_a: tuple[Chemical, ...] = DEFAULT_SYRINGE_A
    syringe_b: tuple[Chemical, ...] = ()
    cd_precursor_molar: float = 0.1
    se_precursor_molar: float = 0.69
    cd_initial_molar: float = 0.027
    cd_second_molar: float = 0.0
    injection_temperature_c: float = 290.0
    growth_temperature_c: float = 260.0
    reaction_time_s: float = 7200.0
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self, max_temperature_c: float | None = None) -> "Recipe":
        """Raise ValueError (TypeError for a value that is no number, booleans included)
        naming the first bad field; return self when all is well. The reaction time is at
        most a day (``MAX_DURATION_S``); temperatures from 20 °C to ``max_temperature_c``."""
        for name in ("operator", "sample"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"recipe.{name} must be a non-empty string, got {value!r}")
        if not self.flask:
            raise ValueError("recipe.flask must list the flask's contents")
        if not self.syringe_a:
            raise ValueError("recipe.syringe_a must list what piston A injects")
        for where in ("flask", "syringe_a", "syringe_b"):
            for chem in getattr(self, where):
                if not isinstance(chem, Chemical) or not chem.name:
                    raise ValueError(f"recipe.{where} entries must be Chemical(name, mass_g)")
                validation.real(f"recipe.{where}: mass of {chem.name!r}", chem.mass_g,
                                above=0, unit="g")
        for name in ("cd_precursor_molar", "se_precursor_molar", "cd_initial_molar"):
            validation.real(f"recipe.{name}", getattr(self, name), above=0, unit="mol/L")
        validation.real("recipe.reaction_time_s", self.reaction_time_s, above=0,
                        maximum=MAX_DURATION_S, unit="s")
        validation.real("recipe.cd_second_molar", self.cd_second_molar, minimum=0,
                        unit="mol/L")
        if self.cd_second_molar > 0 and not self.syringe_b:
            raise ValueError("recipe.cd_second_molar > 0 needs recipe.syringe_b: list what "
                             "piston B injects")
        if self.cd_initial_molar > self.cd_precursor_molar:
            raise ValueError(f"recipe.cd_initial_molar ({self.cd_initial_molar}) cannot exceed "
                             f"the syringe's cd_precursor_molar ({self.cd_precursor_molar})")
        for name in ("injection_temperature_c", "growth_temperature_c"):
            value = validation.real(f"recipe.{name}", getattr(self, name), minimum=20,
                                    unit="°C")
            if max_temperature_c is not None and value > max_temperature_c:
                raise ValueError(f"recipe.{name} = {value} °C exceeds the heater's limit "
                                 f"{max_temperature_c} °C")
        return self

    def to_metadata(self) -> dict:
        """Plain, JSON-serialisable form for the start document."""
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, md: dict) -> "Recipe":
        """Inverse of :meth:`to_metadata`."""
        md = dict(md)
        for where in ("flask", "syringe_a", "syringe_b"):
            if where in md:
                md[where] = tuple(Chemical(**c) if isinstance(c, dict) else Chemical(*c)
                                  for c in md[where])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(md) - known
        if unknown:
            raise ValueError(f"unknown recipe fields: {sorted(unknown)}")
        return cls(**md)
