"""Configuration: which hardware (hutch or simulated), ports, limits, data location.

Read from the packaged ``default.toml``, overlaid by a user file (``--config``
or the ``NCSYNTH_CONFIG`` environment variable); ``NCSYNTH_DATA_DIR`` overrides
``data.dir``. Code asks the configuration, never ``if sim:`` on its own.
"""

from __future__ import annotations

import copy
import os
import tomllib
from importlib import resources
from pathlib import Path

HARDWARE = ("sim", "hutch")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def default_config() -> dict:
    """The packaged defaults."""
    text = resources.files("ncsynth").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def load_config(path: str | os.PathLike | None = None, **overrides) -> dict:
    """Defaults + user file + environment + keyword overrides (e.g. ``hardware="sim"``)."""
    config = default_config()
    path = path or os.environ.get("NCSYNTH_CONFIG")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"configuration file {p} does not exist")
        with p.open("rb") as f:
            try:
                config = _merge(config, tomllib.load(f))
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"configuration file {p} is not valid TOML: {exc}") from None
    if os.environ.get("NCSYNTH_DATA_DIR"):
        config["data"]["dir"] = os.environ["NCSYNTH_DATA_DIR"]
    config = _merge(config, {k: v for k, v in overrides.items() if v is not None})
    if config.get("hardware") not in HARDWARE:
        raise ValueError(f"hardware must be one of {HARDWARE}, got {config.get('hardware')!r}")
    return config


def data_dir(config: dict) -> Path:
    """The data directory, created if needed."""
    path = Path(config["data"]["dir"]).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
