"""The RunEngine ncsynth runs its plans in: bluesky's, with an abort's reason kept in the run.

bluesky 1.15 records ``RE.abort(reason)`` in the stop document only for a run the plan left
open. A plan that opens its run with ``bluesky.preprocessors.run_wrapper`` (``run_decorator``,
every ncsynth plan) closes it itself when the abort reaches it, with
``close_run(exit_status="abort")`` and no reason: the stop document says ``reason: ""`` however
the run was ended (Ctrl-C, SIGTERM, SIGHUP, a user's ``RE.abort("...")``).

:class:`RunEngine` keeps the reason given to :meth:`~RunEngine.abort` and puts it into a
``close_run`` that ends an aborted run without one. An abort without a reason (``RE.abort()``
at the session prompt) is recorded as :data:`NO_REASON`.

It also runs plans (``RE(plan)``, ``resume``, and the clean-up that ``abort`` and ``stop`` run)
with the heap frozen (:func:`~ncsynth.heap.frozen_heap`): a session's process that hosts the
simulated instruments does not stop them for a long garbage collection during a plan; the heap
thaws while the RunEngine is idle or paused at the prompt.
"""

from __future__ import annotations

from bluesky import RunEngine as _BlueskyRunEngine
from bluesky.utils import Msg

from ncsynth.heap import frozen_heap

#: the stop document's reason for ``RE.abort()`` called without one
NO_REASON = "aborted by RE.abort() (no reason given)"


class RunEngine(_BlueskyRunEngine):
    """bluesky's :class:`~bluesky.RunEngine`; an aborted run's stop document carries the
    reason given to :meth:`abort` (see the module docstring). Same arguments as bluesky's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._abort_reason = ""
        self.register_command("close_run", self._close_run_with_reason)

    def __call__(self, *args, **kwargs):
        self._abort_reason = ""  # a new plan: no abort yet
        with frozen_heap():
            return super().__call__(*args, **kwargs)

    def resume(self):
        """bluesky's :meth:`~bluesky.RunEngine.resume`, the heap frozen meanwhile."""
        with frozen_heap():
            return super().resume()

    def abort(self, reason: str = ""):
        """Abort the running or paused plan (bluesky's :meth:`~bluesky.RunEngine.abort`); its
        run closes as "abort" with ``reason`` (or :data:`NO_REASON`) in the stop document."""
        self._abort_reason = str(reason) or NO_REASON
        with frozen_heap():
            return super().abort(reason=self._abort_reason)

    def stop(self):
        """bluesky's :meth:`~bluesky.RunEngine.stop`, the heap frozen meanwhile."""
        with frozen_heap():
            return super().stop()

    async def _close_run_with_reason(self, msg: Msg):
        if msg.kwargs.get("exit_status") == "abort" and not msg.kwargs.get("reason") \
                and self._abort_reason:
            msg = msg._replace(kwargs={**msg.kwargs, "reason": self._abort_reason})
        return await self._close_run(msg)
