"""A command's plan runs with the heap it started with out of the garbage collector's sight
(ncsynth.heap): full collections during the plan look only at what the plan made."""

import gc

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky.utils import RunEngineInterrupted

from ncsynth import run_engine
from ncsynth.heap import frozen_heap
from ncsynth.termination import run_to_the_end


class _Cycle:
    def __init__(self):
        self.me = self


def _tracked(obj) -> bool:
    """Whether a collection of the oldest generation would look at ``obj``."""
    return any(o is obj for o in gc.get_objects(generation=2))


def test_what_the_process_held_is_left_out_of_collections_until_the_block_ends():
    before = _Cycle()
    gc.collect()  # `before` now sits in the oldest generation
    assert _tracked(before)
    cycle_id = id(_Cycle())  # garbage, a cycle: only a collection frees it
    with frozen_heap():
        assert not _tracked(before)  # frozen
        made = _Cycle()
        gc.collect()
        assert _tracked(made)  # what the block makes is collected as usual
        garbage = [o for o in gc.get_objects() if id(o) == cycle_id]
        assert not garbage  # frozen garbage is not in sight either
    assert gc.get_freeze_count() == 0
    assert _tracked(before)
    gc.collect()
    assert not any(id(o) == cycle_id and isinstance(o, _Cycle) for o in gc.get_objects())


def test_a_command_runs_its_plan_with_a_frozen_heap_and_thaws_it_after():
    seen = []

    def plan():
        seen.append(gc.get_freeze_count())
        yield from bps.null()

    RE = run_engine.RunEngine({})  # what the dry runs give run_to_the_end
    assert run_to_the_end(RE, plan(), what="test", safe="nothing to make safe") == (None, None)
    assert seen and seen[0] > 1000  # the imports, the RunEngine, ... at least
    assert gc.get_freeze_count() == 0


def test_blocks_nest_and_the_heap_thaws_when_the_outermost_ends():
    before = _Cycle()
    gc.collect()
    with frozen_heap():
        with frozen_heap():
            pass
        assert not _tracked(before)  # still frozen: the outer block goes on
    assert gc.get_freeze_count() == 0
    assert _tracked(before)


def test_ncsynths_run_engine_runs_and_resumes_a_plan_frozen_and_thaws_at_the_pause():
    """A session's plans: frozen while the RunEngine runs them, resumes them or runs the
    clean-up of an abort; thawed while it is paused at the prompt and after."""
    seen = {"run": [], "clean-up": []}

    def plan():
        def steps():
            seen["run"].append(gc.get_freeze_count())
            yield from bps.checkpoint()
            yield from bps.pause()
            seen["run"].append(gc.get_freeze_count())
            yield from bps.checkpoint()
            yield from bps.pause()

        def clean_up():
            seen["clean-up"].append(gc.get_freeze_count())
            yield from bps.null()

        return (yield from bpp.run_wrapper(bpp.finalize_wrapper(steps(), clean_up())))

    RE = run_engine.RunEngine({}, context_managers=[])
    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    assert gc.get_freeze_count() == 0  # paused at the prompt: thawed
    with pytest.raises(RunEngineInterrupted):
        RE.resume()
    assert gc.get_freeze_count() == 0
    RE.abort("test")
    assert gc.get_freeze_count() == 0
    assert len(seen["run"]) == 2 and min(seen["run"]) > 1000  # the imports, ... at least
    assert len(seen["clean-up"]) == 1 and seen["clean-up"][0] > 1000
