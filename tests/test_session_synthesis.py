"""Two syntheses in one simulated session (jumping clock): the live fit table, the end-of-run
summary and figure, a spent piston refused before anything heats, ``sim.new_batch()`` for
the second synthesis, scan ids that go on. Real RunEngine, simulators, catalog and analysis."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

from ncsynth.config import load_config  # noqa: E402
from ncsynth.errors import RefusedToStart  # noqa: E402
from ncsynth.session import session_namespace  # noqa: E402

#: 20 frames 0.5 s apart from 0.5 s after injection: particles are fitted from ~1.5 s.
SCHEDULE_S = [0.5 * i for i in range(1, 21)]


def _synthesis(ns):
    recipe = ns["Recipe"](operator="t", sample="CdSe-session", reaction_time_s=12,
                          cd_initial_molar=round(ns["sim"].cd_initial_molar(), 6))
    return ns["hot_injection"](ns["heater"], ns["injector"], ns["detector"], recipe,
                               schedule_s=SCHEDULE_S, n_background=2, timer=ns["timer"])


def test_two_syntheses_in_one_session_with_the_live_table_and_summary(tmp_path):
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path / "data")
    config["catalog"]["server_url"] = ""
    ns = session_namespace(config, sim=True, speed=0, live_plots=False)
    shown = io.StringIO()
    ns["progress"].terminal.file = shown  # the table and summary print through the terminal
    try:
        RE, cat, sim = ns["RE"], ns["cat"], ns["sim"]
        (first,) = RE(_synthesis(ns))
        text = shown.getvalue()
        header = next(line for line in text.splitlines() if "radius_nm" in line)
        for column in ("time_s", "temperature_c", "sigma_nm", "concentration_uM",
                       "yield_fraction", "chi2_reduced"):
            assert column in header
        rows = [line for line in text.splitlines() if line.startswith("|") and "nan" not in line
                and line.count("|") == header.count("|") and line not in (header,)]
        assert len(rows) >= 10  # frames with a fit: radius, width, concentration, yield
        summary = ns["end_of_run"].last
        assert summary["uid"] == first and summary["exit_status"] == "success"
        assert summary["frames"] == len(SCHEDULE_S) and summary["final_radius_nm"] > 0.5
        assert summary["figures"] and all(p.endswith(".png") for p in summary["figures"])
        assert f"run  {first}  scan 1  success, 20 frames" in text
        assert "radius" in str(ns["analysis"].summary())  # readable at the prompt

        setpoint, runs = ns["heater"].setpoint.get(), len(cat)
        with pytest.raises(RefusedToStart, match="piston A is spent.*sim.new_batch"):
            RE(_synthesis(ns))
        assert len(cat) == runs and ns["heater"].setpoint.get() == setpoint  # nothing started

        sim.new_batch()
        assert sim.world.reaction.concentration_molar == 0 and sim.world.flask.temperature_c < 30
        (second,) = RE(_synthesis(ns))
        assert [r.metadata["start"]["uid"] for r in cat[-2:]] == [first, second]
        assert [r.metadata["start"]["scan_id"] for r in cat[-2:]] == [1, 2]
        assert cat[-1].metadata["stop"]["exit_status"] == "success"
        assert ns["end_of_run"].last["final_radius_nm"] > 0.5  # a fresh flask nucleated again
        assert cat.analysis(second)["fits"].read()["radius_nm"].size == len(SCHEDULE_S)
    finally:
        ns["close"]()
