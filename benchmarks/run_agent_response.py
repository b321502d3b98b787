"""The run-to-run agent's response (docs/run_agent.md): the final radius (nm, the fits' last
frame) and size dispersion of the short protocol (ncsynth.agent_protocol.SynthesisProtocol) against
the reaction time (s) and, with ``--growth``, the growth temperature (°C, the candidate second
knob), in an in-process simulated session with the jumping clock, with the simulated flask's
number mean beside it.

    python benchmarks/run_agent_response.py [--settle S] [--times 20,60,107.7,171.4,249.9,580]
                                            [--growth 260]

``--settle`` is ``[heater] settle_time_s`` (2 in tests/test_run_agent.py's queue server).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time

from ncsynth.agent_protocol import SynthesisProtocol
from ncsynth.config import load_config
from ncsynth.run_agent import final_outcome
from ncsynth.session import session_namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=2.0, help="heater settle time, s")
    parser.add_argument("--times", default="20,60,107.7,171.4,249.9,580", help="reaction times, s")
    parser.add_argument("--growth", default=str(SynthesisProtocol.growth_temperature_c),
                        help="growth temperatures, °C (default: the protocol's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(hardware="sim")
        config["data"]["dir"], config["catalog"]["server_url"] = tmp, ""
        config["heater"]["settle_time_s"] = args.settle
        ns = session_namespace(config, sim=True, speed=0, live_plots=False)
        try:
            for growth_c, reaction_time_s in itertools.product(
                    map(float, args.growth.split(",")), map(float, args.times.split(","))):
                protocol = dataclasses.replace(SynthesisProtocol(), growth_temperature_c=growth_c)
                ns["sim"].new_batch()
                started = time.monotonic()
                (uid,) = ns["RE"](ns["hot_injection"](
                    ns["heater"], ns["injector"], ns["detector"], protocol.recipe(reaction_time_s),
                    schedule_s=list(protocol.schedule_s), integration_s=protocol.integration_s,
                    n_background=protocol.n_background, monitor_period_s=0.0, timer=ns["timer"]))
                outcome = final_outcome(ns["cat"], uid)
                flask = ns["sim"].world.reaction.state.mean_radius_nm
                print(f"settle {args.settle:g} s, growth {growth_c:g} °C, reaction time "
                      f"{reaction_time_s:g} s: final radius "
                      f"{outcome['final_radius_nm']:.3f} +- {outcome['radius_err_nm']:.4f} nm, "
                      f"dispersion {outcome['dispersion']:.3f}; flask {flask:.3f} nm; "
                      f"{time.monotonic() - started:.1f} s wall", flush=True)
        finally:
            ns["close"]()


if __name__ == "__main__":
    main()
