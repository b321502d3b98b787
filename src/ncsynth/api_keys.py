"""The catalog server's API key: where it comes from and what Tiled accepts
(:mod:`ncsynth.catalog_server`). Light (no Tiled), so that ``ncsynth catalog serve`` refuses
a missing or unusable key before it imports the server.
"""

from __future__ import annotations

import os

DEFAULT_API_KEY_ENV = "TILED_API_KEY"
MIN_API_KEY_LENGTH = 16  # characters; `python -c "import secrets; print(secrets.token_hex(32))"`


def catalog_section(config: dict) -> dict:
    """The ``[catalog]`` section of a configuration; TypeError if ``config`` is none."""
    if not isinstance(config, dict) or not isinstance(config.get("catalog", {}), dict):
        raise TypeError(f"config must be a configuration dict (ncsynth.config.load_config), got {config!r}")
    return config.get("catalog", {})


def api_key_from(config: dict, api_key: str | None = None) -> str | None:
    """``api_key`` if given, else the value of the environment variable named by
    ``[catalog] api_key_env`` (None if that is unset or empty)."""
    if api_key is not None:
        return api_key
    env_name = catalog_section(config).get("api_key_env") or DEFAULT_API_KEY_ENV
    return os.environ.get(env_name) or None


def api_key_from_file(path: str | os.PathLike) -> str:
    """The API key on the first line of the file ``path`` (keep it mode 0600); ValueError
    naming the file if it holds none."""
    with open(path, encoding="utf-8") as file:
        key = file.readline().strip()
    if not key:
        raise ValueError(f"{path}: the API key file is empty")
    return key


def check_api_key(api_key, *, what: str = "api_key") -> str:
    """Return ``api_key`` if Tiled can use it (letters and digits, >= 16 characters);
    ValueError/TypeError naming ``what`` otherwise."""
    if not isinstance(api_key, str):
        raise TypeError(f"{what} must be a str, got {type(api_key).__name__}")
    if not api_key.isalnum() or not api_key.isascii():
        raise ValueError(f"{what} must contain only ASCII letters and digits (Tiled passes it in URLs); "
                         f"generate one with: python -c \"import secrets; print(secrets.token_hex(32))\"")
    if len(api_key) < MIN_API_KEY_LENGTH:
        raise ValueError(f"{what} is {len(api_key)} characters long; use at least {MIN_API_KEY_LENGTH} "
                         f"(python -c \"import secrets; print(secrets.token_hex(32))\")")
    return api_key


def server_api_key(config: dict, api_key: str | None = None) -> str:
    """The key a catalog server is served with: ``api_key``, else the environment variable
    named by ``[catalog] api_key_env``, checked (:func:`check_api_key`); ValueError if there
    is none (a server never starts without one)."""
    key = api_key_from(config, api_key)
    if key is None:
        env_name = catalog_section(config).get("api_key_env") or DEFAULT_API_KEY_ENV
        raise ValueError(
            f"no API key: pass api_key or set the environment variable {env_name} "
            f"(e.g. export {env_name}=$(python -c \"import secrets; print(secrets.token_hex(32))\"))")
    return check_api_key(key)
