"""The main job end to end: `ncsynth dry-run` as a user runs it, and a killed dry run recovered."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import h5py
import numpy as np
import pytest

from ncsynth.devices.area_detector_sequences import ARMING_S
from ncsynth.storage import open_catalog
from ncsynth.storage.journal import read_journal
import forked_cli
from interrupting import journaled_events, signalled_midway
from small_tmpfs import mounted_tmpfs

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def _ncsynth(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", *args], env=ENV,
                          capture_output=True, text=True, **kwargs)


def _command(*args, timeout):
    """``ncsynth recover`` and the like as a process of its own, forked from one that imported
    the libraries once (tests/forked_cli.py); dry runs and refusals start as a user starts them."""
    return forked_cli.ncsynth(args, env=ENV, timeout=timeout)


@pytest.mark.timeout(1500)  # one full protocol and four more commands; slow under load
def test_full_default_protocol_dry_run_recovers_the_simulated_truth(tmp_path, capsys):
    """The dry run as a user starts it (a process of its own); replay, export and report of its
    run through the command line's ``main`` in this process (each as a process again would
    only add ~10 s of imports: the commands' own processes are test_quiet_commands' and
    test_damaged_data's)."""
    from ncsynth.cli import main

    result = _ncsynth("dry-run", "--json", "--data-dir", str(tmp_path), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    truth = summary["simulator_truth"]
    assert summary["exit_status"] == "success" and summary["frames"] == 575
    # the simulated flask ends like the synthesis of seed 000 §S.1.3 (TEM 2.3 +- 0.3 nm;
    # ~24 uM of nanocrystals at 260 C; nucleation over ~15-20 % of the reaction, §S.3)
    assert truth["mean_radius_nm"] == pytest.approx(2.36, abs=0.12)
    assert truth["concentration_molar"] * 1e6 == pytest.approx(24.0, abs=4.0)
    if "nucleation_fraction" in truth:
        assert 0.15 <= truth["nucleation_fraction"] <= 0.20
    # the live analysis of the last frame agrees with what the simulated flask holds
    assert summary["final_radius_nm"] == pytest.approx(truth["mean_radius_nm"], rel=0.03)
    assert summary["concentration_molar"] == pytest.approx(truth["concentration_molar"], rel=0.05)
    assert summary["yield_fraction"] == pytest.approx(truth["yield_fraction"], abs=0.05)
    assert 0.05 < summary["kinetics"]["nucleation_fraction"] < 0.6
    assert summary["analysis_errors"] == 0 and summary["analysis_dropped_events"] == 0
    assert summary["analysis_worker_errors"] == 0
    # the run is in the catalog with its frames, and the derived run links back to it
    with open_catalog(tmp_path) as catalog:
        raw = catalog[summary["uid"]]
        assert raw.metadata["stop"]["exit_status"] == "success"
        assert raw.metadata["start"]["recipe"]["growth_temperature_c"] == 260.0
        frames = raw["primary"]["saxs_image"]
        assert frames.shape == (575, 480, 480)
        assert np.asarray(frames[-1]).sum() > 0
        assert catalog[-1].metadata["start"]["uid"] == summary["uid"]  # the latest acquired run
        derived = catalog.analysis(summary["uid"])
        assert derived.metadata["start"]["raw_uid"] == summary["uid"]
    png = Path(summary["figures"][0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # replay through the same analysis code gives the live numbers exactly
    capsys.readouterr()
    assert main(["replay", summary["uid"][:8], "--json", "--data-dir", str(tmp_path)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["raw_uid"] == summary["uid"]
    for key in ("final_radius_nm", "concentration_molar", "yield_fraction"):
        assert again[key] == summary[key]
    csv = tmp_path / "fits.csv"
    assert main(["export", "-1", "-o", str(csv), "--data-dir", str(tmp_path)]) == 0
    lines = csv.read_text().splitlines()
    assert "radius_nm [nm]" in lines[0] and len(lines) == 1 + 575
    report = tmp_path / "report.png"
    assert main(["report", "1", "-o", str(report), "--data-dir", str(tmp_path)]) == 0
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unknown = _ncsynth("replay", "0123456789", "--data-dir", str(tmp_path), timeout=300)
    assert unknown.returncode == 2 and "no run" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_bad_dry_run_arguments_give_a_clear_message_and_no_run(tmp_path):
    result = _ncsynth("dry-run", "--frames", "0", "--data-dir", str(tmp_path), timeout=300)
    assert result.returncode == 2
    assert "n_frames" in result.stderr and "Traceback" not in result.stderr


def test_kill_minus_9_mid_run_then_recover_keeps_every_frame(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json",
                             "--no-analysis", "--data-dir", str(tmp_path)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert journaled_events(proc, tmp_path) >= 30, \
            "the dry run did not get far enough to be killed mid-run"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = _command("recover", "--data-dir", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "aborted" in result.stdout
    with open_catalog(tmp_path) as catalog:
        run = catalog[-1]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "abort"
        assert "recovered" in stop["reason"]
        n_frames = stop["num_events"].get("primary", 0)
        assert n_frames >= 1
        # every frame whose stream_datum was journaled before the kill loads through the
        # catalog; the detector's file (left open by the killed writer) may hold one more,
        # written just before the kill, which the stream_datums do not expose
        docs = read_journal(tmp_path / "journal" / "complete" / f"{run.metadata['start']['uid']}.jsonl")
        primary = next(d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "primary")
        datums = [d for n, d in docs if n == "stream_datum" and d["descriptor"] == primary]
        referenced = sum(d["indices"]["stop"] - d["indices"]["start"] for d in datums)
        assert referenced >= n_frames
        [resource] = [d for n, d in docs
                      if n == "stream_resource" and d["uid"] == datums[0]["stream_resource"]]
        frames = run["primary"]["saxs_image"].read()
    assert frames.shape == (referenced, 480, 480)
    with h5py.File(urlsplit(resource["uri"]).path, "r", libver="latest", swmr=True) as f:
        on_disk = f["/entry/data/data"]
        assert on_disk.shape[0] >= referenced
        np.testing.assert_array_equal(frames, on_disk[:referenced])
    assert frames[-1].sum() > 0
    # a second recover has nothing left to do
    again = _command("recover", "--data-dir", str(tmp_path), timeout=300)
    assert "nothing to recover" in again.stdout


def _writer_processes(data_dir) -> list[int]:
    """PIDs of the catalog writer's worker processes serving ``data_dir`` (from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"ncsynth.storage.writer_worker" in argv and str(data_dir).encode() in argv:
            pids.append(int(cmdline.parent.name))
    return pids


def test_a_catalog_writer_killed_mid_run_fails_the_command_naming_recover_which_stores_every_frame(
        tmp_path):
    """The catalog writer's process dies mid-run (OOM killer, a crash): the run goes on into the
    journal and ends with the heater safe; the summary said "unknown" with no hint and exit 0
    or 1 by chance of timing. Now: the plan's exit status (the journal's stop), exit 1, an error
    line naming the runs not stored, the cause and the command that stores them; that command
    then stores the raw run whole."""
    proc = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json", "--no-progress",
                             "--frames", "200", "--reaction-time", "60", "--data-dir", str(tmp_path)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert journaled_events(proc, tmp_path, at_least=20) >= 20, \
            "the dry run did not get far enough for its writer to be killed mid-run"
        (writer,) = _writer_processes(tmp_path)
        os.kill(writer, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["exit_status"] == "success" and summary["frames"] == 200
    assert summary["heater"].startswith("confirmed safe")
    assert summary["error"].startswith(f"catalog: runs {summary['uid'][:8]}, ")
    assert "the catalog worker process was killed by SIGKILL" in summary["error"] and "\n" not in summary["error"]
    assert summary["error"].endswith(f"`ncsynth recover --data-dir {tmp_path}` stores them")
    result = _command("recover", "--data-dir", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with open_catalog(tmp_path) as catalog:
        run = catalog[summary["uid"]]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run.metadata["stop"]["num_events"]["primary"] == 200
        assert run["primary"]["saxs_image"].read().shape == (200, 480, 480)
        assert catalog.analysis(summary["uid"]) is not None  # its analysis run is stored too


def test_dry_run_options_choose_detector_timing_monitoring_and_cool_down(tmp_path, capsys):
    from ncsynth.cli import main

    code = main(["dry-run", "--json", "--no-analysis", "--data-dir", str(tmp_path),
                 "--acquisition", "detector", "--frames", "30", "--reaction-time", "60",
                 "--monitor-period", "5", "--cooldown", "30"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["exit_status"] == "success" and summary["frames"] == 30
    with open_catalog(tmp_path) as catalog:
        run = catalog[summary["uid"]]
        assert run.metadata["start"]["acquisition"] == "detector"
        t0 = float(run["injection"]["injector_fire_time_a"].read()[0])
        frame_times = np.asarray(run["primary"]["saxs_frame_time"].read()) - t0
        heater_times = np.sort(np.asarray(run["temperature"]["ts_heater_temperature"].read())) - t0
    # the detector kept the schedule: the timing system fired each frame on time but the first
    # ones, whose start times had passed or come too soon when it was armed at the injection:
    # they start ARMING_S late and catch up within the schedule's dead times (catch_up); the
    # heater was read at each frame's mid-exposure, every 5 s to the end of the reaction (60 s)
    # and every 5 s of the 30 s cool-down after it
    offsets = np.asarray(run.metadata["start"]["frame_offsets_s"])
    late = frame_times - offsets
    assert late[0] == pytest.approx(ARMING_S, abs=1e-5) and np.all(np.diff(late) <= 1e-5)
    assert np.all(late >= -1e-5) and np.all(np.abs(late[15:]) < 1e-5), late  # epoch s: ~2e-7 s steps
    nearest = np.min(np.abs(heater_times[:, None] - (offsets + 0.0375)), axis=0)  # as planned
    assert np.all(nearest < 0.01), (f"frames without a heater reading at mid-exposure: "
                                     f"{np.flatnonzero(nearest >= 0.01).tolist()}, the nearest "
                                     f"{nearest[nearest >= 0.01].round(4).tolist()} s off")
    later = heater_times[heater_times > frame_times[-1] + 1.0]
    assert np.all(np.diff(later) < 5.5) and later[-1] == pytest.approx(90.0, abs=0.5)


def test_piston_choice_conflicts_with_the_double_injection(tmp_path, capsys):
    from ncsynth.cli import main

    code = main(["dry-run", "--data-dir", str(tmp_path), "--second-injection", "240",
                 "--piston", "B"])
    assert code == 2 and "--piston" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before the beamline or the catalog started


def test_an_empty_piston_is_refused_before_anything_heats(tmp_path):
    """Piston B chosen, its syringe left empty: the injector is asked before the run opens
    (before, FIRE was refused only after the ~10 min preheat and the background frames).
    Failures mid-run keeping their frames: test_protocol and test_double_injection (jams)."""
    from ncsynth.config import load_config
    from ncsynth.dryrun import dry_run

    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path)
    summary = dry_run(config, analysis=False, progress=False, beamline_options={"charge_b": None},
                      plan_kwargs={"piston": "B", "n_frames": 20},
                      recipe_kwargs={"cd_initial_molar": 0.027, "reaction_time_s": 60.0},
                      processes=())  # no writer process started for a run that never opens
    assert summary["exit_status"] == "fail" and summary["frames"] == 0
    assert "injector: piston B holds no syringe: not starting the synthesis (nothing heated)" \
        in summary["error"], summary["error"]
    assert summary["heater"] == "not commanded safe yet"  # never switched on by this run
    with open_catalog(tmp_path) as catalog:
        assert len(catalog) == 0  # no run was opened


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 1), (signal.SIGTERM, 128 + 15),
                                             (signal.SIGHUP, 128 + 1)])
def test_ctrl_c_sigterm_and_sighup_abort_the_dry_run_safely_and_print_the_summary(
        tmp_path, sig, exit_code):
    """Ctrl-C, a service manager's SIGTERM and a closed terminal's SIGHUP all abort the run:
    the heater confirmed safe and the injector disarmed (as the run's ``safety`` stream
    records from the devices' read-back), the run closed as "abort" with every frame, the
    summary printed, the exit code the shell expects (SIGTERM and SIGHUP used to kill the
    process in 0.3 s with no clean-up at all). The signal goes to the whole process group, as
    a terminal's Ctrl-C or hang-up and a service manager's stop do: the catalog writer's
    process must outlive it to close the run (a SIGTERM used to kill it)."""
    code, out, err = signalled_midway([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json",
                                       "--no-analysis", "--data-dir", str(tmp_path)],
                                      tmp_path, sig, after_events=30, env=ENV)
    assert code == exit_code, err[-2000:]
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["exit_status"] == "abort" and 1 <= summary["frames"] < 575
    if sig != signal.SIGINT:
        assert summary["terminated_by"] == sig.name
    with open_catalog(tmp_path) as catalog:
        run = catalog[summary["uid"]]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "abort"
        assert stop["reason"] == (f"terminated by {sig.name}" if sig != signal.SIGINT
                                  else "interrupted by the user (Ctrl-C)")
        assert stop["num_events"]["primary"] == summary["frames"]
        safety = run["safety"].read()
        heater_state = np.atleast_1d(safety["heater_safe_state"].values)
        assert len(heater_state) == 1 and str(heater_state[0]).startswith("confirmed safe")
        assert int(np.atleast_1d(safety["injector_armed"].values)[0]) == 0
    # the run was closed, nothing left to recover
    assert not list((tmp_path / "journal" / "active").glob("*.jsonl"))


@pytest.fixture
def small_disk(tmp_path):
    """A real 20 MB tmpfs, where the machine lets the tests mount one: full after ~70 frames
    (~270 kB a BSLZ4-compressed frame; with Blosc, 60 MB held 252 and the run took 41 s of
    wall time, 20 MB 30 s)."""
    with mounted_tmpfs(tmp_path / "small-disk", "20m") as mount_point:
        yield mount_point


def test_a_full_disk_ends_the_dry_run_with_a_clear_error_the_heater_safe_and_frames_counted(
        small_disk):
    """The data directory fills up mid-run: the dry run ends (exit 1, not a segfault) with a
    summary naming the disk-full cause and the file, the heater confirmed safe, and the
    frames that were kept counted (the journal's), not 0. With ``-v`` before the command: the
    process must end without the interpreter's teardown whatever global option comes first
    (it did not, and crashed with 139 after the summary)."""
    data = small_disk / "data"
    done = _ncsynth("-v", "dry-run", "--json", "--no-analysis", "--data-dir", str(data),
                    timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["exit_status"] == "fail"
    assert "No space left on device" in summary["error"] and str(data) in summary["error"]
    assert "\n" not in summary["error"]
    assert summary["heater"].startswith("confirmed safe")
    journals = list((data / "journal").glob("*/*.jsonl"))
    assert len(journals) == 1
    records = []
    for line in journals[0].read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line torn by the full disk
            pass
    primary = {r["doc"]["uid"] for r in records
               if r["name"] == "descriptor" and r["doc"]["name"] == "primary"}
    kept = sum(len(r["doc"]["seq_num"]) if r["name"] == "event_page" else 1 for r in records
               if r["name"] in ("event", "event_page") and r["doc"]["descriptor"] in primary)
    assert summary["frames"] == kept > 10
