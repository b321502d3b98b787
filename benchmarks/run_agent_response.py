"""The run-to-run agent's response (docs/run_agent.md): the final radius (nm, the fits' last
frame) and size dispersion of the short protocol (ncsynth.agent_protocol.SynthesisProtocol) against
the reaction time (s) and, with ``--growth``, the growth temperature (°C, the second knob), in an
in-process simulated session with the jumping clock, with the simulated flask's number mean
beside it. With ``--campaign R,D`` the two-knob agent (ncsynth.agent_surrogate.RecipeAgent)
chooses the syntheses instead, in the same session (no queue server), until the final radius
is within 0.05 nm of R and the dispersion within ``--dispersion-tolerance`` of D, or 8 runs.

    python benchmarks/run_agent_response.py [--settle S] [--times 20,60,107.7,171.4,249.9,580]
                                            [--growth 260]
    python benchmarks/run_agent_response.py --campaign 2.1,0.02

``--settle`` is ``[heater] settle_time_s`` (2 in tests/test_run_agent.py's queue server).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

from bluesky_adaptive.protocols import ID_KEY

from ncsynth.agent_protocol import SynthesisProtocol
from ncsynth.config import load_config
from ncsynth.run_agent import final_outcome, make_agent
from ncsynth.session import session_namespace


def synthesis(ns, protocol: SynthesisProtocol, reaction_time_s: float, growth_c: float) -> dict:
    """One synthesis after ``new_batch``: its final outcome, the flask's mean radius (nm) and
    the wall time (s)."""
    ns["sim"].new_batch()
    started = time.monotonic()
    (uid,) = ns["RE"](ns["hot_injection"](
        ns["heater"], ns["injector"], ns["detector"], protocol.recipe(reaction_time_s, growth_c),
        schedule_s=list(protocol.schedule_s), integration_s=protocol.integration_s,
        n_background=protocol.n_background, monitor_period_s=0.0, timer=ns["timer"]))
    return {**final_outcome(ns["cat"], uid), "wall_s": time.monotonic() - started,
            "flask_nm": ns["sim"].world.reaction.state.mean_radius_nm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=2.0, help="heater settle time, s")
    parser.add_argument("--times", default="20,60,107.7,171.4,249.9,580", help="reaction times, s")
    parser.add_argument("--growth", default=str(SynthesisProtocol.growth_temperature_c),
                        help="growth temperatures, °C (default: the protocol's)")
    parser.add_argument("--campaign", default=None, metavar="R,D",
                        help="target radius (nm) and dispersion: run the two-knob agent")
    parser.add_argument("--dispersion-tolerance", type=float, default=0.005)
    args = parser.parse_args()
    protocol = SynthesisProtocol()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(hardware="sim")
        config["data"]["dir"], config["catalog"]["server_url"] = tmp, ""
        config["heater"]["settle_time_s"] = args.settle
        ns = session_namespace(config, sim=True, speed=0, live_plots=False)
        try:
            if args.campaign:
                radius, dispersion = map(float, args.campaign.split(","))
                agent = make_agent(radius, protocol, 0.05, dispersion, args.dispersion_tolerance)
                for _ in range(8):
                    (p,) = agent.suggest(1)
                    out = synthesis(ns, protocol, p["reaction_time_s"],
                                    p["growth_temperature_c"])
                    agent.ingest([{**p, **out}])
                    report = agent.report()
                    print(f"run {p[ID_KEY]}: {p['reaction_time_s']:.1f} s, "
                          f"{p['growth_temperature_c']:.1f} °C: final radius "
                          f"{out['final_radius_nm']:.3f} nm (predicted "
                          f"{report['predicted_radius_nm']:.3f}), dispersion "
                          f"{out['dispersion']:.3f} (predicted "
                          f"{report['predicted_dispersion']:.3f}); {out['wall_s']:.1f} s wall",
                          flush=True)
                    stop, why = agent.should_stop()
                    if stop:
                        print(why)
                        break
                return
            for growth_c, reaction_time_s in itertools.product(
                    map(float, args.growth.split(",")), map(float, args.times.split(","))):
                out = synthesis(ns, protocol, reaction_time_s, growth_c)
                print(f"settle {args.settle:g} s, growth {growth_c:g} °C, reaction time "
                      f"{reaction_time_s:g} s: final radius "
                      f"{out['final_radius_nm']:.3f} +- {out['radius_err_nm']:.4f} nm, "
                      f"dispersion {out['dispersion']:.3f}; flask {out['flask_nm']:.3f} nm; "
                      f"{out['wall_s']:.1f} s wall", flush=True)
        finally:
            ns["close"]()


if __name__ == "__main__":
    main()
