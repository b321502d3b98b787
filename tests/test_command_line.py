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


@pytest.mark.parametrize("args, message", [
    (["flow", "dry-run", "--residence", "-1"],
     "residence_s must be a positive number of seconds, got -1.0"),
    (["flow", "dry-run", "--residence", "0.01"], "above max_rate_ml_min=28"),
    (["flow", "dry-run", "--nucleation", "500"], "nucleation_c=500.0 °C is outside the limits "
                                                 "of chamber: 25 to 350 °C"),
    (["flow", "dry-run", "--nucleation", "240", "--growth", "300"], "no point to measure"),
    (["flow", "dry-run", "--growth", "250", "250"], "growth_c must hold distinct temperatures"),
    (["flow", "dry-run", "--nucleation", "nan"], "nucleation_c must be finite temperatures"),
    (["flow", "dry-run", "--nucleation", "-300"], "above absolute zero (-273.15 °C), got [-300.0]"),
    (["flow", "dry-run", "--processes", "0"], "--processes must be an integer >= 1"),
    (["analysis", "serve", "--proxy", "nonsense"], "proxy address 'nonsense': give host:port"),
    (["analysis", "serve", "--proxy", "localhost:99999"], "the port 1 to 65535"),
    (["analysis", "serve"], "no proxy to subscribe to: give --proxy host:port"),
    (["catalog", "serve"], "no API key: pass api_key or set the environment variable "
                           "TILED_API_KEY"),
    (["catalog", "serve", "--api-key-file", "/nonexistent/key"],
     "--api-key-file /nonexistent/key: No such file or directory"),
])
def test_a_bad_argument_of_another_command_is_refused_before_any_heavy_import(
        tmp_path, monkeypatch, args, message):
    monkeypatch.delitem(ENV, "TILED_API_KEY", raising=False)  # the catalog server's default
    data = tmp_path / "data"
    code, stderr, heavy = refuse(*args, "--data-dir", str(data))
    command = " ".join(args[:2])
    assert code == 2
    assert stderr.startswith(f"ncsynth {command}: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert heavy == []
    assert not data.exists()


def test_the_flow_grid_is_checked_against_the_configured_zone_limits(tmp_path):
    config = tmp_path / "low.toml"
    config.write_text("[flow.oven]\nmax_temperature_c = 245.0\n")
    code, stderr, heavy = refuse("flow", "dry-run", "--config", str(config),
                                 "--data-dir", str(tmp_path / "data"))
    assert code == 2 and heavy == []
    assert "growth_c=250.0 °C is outside the limits of oven: 25 to 245 °C" in stderr, stderr


def test_a_short_api_key_is_refused_after_the_process_list_warning():
    code, stderr, heavy = refuse("catalog", "serve", "--api-key", "short1")
    assert code == 2 and heavy == []
    warning, refusal = stderr.splitlines()
    assert warning.startswith("ncsynth catalog serve: warning: --api-key shows the key")
    assert refusal.startswith("ncsynth catalog serve: api_key is 6 characters long")


def test_an_empty_api_key_file_is_refused_naming_it(tmp_path):
    key = tmp_path / "key"
    key.write_text("\n")
    code, stderr, heavy = refuse("catalog", "serve", "--api-key-file", str(key))
    assert code == 2 and heavy == []
    assert stderr == f"ncsynth catalog serve: {key}: the API key file is empty\n"


@pytest.mark.parametrize("command", [["dry-run"], ["flow", "dry-run"], ["session"], ["recover"]])
def test_a_data_directory_that_is_a_file_is_refused_before_any_heavy_import(tmp_path, command):
    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    code, stderr, heavy = refuse(*command, "--data-dir", str(a_file))
    assert code == 2 and heavy == []
    assert stderr == (f"ncsynth {' '.join(command)}: {a_file}: the data directory is a file, "
                      f"not a directory\n")


def test_sim_serve_refuses_a_calibration_directory_that_is_a_file(tmp_path):
    a_file = tmp_path / "calibration"
    a_file.write_text("")
    code, stderr, heavy = refuse("sim", "serve", "--calibration-dir", str(a_file))
    assert code == 2 and heavy == []
    assert stderr == f"ncsynth sim serve: --calibration-dir {a_file}: a file, not a directory\n"
    below = a_file / "cal"  # cannot be made (nor on a read-only medium): one line, not mkdir's traceback
    code, stderr, heavy = refuse("sim", "serve", "--calibration-dir", str(below))
    assert code == 2 and heavy == []
    assert stderr == f"ncsynth sim serve: --calibration-dir {below}: cannot create it: Not a directory\n"


@pytest.mark.parametrize("address", ["127.0.0.1:5578", "tcp://localhost:1", "ipc:///tmp/proxy"])
def test_a_proxy_address_bluesky_takes_is_not_refused(address):
    from ncsynth.config import load_config, subscribe_address

    assert subscribe_address(load_config(None), address) == address


def test_the_default_flow_grid_passes_the_early_check(tmp_path):
    from ncsynth.command_line import check_arguments, parser

    args = parser().parse_args(["flow", "dry-run", "--data-dir", str(tmp_path / "data")])
    assert check_arguments(args)["data"]["dir"] == str(tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_recover_refuses_a_data_directory_that_does_not_exist_and_creates_none(tmp_path):
    """A mistyped --data-dir is named, not turned into a new empty catalog ("nothing to recover")."""
    missing = tmp_path / "dta"
    code, stderr, heavy = refuse("recover", "--data-dir", str(missing))
    assert code == 2 and heavy == [] and not missing.exists()
    assert stderr == (f"ncsynth recover: {missing}: no such data directory, nothing to recover "
                      f"there; give the one the runs were written to (--data-dir)\n")


def test_output_to_a_reader_that_went_away_ends_quietly_with_141(tmp_path):
    """``ncsynth recover | head``: the reader closed the pipe before "nothing to recover"; the
    command ends with 128 + SIGPIPE and no error message (before: "ncsynth recover: [Errno 32]
    Broken pipe", exit 1; the stored-run commands alike)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "ncsynth.cli", "recover", "--data-dir",
                                 str(tmp_path)], env=ENV, stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_command_ended_without_teardown_leaves_its_open_hdf5_files_whole(tmp_path):
    """The dry runs and the stored-run commands end without the interpreter's teardown
    (``ncsynth.cli.run``, issue 18), so HDF5's own exit handler does not run either: an HDF5
    file still open is flushed first. Unflushed, the file written here does not open again
    ("bad object header version number")."""
    import h5py

    path = tmp_path / "open.h5"
    script = ("import h5py, numpy as np\n"
              "from ncsynth.cli import _end_without_teardown\n"
              f"f = h5py.File({str(path)!r}, 'w')\n"
              "f['counts'] = np.arange(1000)\n"
              "f.attrs['note'] = 'kept'\n"
              "_end_without_teardown(3)\n")
    result = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert (result.returncode, result.stderr) == (3, "")
    with h5py.File(path, "r") as written:
        assert written["counts"][-1] == 999 and written.attrs["note"] == "kept"


def _options(parser, path=("ncsynth",)):
    """(command, option strings or dest, help) of every argument of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.dest != "help":
            yield " ".join(path), action.option_strings or [action.dest], action.help


def test_every_option_of_every_command_says_what_it_does():
    from ncsynth.command_line import parser

    options = list(_options(parser()))
    assert len(options) > 80
    assert [(command, names) for command, names, text in options if not text] == []


def test_the_dry_runs_frames_help_tells_the_spans_the_schedule_really_has():
    """The --frames help quotes how long 20, 200 and 575 frames last; the schedule decides."""
    import re

    from ncsynth.command_line import parser
    from ncsynth.plans.schedule import frame_schedule

    text = next(text for command, names, text in _options(parser())
                if command == "ncsynth dry-run" and "--frames" in names)
    text = " ".join(text.split())
    assert "default 575" in text and f"{frame_schedule()[-1] / 3600:.1f} h in all" in text
    first_gap_ms = round(frame_schedule(2)[-1] * 1e3)
    assert f"{first_gap_ms} ms apart at first" in text
    quoted = dict(re.findall(r"(\d+) frames (?:span )?([\d.]+) s", text))
    assert quoted.keys() == {"20", "200"}
    for frames, span in quoted.items():
        assert float(span) == pytest.approx(frame_schedule(int(frames))[-1], abs=0.05 * float(span))
