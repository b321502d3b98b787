"""The reusable checks of ncsynth.validation: finite, bounded, booleans are not numbers."""

import math

import numpy as np
import pytest

from ncsynth import validation


@pytest.mark.parametrize("value", [True, False, np.True_, "1", None, [1.0]])
def test_only_numbers_are_numbers(value):
    with pytest.raises(TypeError, match="cooldown_s must be a finite number"):
        validation.real("cooldown_s", value, minimum=0, unit="s")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, np.float64("nan")])
def test_a_number_must_be_finite(value):
    with pytest.raises(ValueError, match="cooldown_s"):
        validation.real("cooldown_s", value)


def test_bounds_are_inclusive_or_exclusive_and_worded_with_the_unit():
    assert validation.real("t_s", 0, minimum=0) == 0.0
    assert validation.real("t_s", np.float32(86400), maximum=86400) == 86400.0
    assert type(validation.real("t_s", 3)) is float
    with pytest.raises(ValueError) as refused:
        validation.real("exposure_s", 0, above=0, maximum=3600, unit="s")
    assert str(refused.value) == "exposure_s must be a finite number > 0 and <= 3600 s, got 0"
    with pytest.raises(ValueError, match=r"<= 3276\.7 °C, got 10000"):
        validation.real("max_temperature_c", 10000, maximum=3276.7, unit="°C")


def test_integers_are_integers_not_floats_or_booleans():
    assert validation.integer("n_frames", np.int64(5), minimum=1) == 5
    for value in (5.0, True, np.True_, "5"):
        with pytest.raises(TypeError, match="n_frames must be an integer"):
            validation.integer("n_frames", value, minimum=1)
    with pytest.raises(ValueError, match="n_frames must be an integer >= 1 and <= 20000, got 0"):
        validation.integer("n_frames", 0, minimum=1, maximum=20000)


def test_choices_and_text():
    assert validation.choice("hardware", "sim", ("sim", "hutch")) == "sim"
    with pytest.raises(ValueError, match="hardware must be one of 'sim', 'hutch', got 'SIM'"):
        validation.choice("hardware", "SIM", ("sim", "hutch"))
    assert validation.text("server_url", "", empty=True) == ""
    with pytest.raises(ValueError, match="non-empty"):
        validation.text("url", "  ")
    with pytest.raises(TypeError, match="dir must be a string, got 5"):
        validation.text("dir", 5)
