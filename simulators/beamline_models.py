"""Adapters that put pure models into the world."""

from __future__ import annotations


class FlaskReaction:
    """The reaction kinetics (:class:`~ncsynth.simulators.kinetics.ReactionState`) as a
    world model: stepped at the flask's liquid temperature, coarsely (``slow``), since
    it sub-steps adaptively itself. Everything else is the state's own attributes."""

    slow = True

    def __init__(self, state):
        self.state = state

    def step(self, dt_s: float, world) -> None:
        """Advance ``dt_s`` at the flask's mean temperature over those ``dt_s``."""
        self.state.step(dt_s, world.mean_flask_temperature_c)

    def __getattr__(self, name):
        return getattr(self.state, name)

    @property
    def preferred_dt_s(self) -> float:
        """The next sub-step the kinetics' error control would take (s): the world may hand it
        that much time at once (:class:`~ncsynth.simulators.world.World`'s adaptive window)."""
        return self.state.next_substep_s
