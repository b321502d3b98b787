"""Exports and reports named after the run (issue 16): ``ncsynth export`` and ``ncsynth
report`` (the command's own ``main``) on a real catalog on disk holding a raw run written by a
real RunEngine and its analysis run (tests/synthetic_analysis.py). Files are named
``scan0002-<short uid>-fits.csv`` / ``scan0002-<short uid>.png``, a second export gets a new
name, an existing ``-o`` file is kept unless ``--overwrite``, and a refused export leaves no
file behind."""

from __future__ import annotations

import csv

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det
from synthetic_analysis import analysed_frames, write_analysis

from ncsynth.cli import main
from ncsynth.storage import open_catalog

RECIPE = {"injection_temperature_c": 290.0, "growth_temperature_c": 260.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data directory: scan 1 never analysed, scan 2 with an analysis of 6 frames."""
    root = tmp_path_factory.mktemp("data")
    with open_catalog(root) as catalog:
        RE = RunEngine({}, context_managers=[], scan_id_source=catalog.scan_ids())
        writer = catalog.writer()
        RE.subscribe(writer)
        (bare,) = RE(count([det], 1), sample="CdSe-06", recipe=RECIPE)
        (uid,) = RE(count([det], 2), sample="CdSe-07", recipe=RECIPE)
        fits, patterns = analysed_frames([1.5, 3.0, 10.0, 30.0, 100.0, 300.0], [True] * 6)
        write_analysis(writer, catalog[uid].metadata["start"], fits, patterns)
        writer.close()
    return {"root": root, "uid": uid, "bare": bare, "name": f"scan0002-{uid[:8]}"}


def _ncsynth(capsys, *args) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_exports_are_named_after_the_run_and_never_overwritten(data, capsys):
    root, name = data["root"], data["name"]
    code, first, err = _ncsynth(capsys, "export", "-1", "--data-dir", root)
    assert code == 0, err
    assert first == str(root / "exports" / f"{name}-fits.csv")
    with open(first, newline="") as handle:
        rows = list(csv.reader(handle))
    assert "radius_nm [nm]" in rows[0] and len(rows) == 7
    before = open(first).read()
    code, second, err = _ncsynth(capsys, "export", "2", "--data-dir", root)  # by scan id
    assert code == 0 and second == str(root / "exports" / f"{name}-fits-2.csv"), err
    assert open(first).read() == before and open(second).read() == before
    code, nexus, err = _ncsynth(capsys, "export", data["uid"][:8], "--format", "nexus",
                                "--data-dir", root)
    assert code == 0 and nexus == str(root / "exports" / f"{name}-fits.nxs"), err


def test_reports_are_named_after_the_run_and_never_overwritten(data, capsys):
    root, name = data["root"], data["name"]
    paths = []
    for _ in range(2):
        code, out, err = _ncsynth(capsys, "report", "-1", "--data-dir", root)
        assert code == 0, err
        paths.append(out)
    assert paths == [str(root / "reports" / f"{name}.png"), str(root / "reports" / f"{name}-2.png")]
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_an_existing_output_file_is_kept_unless_overwrite_is_given(data, capsys, tmp_path):
    target = tmp_path / "mine.csv"
    target.write_text("keep me\n")
    code, out, err = _ncsynth(capsys, "export", "-1", "-o", target, "--data-dir", data["root"])
    assert code == 2 and out == "" and err.count("\n") == 0
    assert err == (f"ncsynth export: -o {target}: the file exists; give --overwrite to replace "
                   f"it (without -o a new file named after the run is written)")
    assert target.read_text() == "keep me\n"
    code, out, err = _ncsynth(capsys, "export", "-1", "-o", target, "--overwrite",
                              "--data-dir", data["root"])
    assert code == 0 and out == str(target) and target.read_text().startswith("time_s [s],"), err
    for command in ("export", "report"):  # a directory is no file to replace, --overwrite or not
        code, out, err = _ncsynth(capsys, command, "-1", "-o", tmp_path, "--overwrite",
                                  "--data-dir", data["root"])
        assert code == 2 and out == "" and err == (
            f"ncsynth {command}: -o {tmp_path}: is a directory; give a file name (without -o a "
            f"new file named after the run is written)"), err


def test_a_refused_export_or_report_leaves_no_file_behind(data, capsys):
    for command in ("export", "report"):
        code, out, err = _ncsynth(capsys, command, "1", "--data-dir", data["root"])
        assert code == 2 and out == ""
        assert err == (f"ncsynth {command}: run {data['bare'][:8]} has not been analysed; "
                       f"run `ncsynth replay` first")
    assert not list(data["root"].glob(f"*/scan0001-{data['bare'][:8]}*"))
