"""The command line refuses bad arguments before it imports anything heavy (issue 18).

Each refusal runs the real ``ncsynth`` entry point in a fresh interpreter, which then reports
which of bluesky, ophyd, Tiled, pyFAI, h5py and matplotlib it had imported: none, for a
refusal (they cost seconds; ``benchmarks/startup.py`` measures how long a refusal takes).
"""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
HEAVY = ("bluesky", "ophyd", "tiled", "pyFAI", "h5py", "matplotlib", "scipy")
PROBE = """
import json, sys
from ncsynth.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def refuse(*args):
    """(exit code, stderr, heavy modules imported) of ``ncsynth *args`` in a fresh process."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=ENV, capture_output=True,
                            text=True, timeout=120)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome["code"], result.stderr, outcome["heavy"]


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "n_frames must be an integer >= 1"),
    (["--ratio", "0.5"], "ratio must be a finite number >= 1"),
    (["--background-frames", "0"], "n_background must be an integer >= 1"),
    (["--monitor-period", "0.01"], "monitor_period_s must be 0 (no monitoring) or >= 0.1 s"),
    (["--growth-temperature", "400"], "exceeds the heater's limit"),
    (["--reaction-time", "-5"], "recipe.reaction_time_s must be"),
    (["--operator", " "], "recipe.operator must be a non-empty string"),
    (["--second-injection", "9000"], "delay_s (9000.0 s) must come before the end"),
    (["--second-injection", "240", "--second-frames", "0"], "second_n_frames must be"),
    (["--second-injection", "240", "--second-cd-molar", "0"], "--second-cd-molar must be"),
    (["--second-injection", "240", "--piston", "B"], "--piston: the double injection"),
    (["--speed", "-1"], "--speed must be"),
    (["--growth-exponent", "13"], "--growth-exponent must be"),
])
def test_a_bad_dry_run_argument_is_refused_in_one_line_before_any_heavy_import(
        tmp_path, args, message):
    data = tmp_path / "data"
    code, stderr, heavy = refuse("dry-run", "--data-dir", str(data), *args)
    assert code == 2
    assert stderr.startswith("ncsynth dry-run: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert heavy == []
    assert not data.exists()


def test_the_plans_make_the_same_checks_as_the_command_line():
    from ncsynth.plans import Recipe, hot_injection

    recipe = Recipe(operator="test", sample="test")
    with pytest.raises(ValueError, match="n_frames must be an integer >= 1"):
        hot_injection(None, None, None, recipe, n_frames=0)
    with pytest.raises(ValueError, match="monitor_period_s must be 0"):
        hot_injection(None, None, None, recipe, monitor_period_s=0.01)


@pytest.mark.parametrize("command", [["replay", "-1"], ["export", "-1"], ["report", "1"],
                                     ["validate", "-1"]])
def test_a_stored_run_command_on_a_directory_without_a_catalog_creates_nothing(tmp_path, command):
    data = tmp_path / "empty"
    code, stderr, heavy = refuse(*command, "--data-dir", str(data))
    assert code == 2 and stderr.count("\n") == 1
    assert f"{data}: no catalog in this data directory" in stderr
    assert heavy == [] and not data.exists()


def test_the_catalog_file_checked_is_the_one_storage_opens(tmp_path):
    from ncsynth.command_line import CATALOG_FILE
    from ncsynth.storage.layout import DataDirectory

    assert DataDirectory.at(tmp_path).catalog_db == tmp_path.resolve() / CATALOG_FILE


@pytest.mark.parametrize("q_range, message", [(["5", "1"], "QMAX must be above QMIN"),
                                               (["0", "1"], "--q-range QMIN must be"),
                                               (["0.1", "inf"], "--q-range QMAX must be")])
def test_a_bad_q_range_is_refused_before_the_catalog_is_opened(tmp_path, q_range, message):
    (tmp_path / "catalog.db").write_bytes(b"")  # would be refused as empty, once opened
    code, stderr, heavy = refuse("replay", "-1", "--q-range", *q_range,
                                 "--data-dir", str(tmp_path))
    assert code == 2 and message in stderr and heavy == []


def test_catalog_serve_refuses_a_port_out_of_range():
    code, stderr, heavy = refuse("catalog", "serve", "--port", "70000")
    assert code == 2 and "--port must be an integer >= 1 and <= 65535" in stderr
    assert heavy == []


def test_importing_ncsynth_and_its_command_line_imports_nothing_heavy():
    probe = ("import sys, ncsynth, ncsynth.cli, ncsynth.plans.checks; "
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_plan_is_the_package_attribute_even_when_its_module_was_imported_first():
    probe = ("import ncsynth.plans.double_injection, ncsynth.plans.hot_injection; "
             "from ncsynth.plans import double_injection, hot_injection; "
             "print(callable(double_injection), callable(hot_injection), "
             "double_injection.__module__, hot_injection.__module__)")
    result = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split() == ["True", "True", "ncsynth.plans.double_injection",
                                     "ncsynth.plans.hot_injection"], result.stderr


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """A data directory whose embedded catalog holds one raw run (scan id 1) and an analysis
    run of it, written by a real RunEngine and the catalog's writer."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det

    from ncsynth.storage import open_catalog

    root = tmp_path_factory.mktemp("one-run") / "data"
    with open_catalog(root) as catalog:
        RE = RunEngine({}, context_managers=[], scan_id_source=catalog.scan_ids())
        writer = catalog.writer()
        RE.subscribe(writer)
        (uid,) = RE(bp.count([det], 2))
        RE(bp.count([det], 1, md={"raw_uid": uid}))  # an analysis run is reached by its uid too
        writer.close()
    return root, uid


@pytest.mark.parametrize("command", ["export", "report", "validate", "replay"])
@pytest.mark.parametrize("ref, message", [
    ("nosuchrun", "no run with uid 'nosuchrun' (or starting with it) in "),
    ("2", "no run with scan id 2 in "),
    ("-2", "run index -2 is out of range: "),
    ("12345678", "no run with uid '12345678' (or starting with it) in "),
])
def test_an_unknown_run_is_named_before_the_catalog_is_opened(one_run, command, ref, message):
    root, _ = one_run
    code, stderr, heavy = refuse(command, ref, "--data-dir", str(root))
    assert code == 2
    assert stderr.startswith(f"ncsynth {command}: {message}") and stderr.count("\n") == 1, stderr
    assert heavy == []


@pytest.mark.parametrize("ref", ["1", "-1", "uid prefix", "analysis uid"])
def test_a_run_the_catalog_holds_is_not_refused_by_the_quick_lookup(one_run, ref):
    from ncsynth.run_lookup import absent_run
    from ncsynth.storage import open_catalog

    root, uid = one_run
    with open_catalog(root) as catalog:
        analysis_uid = catalog.analyses(uid).values()[0].metadata["start"]["uid"]
    typed = {"uid prefix": uid[:6], "analysis uid": analysis_uid}.get(ref, ref)
    assert absent_run(root, typed) is None
