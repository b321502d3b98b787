"""Skipped frames (issue 16): the stop document says how many and why
(plans.stubs.run_accounting_frames, in a real RunEngine), the summary says which (a lost
nucleation window, plans.frame_account.FrameAccount fed a run's documents) and does not read
as a clean success (summary_text); frames a detector-timed sequence started late, after the
next one was due, are counted the same way (their slots were missed)."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from event_model import compose_run
from ophyd.sim import det

from ncsynth.plans.frame_account import LATE_REASON, SKIPPED_REASON, FrameAccount
from ncsynth.plans.stubs import PRIMARY, run_accounting_frames
from ncsynth.summary_text import format_summary


def _frames(n):
    for _ in range(n):
        yield from bps.trigger_and_read([det], name=PRIMARY)
        yield from bps.trigger_and_read([det], name="temperature")  # not a frame


def _stop(plan_body):
    stops = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    RE(run_accounting_frames(plan_body, {"num_points": 5}))
    return stops[-1]


def test_the_stop_document_counts_the_frames_skipped_and_says_why():
    stop = _stop(_frames(3))
    assert stop["exit_status"] == "success" and stop["num_events"][PRIMARY] == 3
    assert stop["reason"] == SKIPPED_REASON.format(missing=2, planned=5)
    assert stop["reason"].startswith("2 of 5 frames skipped: their deadlines had passed")
    assert _stop(_frames(5))["reason"] == ""


def test_a_failing_run_keeps_its_error_as_the_reason():
    def failing():
        yield from _frames(1)
        raise RuntimeError("heater: no answer")

    stops = []
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    with pytest.raises(RuntimeError, match="no answer"):
        RE(run_accounting_frames(failing(), {"num_points": 5}))
    assert stops[-1]["exit_status"] == "fail" and stops[-1]["reason"] == "heater: no answer"


def _run_documents(frame_offsets, taken, reason="", acquisition="software", decision=None):
    """A synthesis run's documents: fired at t0 = 1000 s, frames at t0 + the ``taken`` offsets;
    ``decision``: (offset, action) of a steering decision (stream ``agent``) after the frames."""
    bundle = compose_run(metadata={"num_points": len(frame_offsets), "piston": "A",
                                   "frame_offsets_s": frame_offsets, "acquisition": acquisition})
    yield "start", bundle.start_doc
    injection = bundle.compose_descriptor(name="injection", data_keys={
        "injector_fire_time_a": {"dtype": "number", "shape": [], "source": "sim"}})
    primary = bundle.compose_descriptor(name="primary", data_keys={
        "saxs_stats": {"dtype": "number", "shape": [], "source": "sim"}})
    yield "descriptor", injection.descriptor_doc
    yield "descriptor", primary.descriptor_doc
    yield "event", injection.compose_event(data={"injector_fire_time_a": 1000.0},
                                           timestamps={"injector_fire_time_a": 1000.0})
    for offset in taken:
        yield "event", primary.compose_event(data={"saxs_stats": 1.0},
                                             timestamps={"saxs_stats": 1000.0 + offset})
    if decision is not None:
        keys = {"agent_action": {"dtype": "string", "shape": [], "source": "sim"},
                "agent_world_time": {"dtype": "number", "shape": [], "source": "sim"}}
        agent = bundle.compose_descriptor(name="agent", data_keys=keys)
        yield "descriptor", agent.descriptor_doc
        data = {"agent_action": decision[1], "agent_world_time": 1000.0 + decision[0]}
        yield "event", agent.compose_event(data=data, timestamps=dict.fromkeys(data, 1000.0))
    yield "stop", bundle.compose_stop(reason=reason)  # counts the events per stream


def test_a_run_that_lost_the_nucleation_window_is_not_a_clean_success():
    offsets = [0.0, 1.0, 2.5, 6.0, 12.0, 30.0, 60.0]
    reason = SKIPPED_REASON.format(missing=3, planned=7)
    account = FrameAccount()
    for name, doc in _run_documents(offsets, [0.0, 12.0, 30.0, 60.0], reason):
        account(name, doc)
    assert account.result == {"frames_skipped": reason, "nucleation_window": (
        "LOST: 3 of the 4 frames of the first 10 s after injection not taken in their time; the "
        "98 % times need them")}
    text = format_summary({"uid": "u", "exit_status": "success", "frames": 4, **account.result})
    lines = dict(line.strip().split("  ", 1) for line in text.splitlines())
    assert lines["run"] == "u  success but INCOMPLETE: the nucleation window was lost, 4 frames"
    assert lines["skipped"] == reason and lines["nucleation"].startswith("LOST: 3 of the 4")


def test_frames_skipped_after_the_window_are_said_and_a_complete_run_says_nothing():
    offsets = [0.0, 1.0, 2.5, 6.0, 12.0, 30.0, 60.0]
    account = FrameAccount()
    for name, doc in _run_documents(offsets, offsets[:5], SKIPPED_REASON.format(missing=2,
                                                                                 planned=7)):
        account(name, doc)
    assert list(account.result) == ["frames_skipped"]
    text = format_summary({"uid": "u", "exit_status": "success", "frames": 5, **account.result})
    assert text.splitlines()[0].strip() == "run  u  success with frames skipped, 5 frames"
    for name, doc in _run_documents(offsets, offsets):
        account(name, doc)
    assert account.result == {}


def test_frames_a_detector_timed_sequence_started_late_or_dropped_count_as_missed_slots():
    """A stall from 0.5 s to 7 s: the sequence started frames 1-3 late, back to back at 7.0,
    7.1 and 7.2 s (slot 3, 6-12 s): slots 1 and 2 (1-6 s) had no frame start."""
    offsets = [0.0, 1.0, 2.5, 6.0, 12.0, 30.0, 60.0]
    late = [0.0, 7.0, 7.1, 7.2, 12.0, 30.0, 60.0]
    lost = ("LOST: 2 of the 4 frames of the first 10 s after injection not taken in their "
            "time; the 98 % times need them")
    account = FrameAccount()
    for name, doc in _run_documents(offsets, late, acquisition="detector"):
        if name == "stop":  # what the plan puts in the stop document
            assert account.reason() == LATE_REASON.format(missing=2, planned=7)
        account(name, doc)
    assert account.result == {"frames_skipped": LATE_REASON.format(missing=2, planned=7),
                              "nucleation_window": lost}
    for name, doc in _run_documents(offsets, late[:5], acquisition="detector"):
        account(name, doc)  # the sequence also dropped the last two frames
    assert account.result["frames_skipped"] == LATE_REASON.format(missing=4, planned=7)
    on_time = [0.0, 1.001, 2.5, 6.0, 12.0, 30.0, 60.0]  # a start a little late is in its slot
    for name, doc in _run_documents(offsets, on_time, acquisition="detector"):
        account(name, doc)
    assert account.result == {}


def test_a_steering_decision_that_ends_the_growth_ends_the_schedule():
    """The steering (plans.steering) stopped the growth at 7 s: the slots after it were not
    planned any more, so a run that took every frame until then skipped none; one that
    missed a slot before the decision did, counted among the slots until the decision."""
    offsets = [0.0, 1.0, 2.5, 6.0, 12.0, 30.0, 60.0]
    account = FrameAccount()
    for name, doc in _run_documents(offsets, offsets[:4], decision=(7.0, "heater off (safe state)")):
        account(name, doc)
    assert account.result == {}
    for name, doc in _run_documents(offsets, [0.0, 1.0, 6.0], decision=(7.0, "heater off")):
        account(name, doc)
    assert account.result["frames_skipped"] == SKIPPED_REASON.format(missing=1, planned=4)
    refused = "refused: piston B spent; not fired"  # a decision that did not act ends nothing
    for name, doc in _run_documents(offsets, offsets[:4], decision=(7.0, refused)):
        account(name, doc)
    assert account.result["frames_skipped"] == SKIPPED_REASON.format(missing=3, planned=7)
