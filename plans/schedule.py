"""Geometric frame spacing of the in-situ SAXS experiment (seed 000 §S.1.4)."""

from __future__ import annotations

import math

import numpy as np


def frame_schedule(n_frames: int = 575, integration_s: float = 0.075,
                   dead_time_s: float = 0.022, ratio: float = 1.015) -> np.ndarray:
    """Frame start times in seconds after injection.

    Frame 1 starts at t = 0 and frame n+1 starts ``t_i + t_w·ratio^(n-1)`` after
    frame n (§S.1.4: integration time t_i = 75 ms, initial waiting/dead time
    t_w = 22 ms, ratio 1.015, 575 frames): 97 ms apart at first, ~111 s apart at
    the end, ~7590 s (2.1 h) in all for the defaults.

    Raises ValueError for fewer than one frame, non-positive or non-finite times,
    a ratio below 1, or a schedule whose spacing cannot hold the exposure (the
    dead time is what the detector needs to read out between frames).
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)):
        raise TypeError(f"n_frames must be an integer, got {n_frames!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    for name, value in (("integration_s", integration_s), ("dead_time_s", dead_time_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1):
        raise ValueError(f"ratio must be a finite number >= 1, got {ratio!r}")
    with np.errstate(over="ignore"):
        spacing = integration_s + dead_time_s * ratio ** np.arange(n_frames - 1, dtype=float)
    if not np.all(np.isfinite(spacing)):
        raise ValueError(f"ratio={ratio} over {n_frames} frames overflows the schedule")
    return np.concatenate(([0.0], np.cumsum(spacing)))


def check_schedule(start_times_s, exposure_s: float, readout_s: float = 0.0) -> np.ndarray:
    """Validate user-given frame start times (s after injection) for an exposure.

    Start times must be finite, non-negative, strictly increasing and at least
    ``exposure_s + readout_s`` apart. Returns them as a float array.
    """
    times = np.asarray(start_times_s, dtype=float)
    if times.ndim != 1 or times.size == 0:
        raise ValueError("a frame schedule must be a non-empty 1-D sequence of start times")
    if not np.all(np.isfinite(times)) or times[0] < 0:
        raise ValueError("frame start times must be finite and >= 0 s after injection")
    gaps = np.diff(times)
    if gaps.size and gaps.min() < exposure_s + readout_s:
        i = int(np.argmin(gaps))
        raise ValueError(
            f"frames {i + 1} and {i + 2} start {gaps[i] * 1e3:.1f} ms apart, less than the "
            f"exposure {exposure_s * 1e3:.1f} ms + readout {readout_s * 1e3:.1f} ms")
    return times
