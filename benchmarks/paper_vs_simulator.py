"""Paper vs simulator: every number issue 14 asks the simulated flask to reproduce, with its bound.

Seed 000 §S.1.2 (temperature trace), §S.1.3 (final radius and concentration), §S.3 (nucleation
lasting 15-20 % of the reaction by the 98 % rule) and §S.5 (a second injection after 4 min forms
a second set that catches up), measured on the pure models stepped by dt
(simulators/thermal_protocol.py, simulators/flask_protocol.py), and seed 002's statements on the
flow reactor's clusters, measured on the plug chemistry (each statement and its bound in
simulators/flow_figures.py). ``--dry-run`` adds the default dry run's simulated flask at its end
(a few minutes; run it under the shared heavy lock). ``--hot-route K`` measures the flow rows
with the hot route of FlowKineticParameters open at K L/mol/s (off by default; why in its
docstring); ``--no-hot-lineage`` without the hot lineage (on by default: Fig. 1 below the
diagonal, docs/flow_reactor.md).

    python benchmarks/paper_vs_simulator.py [--dry-run] [--hot-route 3e4] [--no-hot-lineage]
"""

from __future__ import annotations

import argparse
import tempfile

from ncsynth.simulators.flask_protocol import run_double_injection, run_synthesis
from ncsynth.simulators.flow_chemistry import Arrhenius, FlowKineticParameters
from ncsynth.simulators.flow_figures import STATEMENTS, flow_figures
from ncsynth.simulators.thermal_protocol import run_protocol, trace_figures

#: (quantity, paper value as stated, low bound, high bound, unit)
THERMAL_ROWS = (("preheat_max_c", "preheat peak (S.1.2: heated to 290)", "290", None, 293.0,
                 "°C"),
                ("dip_c", "minimum after injection (S.1.2)", "230", 225.0, 235.0, "°C"),
                ("recovery_s", "back at 260 °C after (S.1.2)", "60", 45.0, 75.0, "s"),
                ("first_peak_c", "first peak after recovery", "-", None, 266.0, "°C"),
                ("amplitude_c", "oscillation amplitude (S.1.2)", "6.5", 5.5, 7.5, "°C"),
                ("period_s", "oscillation period (S.1.2)", "195", 175.0, 215.0, "s"),
                ("mean_c", "oscillation centre (S.1.2)", "260", 256.0, 264.0, "°C"))
FLASK_ROWS = (("mean_radius_nm", "final radius (S.1.3)", "2.36", 2.24, 2.48, "nm", 1.0),
              ("concentration_molar", "final concentration (S.1.3)", "24", 20.0, 28.0, "uM", 1e6),
              ("nucleation_fraction", "nucleation fraction (S.3)", "15-20%", 0.15, 0.20, "", 1.0))


def _row(label, paper, low, high, unit, value) -> bool:
    inside = (low is None or value >= low) and (high is None or value <= high)
    bound = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
    print(f"{label:52s} {paper:>8s} {bound:>13s} {value:>10.3f} {unit:4s} {'ok' if inside else 'OUT'}")
    return inside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="also run the default dry run and compare its simulated flask")
    parser.add_argument("--hot-route", type=float, default=0.0, metavar="K",
                        help="flow rows with the hot route r(NCs) = k[Nucl][M] at K L/mol/s (0: off)")
    parser.add_argument("--no-hot-lineage", action="store_true",
                        help="flow rows without the hot lineage (nuclei above ~305 C as the others)")
    args = parser.parse_args()
    try:
        flow_parameters = FlowKineticParameters(k_nc_nuclei_hot=Arrhenius(args.hot_route, 0.0),
                                                hot_lineage=not args.no_hot_lineage)
    except ValueError as error:
        parser.error(f"--hot-route: {error}")
    print(f"{'quantity':52s} {'paper':>8s} {'bound':>13s} {'simulator':>10s}")
    ok = []
    figures = trace_figures(run_protocol(7200.0))
    for key, label, paper, low, high, unit in THERMAL_ROWS:
        ok.append(_row(label, paper, low, high, unit, figures[key]))
    flask = run_synthesis()
    for key, label, paper, low, high, unit, scale in FLASK_ROWS:
        ok.append(_row(label, paper, low, high, unit, flask[key] * scale))
    second = run_double_injection()
    gap = second["first_nm"] - second["second_nm"]
    ok.append(_row("S.5: second set's share of NCs, 10 min", "forms", 0.1, None, "",
                   second["second_fraction"]))
    ok.append(_row("S.5: gap between sets 10 min / 1 min", "shrinks", None, 0.5, "",
                   gap[-1] / gap[abs(second["times_s"] - 60.0).argmin()]))
    flow = flow_figures(flow_parameters)
    for statement in STATEMENTS:
        ok.append(_row(statement.label, statement.paper, statement.low, statement.high,
                       statement.unit, flow[statement.key]))
    if args.dry_run:
        from ncsynth.config import load_config
        from ncsynth.dryrun import dry_run

        config = load_config(hardware="sim")
        with tempfile.TemporaryDirectory() as data:
            config["data"]["dir"] = data
            truth = dry_run(config, progress=False, analysis=False)["simulator_truth"]
        for key, label, paper, low, high, unit, scale in FLASK_ROWS[:2]:
            ok.append(_row("dry run: " + label, paper, low, high, unit, truth[key] * scale))
    print(f"{sum(ok)}/{len(ok)} inside their bounds")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
