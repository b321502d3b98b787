"""The simulated beamline with the hutch's devices connected to it and a RunEngine following
its clock, for plan tests against the simulators (no catalog, no analysis)."""

import contextlib

from bluesky import RunEngine

from ncsynth import timebase
from ncsynth.config import load_config
from ncsynth.instruments import connect, simulated_hutch
from ncsynth.simulators.beamline import SimulatedBeamline


@contextlib.contextmanager
def connected_beamline(data_dir, options):
    """``(sim, devices, RE, docs)``: ``docs`` collects every document the RunEngine emits."""
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(data_dir)
    with SimulatedBeamline(options=options) as sim, timebase.use_clock(sim.clock):
        devices = connect(simulated_hutch(config, sim))
        RE = RunEngine({})
        sim.clock.follow(RE)
        docs = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        try:
            yield sim, devices, RE, docs
        finally:
            devices.close()
