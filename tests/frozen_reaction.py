"""A reaction that holds still, for detector tests that need a known flask."""

from ncsynth.simulators.kinetics import ReactionState


class FrozenReaction:
    """A ReactionState registered in the world without kinetics (its distribution stays put)."""

    slow = True

    def __init__(self, state: ReactionState):
        self.state = state

    def step(self, dt_s, world):
        pass

    @property
    def radius_nm(self):
        return self.state.radius_nm

    @property
    def number_density_per_m3(self):
        return self.state.number_density_per_m3
