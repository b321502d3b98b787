"""How soon ``ncsynth`` answers: import, --help, a refused bad argument or unknown run
(issues 16 and 18: <= 1 s; ``time ncsynth export nosuchrun`` is one of them).

Each command runs REPEAT times in a fresh interpreter; the median wall time is printed beside
the bare interpreter's (``python -c pass``), measured in the same run, and, for scale, the
import of the dry run's whole stack (:data:`DRY_RUN_STACK`: bluesky, ophyd, the simulators, pyFAI).
Each refusal's one line is printed under its time (exit 2 and one stderr line, or it says not).
Run on a quiet machine (it prints the load average)::

    flock /tmp/ncsynth-heavy.lock python benchmarks/startup.py

Before and after a change, in one session: run it once with ``PYTHONPATH`` at an export of
the older tree laid out as the installed package (``ncsynth/`` from ``src/ncsynth`` with
``plans``, ``analysis``, ``devices``, ``simulators`` inside it); the commands it starts
inherit it and import the older code.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPEAT = 5
#: the dry run's whole stack, for scale (``ncsynth.dryrun`` alone imports only the catalog's
#: side since issue 18: the rest comes once the catalog's writer process has started)
DRY_RUN_STACK = ("import ncsynth.dryrun, ncsynth.instruments, ncsynth.flask_truth, "
                 "ncsynth.simulators.beamline, ncsynth.plans")
#: The budget of issue 18 for a refused argument, s.
BUDGET_S = 1.0


def wall_s(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Median wall time of ``argv`` over REPEAT runs, s, and the last run's result."""
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), done


def refusal(done: subprocess.CompletedProcess) -> str:
    """What a refused command said (exit 2 and one line on stderr; argparse's own refusals
    print the usage first), or why it is no refusal."""
    lines = done.stderr.strip().splitlines()
    if done.returncode == 2 and len(lines) == 1:
        return lines[0]
    if done.returncode == 2 and lines and ": error: " in lines[-1]:
        return f"{lines[-1]}  (argparse, after its usage)"
    return f"NOT A ONE-LINE REFUSAL (exit {done.returncode}, {len(lines)} lines on stderr)"


def one_run_catalog(root: str) -> str:
    """A data directory whose embedded catalog holds one run (written here, not timed)."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det

    from ncsynth.storage import open_catalog

    with open_catalog(root) as catalog:
        RE = RunEngine({}, context_managers=[])
        writer = catalog.writer()
        RE.subscribe(writer)
        RE(bp.count([det], 2))
        writer.close()
    return root


def main() -> None:
    ncsynth = shutil.which("ncsynth") or f"{sys.executable} -m ncsynth.cli"
    ncsynth = ncsynth.split()
    empty = tempfile.mkdtemp(prefix="ncsynth-startup-")
    with_a_run = one_run_catalog(os.path.join(empty, "with-a-run"))
    a_file = os.path.join(with_a_run, "catalog.db")
    commands = [
        ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
        ("python -c 'import ncsynth'", [sys.executable, "-c", "import ncsynth"]),
        ("ncsynth --help", [*ncsynth, "--help"]),
        ("ncsynth dry-run --frames 0 (refused)", [*ncsynth, "dry-run", "--frames", "0",
                                                  "--data-dir", empty]),
        ("ncsynth dry-run --second-injection 9000 (refused)",
         [*ncsynth, "dry-run", "--second-injection", "9000", "--data-dir", empty]),
        ("ncsynth replay -1 --q-range 5 1 (refused)", [*ncsynth, "replay", "-1", "--q-range",
                                                       "5", "1", "--data-dir", empty]),
        ("ncsynth export -1, no catalog (refused)", [*ncsynth, "export", "-1",
                                                     "--data-dir", empty]),
        ("ncsynth export nosuchrun, a catalog (refused)", [*ncsynth, "export", "nosuchrun",
                                                           "--data-dir", with_a_run]),
        ("ncsynth replay 7, no such scan id (refused)", [*ncsynth, "replay", "7",
                                                         "--data-dir", with_a_run]),
        ("ncsynth replay, no run given (refused)", [*ncsynth, "replay"]),
        ("ncsynth dry-run --config /nonexistent.toml (refused)",
         [*ncsynth, "dry-run", "--config", "/nonexistent.toml"]),
        ("ncsynth session --config /nonexistent.toml (refused)",
         [*ncsynth, "session", "--config", "/nonexistent.toml"]),
        ("ncsynth dry-run --data-dir a file (refused)", [*ncsynth, "dry-run", "--data-dir",
                                                         a_file]),
        ("ncsynth flow dry-run --residence -1 (refused)",
         [*ncsynth, "flow", "dry-run", "--residence", "-1", "--data-dir", empty]),
        ("ncsynth flow dry-run --nucleation 500 (refused)",
         [*ncsynth, "flow", "dry-run", "--nucleation", "500", "--data-dir", empty]),
        ("ncsynth analysis serve --proxy nonsense (refused)",
         [*ncsynth, "analysis", "serve", "--proxy", "nonsense", "--data-dir", empty]),
        ("ncsynth sim serve --calibration-dir a file (refused)",
         [*ncsynth, "sim", "serve", "--calibration-dir", a_file]),
        ("ncsynth catalog serve --api-key-file none (refused)",
         [*ncsynth, "catalog", "serve", "--api-key-file", os.path.join(empty, "no-key"),
          "--data-dir", empty]),
        ("python -c 'import ncsynth.dryrun ...' (scale)", [sys.executable, "-c", DRY_RUN_STACK]),
    ]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"{os.cpu_count()} CPUs; median of {REPEAT} runs each")
    baseline = None
    for label, argv in commands:
        t, done = wall_s(argv)
        baseline = t if baseline is None else baseline
        verdict = "" if "refused" not in label else (
            "  within 1 s" if t <= BUDGET_S else "  OVER 1 s")
        print(f"{label:<52} {t:7.3f} s  (+{t - baseline:6.3f} s over the baseline){verdict}")
        if "refused" in label:  # the time of a refusal, not of a crash or a run
            print(f"    {refusal(done)}")
    shutil.rmtree(empty, ignore_errors=True)


if __name__ == "__main__":
    main()
