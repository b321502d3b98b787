"""Bluesky plans for in-situ SAXS of nanocrystal synthesis."""

from .double_injection import double_injection
from .hot_injection import hot_injection
from .safety import make_safe
from .recipe import Chemical, Recipe
from .schedule import check_schedule, frame_schedule
from .stubs import (background_frames, declare_frames, detector_timed_acquisition, end_reaction, inject, preheat,
                    record_cooldown, take_frame, timed_acquisition)

__all__ = ["double_injection", "hot_injection", "make_safe", "Chemical", "Recipe", "check_schedule", "frame_schedule",
           "background_frames", "declare_frames", "detector_timed_acquisition", "end_reaction", "inject", "preheat",
           "record_cooldown", "take_frame", "timed_acquisition"]
