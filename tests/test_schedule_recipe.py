"""Frame schedule (§S.1.4) and recipe validation."""

import numpy as np
import pytest

from ncsynth.plans import Chemical, Recipe, check_schedule, frame_schedule


def test_default_schedule_matches_the_paper():
    t = frame_schedule()
    gaps = np.diff(t)
    assert len(t) == 575 and t[0] == 0.0
    assert gaps[0] == pytest.approx(0.075 + 0.022)          # ~100 ms at the start
    assert 90 < gaps[-1] < 120                               # ~100 s at the end
    assert 2.0 < t[-1] / 3600 < 2.2                          # ~2.1 h in all
    n = np.arange(1, 575)
    assert np.allclose(gaps, 0.075 + 0.022 * 1.015 ** (n - 1))


@pytest.mark.parametrize("time_s, spacing", [(0.0, {}), (1.0, {}), (60.0, {}), (7200.0, {}),
                                              (30.0, {"ratio": 1.0}), (500.0, {"ratio": 1.03})])
def test_frames_to_reach_is_the_fewest_frames_whose_last_starts_at_that_time(time_s, spacing):
    from ncsynth.plans.schedule import frames_to_reach

    n = frames_to_reach(time_s, **spacing)
    assert frame_schedule(n, **spacing)[-1] >= time_s
    assert n == 1 or frame_schedule(n - 1, **spacing)[-1] < time_s


def test_frames_to_reach_says_none_beyond_the_schedules_limits():
    from ncsynth.plans.schedule import MAX_DURATION_S, frames_to_reach

    assert frames_to_reach(MAX_DURATION_S + 1.0) is None         # a day at most
    assert frames_to_reach(3600.0, ratio=1.0) is None           # 20 000 frames reach 1940 s
    with pytest.raises(ValueError, match="time_s"):
        frames_to_reach(-1.0)


def test_ratio_one_gives_a_uniform_schedule():
    t = frame_schedule(5, 0.1, 0.05, 1.0)
    assert np.allclose(np.diff(t), 0.15)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_frames": 0}, "n_frames"),
    ({"integration_s": 0}, "integration_s"),
    ({"dead_time_s": -0.01}, "dead_time_s"),
    ({"ratio": 0.99}, "ratio"),
    ({"integration_s": float("nan")}, "integration_s"),
    ({"n_frames": 2000, "ratio": 2.0}, "overflows"),
])
def test_bad_schedule_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        frame_schedule(**kwargs)


def test_user_schedule_must_fit_the_exposure():
    assert np.allclose(check_schedule([0, 1, 2.5], 0.075), [0, 1, 2.5])
    with pytest.raises(ValueError, match="frames 2 and 3"):
        check_schedule([0, 1, 1.05], 0.075)
    with pytest.raises(ValueError, match="increasing|exposure"):
        check_schedule([0, 2, 1], 0.075)
    with pytest.raises(ValueError, match=">= 0"):
        check_schedule([-1, 2], 0.075)


def test_recipe_defaults_are_the_paper_and_round_trip():
    recipe = Recipe(operator="T. Prins", sample="CdSe-01").validate(320)
    assert recipe.injection_temperature_c == 290 and recipe.growth_temperature_c == 260
    assert recipe.reaction_time_s == 7200
    assert Recipe.from_metadata(recipe.to_metadata()) == recipe


@pytest.mark.parametrize("change, match", [
    ({"operator": ""}, "operator"),
    ({"injection_temperature_c": 350}, "exceeds"),
    ({"flask": (Chemical("TOPO", -1.0),)}, "mass"),
    ({"reaction_time_s": 0}, "reaction_time_s"),
    ({"cd_initial_molar": 0.5}, "cd_initial_molar"),
])
def test_bad_recipes_are_refused_with_the_field_named(change, match):
    base = dict(operator="op", sample="s")
    with pytest.raises(ValueError, match=match):
        Recipe(**{**base, **change}).validate(max_temperature_c=320)


def test_unknown_recipe_fields_are_refused():
    with pytest.raises(ValueError, match="unknown recipe fields"):
        Recipe.from_metadata({"operator": "a", "sample": "b", "temprature": 3})
