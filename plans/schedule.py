"""Geometric frame spacing of the in-situ SAXS experiment (seed 000 §S.1.4)."""

from __future__ import annotations

import numpy as np

from ncsynth import validation

#: Longest stretch a synthesis plan may schedule, s: the reaction time, the cool-down, the
#: delay of a second injection and a frame schedule are each at most a day.
MAX_DURATION_S = 24 * 3600.0
#: Most frames in one schedule (~0.9 MB each uncompressed: 20 000 frames ~ 18 GB).
MAX_FRAMES = 20_000
#: Longest exposure or dead time of one frame, s.
MAX_EXPOSURE_S = 3600.0


def frame_schedule(n_frames: int = 575, integration_s: float = 0.075,
                   dead_time_s: float = 0.022, ratio: float = 1.015) -> np.ndarray:
    """Frame start times in seconds after injection.

    Frame 1 starts at t = 0 and frame n+1 starts ``t_i + t_w·ratio^(n-1)`` after
    frame n (§S.1.4: integration time t_i = 75 ms, initial waiting/dead time
    t_w = 22 ms, ratio 1.015, 575 frames): 97 ms apart at first, ~111 s apart at
    the end, ~7590 s (2.1 h) in all for the defaults.

    Raises TypeError/ValueError for a count that is no integer in 1..``MAX_FRAMES``,
    non-positive or non-finite times, a ratio below 1, or a schedule longer than
    ``MAX_DURATION_S``.
    """
    n_frames = validation.integer("n_frames", n_frames, minimum=1, maximum=MAX_FRAMES)
    integration_s = validation.real("integration_s", integration_s, above=0,
                                    maximum=MAX_EXPOSURE_S, unit="s")
    dead_time_s = validation.real("dead_time_s", dead_time_s, above=0, maximum=MAX_EXPOSURE_S,
                                  unit="s")
    ratio = validation.real("ratio", ratio, minimum=1)
    spacing = _gaps(n_frames, integration_s, dead_time_s, ratio)
    if not np.all(np.isfinite(spacing)):
        raise ValueError(f"ratio={ratio} over {n_frames} frames overflows the schedule")
    times = np.concatenate(([0.0], np.cumsum(spacing)))
    _check_span(times, f"n_frames={n_frames} at ratio={ratio}")
    return times


def frames_to_reach(time_s: float, integration_s: float = 0.075, dead_time_s: float = 0.022,
                    ratio: float = 1.015) -> int | None:
    """The fewest frames of :func:`frame_schedule` (same spacing arguments) whose last frame
    starts at least ``time_s`` s after injection; None if no schedule of at most
    ``MAX_FRAMES`` frames within ``MAX_DURATION_S`` does (§S.1.4 defaults: 60 s needs 230
    frames, 7200 s 572)."""
    time_s = validation.real("time_s", time_s, minimum=0, unit="s")
    starts = np.concatenate(([0.0], np.cumsum(_gaps(MAX_FRAMES, integration_s, dead_time_s,
                                                    float(ratio)))))
    index = int(np.searchsorted(starts, time_s))
    if index >= MAX_FRAMES or starts[index] > MAX_DURATION_S:
        return None
    return index + 1


def _gaps(n_frames: int, integration_s: float, dead_time_s: float, ratio: float) -> np.ndarray:
    """The ``n_frames - 1`` gaps between frame starts, s (§S.1.4); inf where they overflow."""
    with np.errstate(over="ignore"):
        return integration_s + dead_time_s * ratio ** np.arange(n_frames - 1, dtype=float)


def _check_span(times: np.ndarray, what: str) -> None:
    if times[-1] > MAX_DURATION_S:
        raise ValueError(f"frame schedule ({what}): the last frame starts {times[-1]:.4g} s "
                         f"after injection, later than {MAX_DURATION_S:g} s (a day)")


def check_schedule(start_times_s, exposure_s: float, readout_s: float = 0.0) -> np.ndarray:
    """Validate user-given frame start times (s after injection) for an exposure.

    Start times must be finite, non-negative, strictly increasing, at least
    ``exposure_s + readout_s`` apart, at most ``MAX_FRAMES`` and within
    ``MAX_DURATION_S``. Returns them as a float array.
    """
    exposure_s = validation.real("exposure_s", exposure_s, above=0, maximum=MAX_EXPOSURE_S,
                                 unit="s")
    readout_s = validation.real("readout_s", readout_s, minimum=0, maximum=MAX_EXPOSURE_S,
                                unit="s")
    times = np.asarray(start_times_s, dtype=float)
    if times.ndim != 1 or not 1 <= times.size <= MAX_FRAMES:
        raise ValueError(f"a frame schedule must be a 1-D sequence of 1 to {MAX_FRAMES} "
                         f"start times, got shape {times.shape}")
    if not np.all(np.isfinite(times)) or times[0] < 0:
        raise ValueError("frame start times must be finite and >= 0 s after injection")
    gaps = np.diff(times)
    if gaps.size and gaps.min() < exposure_s + readout_s:
        i = int(np.argmin(gaps))
        raise ValueError(
            f"frames {i + 1} and {i + 2} start {gaps[i] * 1e3:.1f} ms apart, less than the "
            f"exposure {exposure_s * 1e3:.1f} ms + readout {readout_s * 1e3:.1f} ms")
    _check_span(times, f"{times.size} start times")
    return times
