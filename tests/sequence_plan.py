"""A plan the detector tests share (imported by test modules; holds no tests)."""

from bluesky import plan_stubs as bps


def whole_sequence(detector):
    """One run: stage, kick off the prepared sequence, wait for it, collect it all, unstage."""
    yield from bps.open_run()
    yield from bps.stage(detector)
    yield from bps.declare_stream(detector, name="primary", collect=True)
    yield from bps.kickoff(detector, wait=True)
    yield from bps.complete(detector, wait=True)
    yield from bps.collect(detector, name="primary")
    yield from bps.unstage(detector)
    yield from bps.close_run()
