"""The second-injection delay as a candidate knob of the run-to-run agent (docs/run_agent.md):
final sizes 600 s after the first injection on the pure models (ncsynth.simulators.flask_protocol,
§S.5 syringe B), against the delay of piston B, beside the single injection.

    python benchmarks/second_injection_reach.py [--delays 60,120,240,360] [--total 600]

The heater stays at 260 °C throughout (no reaction-time cut-off, unlike the agent's short
protocol). Printed: each set's number-mean radius (nm), the second set's share, the number
mean of both, and the dispersion the two means alone give, sqrt(p (1 - p)) |R1 - R2| / mean
(a lower bound on sigma / R: each set's own width is left out).
"""

from __future__ import annotations

import argparse
import math
import time

from ncsynth.simulators.flask_protocol import run_double_injection, run_synthesis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="60,120,240,360", help="piston B delays, s")
    parser.add_argument("--total", type=float, default=600.0, help="s after the first injection")
    args = parser.parse_args()
    started = time.monotonic()
    single = run_synthesis(args.total)["mean_radius_nm"]
    print(f"single injection: {single:.3f} nm at {args.total:g} s "
          f"({time.monotonic() - started:.1f} s)", flush=True)
    for delay in map(float, args.delays.split(",")):
        started = time.monotonic()
        sets = run_double_injection(args.total - delay, delay_s=delay)
        first, second, p = sets["first_nm"][-1], sets["second_nm"][-1], sets["second_fraction"]
        mean = (1 - p) * first + p * second
        spread = math.sqrt(p * (1 - p)) * abs(first - second) / mean
        print(f"piston B at {delay:g} s: first set {first:.3f} nm, second {second:.3f} nm "
              f"({p:.2f} of the crystals), number mean {mean:.3f} nm, two-set dispersion >= "
              f"{spread:.3f} ({time.monotonic() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
