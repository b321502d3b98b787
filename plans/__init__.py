"""Bluesky plans for in-situ SAXS of nanocrystal synthesis."""

from .hot_injection import hot_injection, make_safe
from .recipe import Chemical, Recipe
from .schedule import check_schedule, frame_schedule
from .stubs import background_frames, detector_timed_acquisition, end_reaction, inject, preheat, record_cooldown, timed_acquisition

__all__ = ["hot_injection", "make_safe", "Chemical", "Recipe", "check_schedule", "frame_schedule",
           "background_frames", "detector_timed_acquisition", "end_reaction", "inject", "preheat", "record_cooldown",
           "timed_acquisition"]
