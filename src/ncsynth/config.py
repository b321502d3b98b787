"""Configuration: which hardware (hutch or simulated), ports, limits, data location.

Read from the packaged ``default.toml``, overlaid by a user file (``--config``
or the ``NCSYNTH_CONFIG`` environment variable); ``NCSYNTH_DATA_DIR`` overrides
``data.dir``. Code asks the configuration, never ``if sim:`` on its own.

Every layer is checked against :data:`ncsynth.config_schema.SCHEMA` before it is
merged: an unknown section or key, a wrong type or an out-of-range value raises
:class:`ConfigError`, one line naming the file (or variable), the key and the reason.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from importlib import resources
from pathlib import Path

from ncsynth.config_schema import SCHEMA

HARDWARE = SCHEMA["hardware"].options


class ConfigError(ValueError):
    """A configuration refused: ``<file>: <key> <reason>`` in one line."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _suggestion(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"


def _checked(tree: dict, schema: dict, source: str, section: str = "") -> dict:
    """``tree`` with every value checked against ``schema`` (plain forms: ints given for
    reals become floats); ConfigError on the first key that is unknown or bad."""
    out = {}
    for key, value in tree.items():
        name = f"[{section}] {key}" if section else key
        full = f"{section}.{key}" if section else key
        rule = schema.get(key)
        if rule is None:
            if isinstance(value, dict):
                raise ConfigError(f"{source}: [{full}]: unknown section"
                                  f"{_suggestion(key, schema)}")
            raise ConfigError(f"{source}: {name}: unknown key{_suggestion(key, schema)}")
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be the section [{full}], got {value!r}")
            out[key] = _checked(value, rule, source, full)
            continue
        try:
            out[key] = rule.check(name, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return out


def default_config() -> dict:
    """The packaged defaults (checked against the schema)."""
    text = resources.files("ncsynth").joinpath("default.toml").read_text()
    return _checked(tomllib.loads(text), SCHEMA, "default.toml")


def _user_file(path: Path, source: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist{source}")
    try:
        with path.open("rb") as f:
            tree = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    return _checked(tree, SCHEMA, str(path))


def load_config(path: str | os.PathLike | None = None, **overrides) -> dict:
    """Defaults + user file + environment + keyword overrides (e.g. ``hardware="sim"``),
    each checked against the schema (:class:`ConfigError`, a ValueError, if refused)."""
    config = default_config()
    if not path and os.environ.get("NCSYNTH_CONFIG"):
        path, named_by = os.environ["NCSYNTH_CONFIG"], " (named by NCSYNTH_CONFIG)"
    else:
        named_by = ""
    if path:
        config = _merge(config, _user_file(Path(path).expanduser(), named_by))
    if os.environ.get("NCSYNTH_DATA_DIR"):
        config = _merge(config, _checked({"data": {"dir": os.environ["NCSYNTH_DATA_DIR"]}},
                                         SCHEMA, "NCSYNTH_DATA_DIR"))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return _merge(config, _checked(overrides, SCHEMA, "load_config() argument"))


def catalog_databases(config: dict) -> dict:
    """``{"database_uri": ..., "tables_uri": ...}`` of ``[catalog]`` (None where empty: the
    SQLite files of the data directory), the keyword arguments of
    :func:`ncsynth.storage.open_catalog`."""
    section = config.get("catalog", {})
    return {key: section.get(key) or None for key in ("database_uri", "tables_uri")}


def subscribe_address(config: dict, address: str | None = None) -> str:
    """The 0MQ proxy output an analysis service subscribes to: ``address``, else ``[analysis]
    subscribe_address``; ValueError if there is none, or if a TCP one (``host:port`` or
    ``tcp://host:port``, as bluesky's ``RemoteDispatcher`` takes it) names no host or port."""
    address = address or (config.get("analysis") or {}).get("subscribe_address")
    if not address:
        raise ValueError("no proxy to subscribe to: give --proxy host:port or set "
                         "[analysis] subscribe_address in the configuration")
    protocol, _, rest = address.rpartition("://")
    if protocol in ("", "tcp"):
        host, _, port = rest.rpartition(":")
        if not (host and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"proxy address {address!r}: give host:port, the port 1 to 65535")
    elif not rest:
        raise ValueError(f"proxy address {address!r}: nothing after {protocol}://")
    return address


def data_path(config: dict) -> Path:
    """The data directory's path, not created; ValueError naming it if it is a file."""
    path = Path(config["data"]["dir"]).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: the data directory is a file, not a directory")
    return path


def data_dir(config: dict) -> Path:
    """The data directory, created if needed; ValueError naming it if it is a file or cannot
    be created (a read-only medium, no permission, a parent that cannot hold directories)."""
    path = data_path(config)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{path}: cannot create the data directory: "
                         f"{exc.strerror or exc}") from None
    return path
