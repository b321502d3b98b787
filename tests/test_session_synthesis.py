"""The README's session example, run as written in a simulated session with the jumping
clock: two syntheses (``sim.new_batch()`` between them), the live fit table, the end-of-run
summary and figure, a spent piston refused before anything heats, scan ids that go on.
Real RunEngine, simulators, catalog and analysis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

from fast_session import fast_session  # noqa: E402
from ncsynth.errors import RefusedToStart  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
N_FRAMES = 40


def readme_example() -> list[str]:
    """The lines of the README's session example (the block after its marker)."""
    text = README.read_text()
    block = re.search(r"<!-- session-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its session example"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_session_example_runs_as_written(tmp_path):
    lines = readme_example()
    assert sum("new_batch" in line for line in lines) == 1
    with fast_session(tmp_path) as (ns, shown):
        RE, cat, sim = ns["RE"], ns["cat"], ns["sim"]
        first_half = lines[:lines.index(next(x for x in lines if "new_batch" in x))]
        for line in first_half:
            exec(line, ns)
        first = cat[-1].metadata["start"]["uid"]
        text = shown.getvalue()
        header = next(line for line in text.splitlines() if "radius_nm" in line)
        for column in ("time_s", "temperature_c", "sigma_nm", "concentration_uM",
                       "yield_fraction", "chi2_reduced"):
            assert column in header
        rows = [line for line in text.splitlines() if line.startswith("|") and "nan" not in line
                and line.count("|") == header.count("|") and line != header]
        assert len(rows) >= 10  # frames with a fit: radius, width, concentration, yield
        summary = ns["end_of_run"].last
        assert summary["uid"] == first and summary["exit_status"] == "success"
        assert summary["frames"] == N_FRAMES and summary["final_radius_nm"] > 0.5
        assert summary["figures"] and all(p.endswith(".png") for p in summary["figures"])
        assert f"run  {first}  scan 1  success, {N_FRAMES} frames" in text
        assert "radius" in str(ns["analysis"].summary())  # readable at the prompt

        setpoint, runs = ns["heater"].setpoint.get(), len(cat)
        with pytest.raises(RefusedToStart, match="piston A is spent.*sim.new_batch"):
            exec(lines[1], ns)
        assert len(cat) == runs and ns["heater"].setpoint.get() == setpoint  # nothing started

        for line in lines[len(first_half):]:
            exec(line, ns)
        second = cat[-1].metadata["start"]["uid"]
        assert [r.metadata["start"]["uid"] for r in cat[-2:]] == [first, second]
        assert [r.metadata["start"]["scan_id"] for r in cat[-2:]] == [1, 2]
        assert cat[-1].metadata["stop"]["exit_status"] == "success"
        assert ns["end_of_run"].last["final_radius_nm"] > 0.5  # a fresh flask nucleated again
        assert cat.analysis(second)["fits"].read()["radius_nm"].size == N_FRAMES
        assert list(cat.search(ns["Key"]("sample") == "CdSe-07")) == [first, second]
