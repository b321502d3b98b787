"""The configuration checked against its schema: typos, wrong types and out-of-range values
refused in one line naming the file, the key and the reason; the CLI exits 2 on them."""

import os
import subprocess
import sys
import tomllib
from importlib import resources

import pytest

from ncsynth.config import ConfigError, load_config
from ncsynth.config_schema import SCHEMA, Key

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
ENV.pop("NCSYNTH_CONFIG", None)
ENV.pop("NCSYNTH_DATA_DIR", None)


@pytest.fixture(autouse=True)
def _no_user_environment(monkeypatch):
    monkeypatch.delenv("NCSYNTH_CONFIG", raising=False)
    monkeypatch.delenv("NCSYNTH_DATA_DIR", raising=False)


BAD = [  # (file body, what the one-line message must name)
    ('[heater]\nmax_temprature_c = 250\n', ["[heater] max_temprature_c", "unknown key",
                                             "max_temperature_c"]),
    ('[heatr]\nurl = "/dev/ttyUSB0"\n', ["[heatr]", "unknown section"]),
    ('[data]\ndri = "/tmp/x"\n', ["[data] dri", "unknown key", "dir"]),
    ('hardware = "SIM"\n', ["hardware", "'sim'", "'SIM'"]),
    ('[data]\ndir = 5\n', ["[data] dir", "string", "5"]),
    ('[heater]\nmax_temperature_c = 10000\n', ["[heater] max_temperature_c", "3276.7", "10000"]),
    ('[heater]\nsettle_time_s = 1e12\n', ["[heater] settle_time_s", "<= 3600"]),
    ('[detector]\nexposure_s = -1\n', ["[detector] exposure_s", "> 0", "-1"]),
    ('[injector]\nreply_timeout_s = 0\n', ["[injector] reply_timeout_s", "> 0"]),
    ('[heater]\nslave_address = true\n', ["[heater] slave_address", "integer", "True"]),
    ('[heater]\nslave_address = 1.5\n', ["[heater] slave_address", "integer"]),
    ('[simulation]\nspeed = inf\n', ["[simulation] speed", "inf"]),
    ('[flow.pump_cd]\ndiameter_mm = 80.0\n', ["[flow.pump_cd] diameter_mm", "<= 50"]),
    ('[flow.oven]\nreply_timeout_s = 0\n', ["[flow.oven] reply_timeout_s", "> 0"]),
    ('heater = 3\n', ["heater", "section [heater]"]),
    ('[heater\n', ["not valid TOML"]),
]


@pytest.mark.parametrize("body, names", BAD, ids=[b.split("\n")[-2] or b for b, _ in BAD])
def test_a_bad_configuration_is_refused_naming_file_key_and_reason(tmp_path, body, names):
    path = tmp_path / "user.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for name in names:
        assert name in message


def test_a_configuration_saved_in_another_encoding_is_refused_naming_the_file(tmp_path):
    """An editor that saved the file in Latin-1 (a comment's °C is byte 0xb0): one line naming
    the file (it was Python's UnicodeDecodeError text, without the file)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes("[heater]\n# up to 290 °C\nmax_temperature_c = 300.0\n".encode("latin-1"))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"{path}: not valid TOML: not UTF-8 text (byte 21)"


def test_the_same_check_applies_to_the_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.toml"
    path.write_text('[injector]\njam_timeout_s = 0\n')
    monkeypatch.setenv("NCSYNTH_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"\[injector\] jam_timeout_s"):
        load_config()


def test_a_missing_configuration_file_is_an_error_naming_it(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match=f"{missing}: configuration file does not exist"):
        load_config(missing)
    monkeypatch.setenv("NCSYNTH_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="NCSYNTH_CONFIG"):
        load_config()


def test_a_good_file_overlays_the_defaults_in_plain_types(tmp_path, monkeypatch):
    path = tmp_path / "good.toml"
    path.write_text('hardware = "hutch"\n[heater]\nmax_temperature_c = 300\n'
                    '[flow.scan]\nn_blank = 0\n')
    monkeypatch.setenv("NCSYNTH_DATA_DIR", str(tmp_path / "data"))
    config = load_config(path)
    assert config["hardware"] == "hutch"
    assert config["heater"]["max_temperature_c"] == 300.0
    assert isinstance(config["heater"]["max_temperature_c"], float)   # an int given for °C
    assert config["heater"]["settle_time_s"] == 20.0                  # kept from the defaults
    assert config["flow"]["scan"]["n_blank"] == 0
    assert config["data"]["dir"] == str(tmp_path / "data")
    assert load_config(path, hardware="sim")["hardware"] == "sim"
    with pytest.raises(ConfigError, match="hardware"):
        load_config(path, hardware="simulated")


def _leaves(tree: dict, prefix=""):
    """(dotted key, value) of every leaf of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def test_the_schema_and_the_packaged_defaults_name_the_same_keys():
    defaults = tomllib.loads(resources.files("ncsynth").joinpath("default.toml").read_text())
    assert dict(_leaves(defaults)).keys() == dict(_leaves(SCHEMA)).keys()
    assert all(isinstance(rule, Key) for _, rule in _leaves(SCHEMA))


def test_the_temperature_bound_is_the_heater_register_limit():
    from ncsynth.devices.heater import REGISTER_LIMIT

    assert SCHEMA["heater"]["max_temperature_c"].maximum == REGISTER_LIMIT


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [["dry-run"], ["recover"], ["replay", "-1"],
                                     ["flow", "dry-run"], ["catalog", "serve"]])
def test_the_cli_refuses_a_bad_configuration_in_one_line_before_touching_data(tmp_path, command):
    path = tmp_path / "typo.toml"
    path.write_text('[heater]\nmax_temprature_c = 250\n')
    data = tmp_path / "data"
    result = _cli(*command, "--config", str(path), "--data-dir", str(data))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{path}: [heater] max_temprature_c: unknown key" in result.stderr
    assert not data.exists()                       # nothing created, let alone a run


def test_the_cli_refuses_a_missing_configuration_file(tmp_path):
    result = _cli("recover", "--config", str(tmp_path / "nowhere.toml"),
                  "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "nowhere.toml: configuration file does not exist" in result.stderr
    assert not (tmp_path / "data").exists()
