"""Skipped frames end to end (issue 16), in a simulated hutch session with the jumping clock:
the world's clock is made to leap during the nucleation window (the simulator's back door
``WorldClock.advance``: the machine stalled while its clock went on), so frames really miss
their time, at world times that do not depend on the machine's load. Software-triggered
frames are skipped, a detector-timed sequence starts them late; either way the session shows
one warning line with the count, the stop document and the end-of-run summary say how many
frames missed their time and why, and the run reads "success but INCOMPLETE".
Real RunEngine, simulators, catalog, live analysis and session display."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from event_model import DocumentRouter

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

from fast_session import fast_session  # noqa: E402
from ncsynth.plans.frame_account import LATE_REASON, SKIPPED_REASON  # noqa: E402

SPACING_S = 0.5
OFFSETS_S = [SPACING_S * i for i in range(1, 25)]  # frames 0-23 at 0.5-12 s after injection
EARLY = sum(offset < 10 for offset in OFFSETS_S)  # frames of the nucleation window


class Stalls(DocumentRouter):
    """A RunEngine subscriber: once the frame of the ``primary`` stream started at t0 + a key
    of ``leaps`` (s; t0: piston A's firing) is emitted (as an event, or in the event page of
    a detector-timed sequence's collect), the world's clock leaps to t0 + its value."""

    def __init__(self, clock, leaps: dict):
        super().__init__()
        self.clock, self.leaps, self.streams, self.t0 = clock, leaps, {}, None

    def descriptor(self, doc):
        self.streams[doc["uid"]] = doc.get("name")

    def event(self, doc):
        if self.streams.get(doc["descriptor"]) == "injection":
            self.t0 = doc["data"]["injector_fire_time_a"]
        elif self.streams.get(doc["descriptor"]) == "primary":
            started = min(doc["timestamps"].values()) - self.t0  # the frame's start
            for after_s, to_s in self.leaps.items():
                if abs(started - after_s) < 1e-3:
                    self.clock.advance(self.t0 + to_s - self.clock.now())


def _stalled_synthesis(tmp_path, caplog, acquisition: str, leaps: dict):
    """Run the short protocol in a fresh session with ``leaps``; return the catalog's run,
    the frames' starts after injection (s), the warnings logged by the plans, the session's
    end-of-run summary and what the session printed."""
    with fast_session(tmp_path) as (ns, shown):
        RE, sim = ns["RE"], ns["sim"]
        RE.subscribe(Stalls(sim.clock, leaps))
        recipe = ns["Recipe"](operator="t", sample="stalled", reaction_time_s=10,
                              cd_initial_molar=round(sim.cd_initial_molar(), 6))
        with caplog.at_level(logging.WARNING, logger="ncsynth.plans"):
            RE(ns["hot_injection"](ns["heater"], ns["injector"], ns["detector"], recipe,
                                   n_background=2, timer=ns["timer"], schedule_s=OFFSETS_S,
                                   acquisition=acquisition))
        run = ns["cat"][-1]
        starts = run["primary"].read()[f"{ns['detector'].name}_frame_time"].values \
            - run["injection"].read()["injector_fire_time_a"].values[0]
        warnings = [r.getMessage() for r in caplog.records if r.name.startswith("ncsynth.plans")]
        return run.metadata["stop"], starts, warnings, ns["end_of_run"].last, shown.getvalue()


def test_software_frames_skipped_in_the_nucleation_window_are_counted_said_once_and_reported(
        tmp_path, caplog):
    # after the frames started at 1 s and 6 s the clock leaps to 4.25 s and 8.25 s: frames
    # 2-6 and 12-14 are skipped (their successors were due at 2-4 s and 7-8 s), frames 7
    # (due at 4 s) and 15 (8 s) are taken at once, late
    stop, starts, warnings, summary, text = _stalled_synthesis(
        tmp_path, caplog, "software", {1.0: 4.25, 6.0: 8.25})
    skipped, late = [2, 3, 4, 5, 6, 12, 13, 14], {7: 4.25, 15: 8.25}
    taken = len(OFFSETS_S) - len(skipped)
    reason = SKIPPED_REASON.format(missing=len(skipped), planned=len(OFFSETS_S))
    assert stop["exit_status"] == "success" and stop["reason"] == reason
    assert stop["num_events"]["primary"] == taken
    expected = [late.get(i, offset) for i, offset in enumerate(OFFSETS_S) if i not in skipped]
    assert list(starts) == pytest.approx(expected, abs=1e-3)
    # one warning line with the count (the second gap's is held back, counted in the summary)
    assert len(warnings) == 1 and warnings[0].startswith("skipped 5 frames (2-6):")
    assert summary["frames"] == taken
    assert summary["frames_skipped"] == reason + "; 1 further warnings held back"
    assert summary["nucleation_window"].startswith(
        f"LOST: {len(skipped)} of the {EARLY} frames of the first 10 s after injection")
    assert f"success but INCOMPLETE: the nucleation window was lost, {taken} frames" in text
    assert f"skipped  {reason}" in text


def test_detector_timed_frames_started_late_are_counted_as_missed_the_same_way(tmp_path,
                                                                               caplog):
    # the frame started at 1 s is collected at the next frame's mid-exposure (1.54 s), and the
    # clock leaps to 4.25 s: what was due since is reached in its order, each once the process
    # is quiet again (the clock's back door). The exposure started at 1.5 s ends first, late;
    # the timing system's pulse due at 2 s then starts a frame at 4.25 s, and its pulses due at
    # 2.5-4 s, fired right after, find the detector busy with it and take no frame (as a
    # detector drops triggers while busy); the next, at 4.5 s, takes one. The same every run.
    stop, starts, warnings, summary, text = _stalled_synthesis(
        tmp_path, caplog, "detector", {1.0: 4.25})
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == len(OFFSETS_S) - 4
    assert list(starts[:5]) == pytest.approx([0.5, 1.0, 1.5, 4.25, 4.5], abs=1e-3), starts
    assert list(starts[4:]) == pytest.approx(OFFSETS_S[8:], abs=1e-3), starts
    frames_in_slot, _ = np.histogram(starts, bins=[*(np.array(OFFSETS_S) - 1e-4), np.inf])
    missed = int(np.sum(frames_in_slot == 0))
    assert missed == 4  # the slots of 2-3.5 s (the frame started at 4.25 s lands in the 4 s one)
    reason = LATE_REASON.format(missing=missed, planned=len(OFFSETS_S))
    assert stop["reason"] == reason
    assert warnings == [reason]  # one line, at the run's end; no per-reading skips
    assert summary["frames_skipped"] == reason
    assert summary["nucleation_window"].startswith(f"LOST: {missed} of the {EARLY} frames")
    assert "success but INCOMPLETE: the nucleation window was lost" in text
