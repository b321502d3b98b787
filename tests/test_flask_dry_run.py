"""The default dry run's simulated flask ends like the §S.1.2 synthesis (seed 000 §S.1.3): one
end-to-end check of what tests/test_flask_protocol.py checks on the pure models (no analysis)."""

import pytest

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run


def test_default_dry_run_ends_at_the_papers_radius_and_concentration(tmp_path):
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path)
    summary = dry_run(config, seed=5, progress=False, analysis=False)
    assert summary["exit_status"] == "success"
    truth = summary["simulator_truth"]
    assert truth["mean_radius_nm"] == pytest.approx(2.36, abs=0.12)
    assert truth["concentration_molar"] * 1e6 == pytest.approx(24.0, abs=4.0)
    if "nucleation_fraction" in truth:  # the flask recorder's (analysis side), when it reports it
        assert 0.15 <= truth["nucleation_fraction"] <= 0.20
