"""Bluesky plans for in-situ SAXS of nanocrystal synthesis.

The names below load on first use (PEP 562): the plans bring bluesky, ophyd and the
devices, while the recipe, the frame schedule and the argument checks
(:mod:`ncsynth.plans.checks`) are pure, so the command line checks a plan's arguments
without them. ``hot_injection`` and ``double_injection`` name both a plan and the module
defining it; the package's attribute is always the plan.
"""

import importlib
import sys
import types

#: public name -> the submodule defining it
_SOURCES = {
    "double_injection": "double_injection", "hot_injection": "hot_injection",
    "make_safe": "safety", "Chemical": "recipe", "Recipe": "recipe",
    "check_schedule": "schedule", "frame_schedule": "schedule",
    "steered_synthesis": "steering",
    **{name: "stubs" for name in ("background_frames", "declare_frames",
                                  "detector_timed_acquisition", "end_reaction", "inject",
                                  "preheat", "record_cooldown", "take_frame",
                                  "timed_acquisition")},
}

__all__ = list(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    setattr(sys.modules[__name__], name, value)
    return value


class _Plans(types.ModuleType):
    """Keeps a plan, not its module, under the plan's name: the import system sets
    ``ncsynth.plans.hot_injection`` to the submodule when it first loads it."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _SOURCES.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Plans
