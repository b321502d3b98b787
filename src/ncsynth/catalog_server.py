"""The run catalog at scale: a Tiled server over the same catalog, and its clients.

``ncsynth catalog serve`` (:func:`serve_catalog`) serves the catalog of the configured data
directory — the same ``catalog.db``, ``tables.sqlite``, ``arrays/`` and ``frames/`` that the
embedded catalog (:func:`ncsynth.storage.open_catalog`) uses — over HTTP with single-user
API-key authentication, bound to 127.0.0.1 unless another host is given. At a facility the
catalog and tables can live in PostgreSQL instead (``[catalog] database_uri`` and
``tables_uri``; see ``docs/catalog.md``).

Clients (:func:`open_remote_catalog`, or :func:`open_configured_catalog` which picks the
server or the embedded catalog from the configuration) get a :class:`RemoteCatalog`: the
embedded :class:`~ncsynth.storage.Catalog`'s lookups (full uid, partial uid, scan id,
``-1``), ``documents()`` for replay and, with a local data directory for the journals,
``writer()`` for a RunEngine. Runs are readable while they are written: the writer commits
at least once a second (:mod:`ncsynth.storage.writer`), the server reads the database on
every request.

The API key comes from the environment variable named by ``[catalog] api_key_env`` (default
``TILED_API_KEY``), from a file (:func:`ncsynth.api_keys.api_key_from_file`, ``--api-key-file``) or from the
argument, never from the configuration file (nor, best, from the command line, where every
local user sees it in the process list). The server refuses to start without one: even with
``allow_anonymous_read=True`` (anyone who can connect may read) writing needs the key. The
access log shows ``api_key=[redacted]`` for requests that carry the key in their query.
"""

from __future__ import annotations

import copy
import errno
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx
from bluesky_tiled_plugins.exporters import json_seq_exporter
from tiled.client import Context
from tiled.client.utils import ClientError
from tiled.config import Authentication
from tiled.media_type_registration import default_serialization_registry
from tiled.server.app import build_app

from ncsynth.api_keys import DEFAULT_API_KEY_ENV, api_key_from, check_api_key, server_api_key
from ncsynth.api_keys import catalog_section as _catalog_section
from ncsynth.config import catalog_databases
from ncsynth.storage import Catalog
from ncsynth.storage.catalog import catalog_adapter
from ncsynth.storage.fastapi_overrides import skip_redundant_settings_override
from ncsynth.storage.layout import DataDirectory
from ncsynth.storage.shared_router import share_api_routers
from ncsynth.storage.write_lock import serialize_writes

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class CatalogAuthenticationError(PermissionError):
    """The catalog server refused the API key (or none was given)."""


# -- configuration --------------------------------------------------------------------------
def configured_layout(config: dict) -> DataDirectory:
    """The data directory of ``[data] dir`` with the databases of ``[catalog] database_uri``
    and ``tables_uri`` (empty: ``catalog.db`` and ``tables.sqlite`` in it); ValueError naming
    the key of a URI that is not ``sqlite:///`` or ``postgresql://``."""
    _catalog_section(config)
    return DataDirectory.at(config["data"]["dir"], **catalog_databases(config))


def storage_locations(config: dict) -> dict:
    """Where the served catalog lives: ``{"layout", "database", "tables"}``.

    ``database``: ``[catalog] database_uri`` or ``sqlite:///<data_dir>/catalog.db``;
    ``tables``: ``[catalog] tables_uri`` or ``sqlite:///<data_dir>/tables.sqlite``.
    ``layout`` is the data directory (arrays, frames, journals) from ``[data] dir``.
    """
    layout = configured_layout(config)
    return {"layout": layout, "database": layout.catalog_uri, "tables": layout.tables_storage_uri}


# -- server ---------------------------------------------------------------------------------
def catalog_tree(config: dict, *, readable_storage: Iterable[str | os.PathLike] = ()):
    """The Tiled catalog adapter over the configured storage (created on first use): the one
    :func:`ncsynth.storage.open_catalog` serves in-process
    (:func:`ncsynth.storage.catalog.catalog_adapter`), with ``[catalog] database_uri`` and
    ``tables_uri`` if the configuration gives them."""
    return catalog_adapter(configured_layout(config), readable_storage=readable_storage)


def catalog_app(config: dict, api_key: str, *, allow_anonymous_read: bool = False,
                readable_storage: Iterable[str | os.PathLike] = ()):
    """The ASGI (FastAPI) app serving :func:`catalog_tree` with single-user API-key
    authentication; ``allow_anonymous_read`` lets clients without a key read (not write)."""
    check_api_key(api_key)
    if not isinstance(allow_anonymous_read, bool):
        raise TypeError(f"allow_anonymous_read must be True or False, got {allow_anonymous_read!r}")
    tree = catalog_tree(config, readable_storage=readable_storage)
    default_serialization_registry.register("table", "application/json-seq", table_rows_for_the_browser)
    share_api_routers()  # one set of API routers for every app of this process
    app = build_app(tree, Authentication(single_user_api_key=api_key,
                                         allow_anonymous_access=allow_anonymous_read),
                    serialization_registry=default_serialization_registry)
    skip_redundant_settings_override(app)  # FastAPI would rebuild every request's dependencies
    return serialize_writes(app, configured_layout(config))  # writers on the directory take turns


def table_rows_for_the_browser(mimetype, df, metadata):
    """A table as ``application/json-seq`` without the RFC 7464 record separator: one JSON
    row per line. The browser interface tiled 0.2.20 ships (``/ui``) splits the body on line
    feeds and parses each line, so the separator that tiled's own serializer now puts before
    every row (tiled issue #1378, PR #1520 changed the server, not the bundled interface)
    made every row unreadable there: each table showed "No rows". No ncsynth client reads
    tables this way (Tiled's Python client takes Arrow; a run's documents have their own
    exporter, read by a client that takes either framing)."""
    from tiled.serialization.table import json_sequence

    for chunk in json_sequence(mimetype, df, metadata):
        yield chunk.removeprefix(b"\x1e")


def _port_from(config: dict, port: int | None) -> int:
    if port is None:
        url = _catalog_section(config).get("server_url") or ""
        port = urlsplit(url).port if url else None
        port = DEFAULT_PORT if port is None else port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
    return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedactApiKey(logging.Filter):
    """Replace the value of every ``api_key=`` query parameter in a log record's message
    arguments (uvicorn's access log lists each request's path and query) by ``[redacted]``."""

    PATTERN = re.compile(r"(api_key=)[^&\s\"]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1[redacted]", record.msg)
        return True


def _uvicorn_log_config() -> dict:
    """uvicorn's own logging configuration with :class:`RedactApiKey` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_api_key"] = {"()": RedactApiKey}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_api_key")
    return config


def serve_catalog(config: dict, host: str = DEFAULT_HOST, port: int | None = None,
                  api_key: str | None = None, *, allow_anonymous_read: bool = False,
                  log_level: str = "info") -> None:
    """Serve the configured catalog until interrupted (Ctrl-C / SIGTERM). Blocks.

    Parameters
    ----------
    config : the configuration (``ncsynth.config.load_config``): ``[data] dir``, and in
        ``[catalog]`` ``api_key_env``, optional ``database_uri``/``tables_uri``
        (PostgreSQL at a facility) and ``server_url`` (its port is the default ``port``).
    host : interface to bind; 127.0.0.1 by default (this machine only). Give ``0.0.0.0`` or
        the machine's address to serve the network.
    port : TCP port; default the port of ``[catalog] server_url``, else 8000.
    api_key : the single-user API key; default the environment variable named by
        ``[catalog] api_key_env``. Required (ValueError without one): clients send it as
        ``api_key``; ``allow_anonymous_read=True`` only lets clients without it read.
    """
    import uvicorn
    from sqlalchemy.engine import make_url

    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty str, got {host!r}")
    port = _port_from(config, port)
    key = server_api_key(config, api_key)
    app = catalog_app(config, key, allow_anonymous_read=allow_anonymous_read)
    where = storage_locations(config)
    listening = _bound_socket(host, port)  # before the address is announced
    if not _is_loopback(host):
        logger.warning("catalog server bound to %s: reachable from the network%s", host,
                       " and readable without an API key" if allow_anonymous_read else "")
    database = make_url(where["database"]).render_as_string(hide_password=True)
    print(f"ncsynth catalog server: http://{host}:{port}  catalog {database}  "
          f"data {where['layout'].root}  (API key required{' to write' if allow_anonymous_read else ''})",
          file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                           log_config=_uvicorn_log_config()))
    with listening:
        server.run(sockets=[listening])


def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for the server (uvicorn listens on it); OSError in
    one line if the address is in use or not this machine's. Bound here, the command says so
    before it prints the address it would serve (uvicorn's own bind told it after, exit 3)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        hint = " (another server there?)" if exc.errno == errno.EADDRINUSE else ""
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}{hint}") from None
    return listening


# -- clients --------------------------------------------------------------------------------
class RemoteCatalog(Catalog):
    """A catalog served by ``ncsynth catalog serve``; the embedded :class:`Catalog`'s API.

    Lookups (``cat[-1]``, ``cat[42]``, ``cat["3f2a9"]``), ``len``, ``documents``, ``client``.
    ``writer()`` and ``recover()`` need a local data directory for the runs' journals
    (``data_dir`` of :func:`open_remote_catalog`); detector files must be in a directory the
    server can read (its ``frames/``).
    """

    _embedded = False  # writer(worker="process") writes embedded catalogs only

    def __init__(self, url: str, context: Context, layout: DataDirectory | None = None):
        self.url = url
        try:
            super().__init__(layout, context)
        except ClientError as err:
            raise _authentication_error(err, url) from None
        self.where = url  # lookups' messages name the server rather than a directory

    def __repr__(self) -> str:
        return f"<RemoteCatalog {self.url!r} with {len(self)} runs>"

    def _needs_layout(self, what: str) -> None:
        if self.layout is None:
            raise ValueError(f"RemoteCatalog.{what}() needs a local data directory for the journals: "
                             f"open_remote_catalog(url, api_key, data_dir=...)")

    def writer(self, **options):
        self._needs_layout("writer")
        return super().writer(**options)

    def recover(self):
        self._needs_layout("recover")
        return super().recover()


def _authentication_error(err: ClientError, url: str) -> Exception:
    if err.response.status_code in (401, 403):
        return CatalogAuthenticationError(
            f"the catalog server {url} refused the API key ({err.response.status_code}): "
            f"check the key (the server's [catalog] api_key_env variable)")
    return err


def open_remote_catalog(url: str, api_key: str | None, *,
                        data_dir: str | os.PathLike | None = None) -> RemoteCatalog:
    """Connect to the catalog server at ``url`` with ``api_key``.

    ``api_key`` None connects without one (works only if the server allows anonymous reads).
    ``data_dir``: local data directory for the journals of runs written through
    :meth:`RemoteCatalog.writer`. Raises :class:`CatalogAuthenticationError` when the server
    refuses the key, ``ConnectionError`` when nothing answers at ``url``.
    """
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url must be an http(s):// URL of a catalog server, got {url!r}")
    if api_key is not None:
        check_api_key(api_key)
    layout = DataDirectory.at(data_dir) if data_dir is not None else None
    if layout is not None:
        layout.create()
    try:
        context, node_path = Context.from_any_uri(url, api_key=api_key)
    except httpx.TransportError as err:
        raise ConnectionError(f"no catalog server answers at {url}: {err}") from None
    except ClientError as err:
        raise _authentication_error(err, url) from None
    if node_path:
        context.close()
        raise ValueError(f"url must be the catalog server's root (e.g. http://host:8000), got {url!r}")
    if api_key is None and context.server_info.authentication.required:
        context.close()
        raise CatalogAuthenticationError(f"the catalog server {url} requires an API key")
    default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    return RemoteCatalog(url, context, layout)


def open_configured_catalog(config: dict) -> Catalog:
    """The catalog the configuration names: the server at ``[catalog] server_url`` (API key
    from the variable named by ``api_key_env``, journals in ``[data] dir``), or the embedded
    catalog in ``[data] dir`` when ``server_url`` is empty."""
    from ncsynth.storage import open_catalog

    url = _catalog_section(config).get("server_url") or ""
    data_dir = config["data"]["dir"]
    if not url:
        return open_catalog(data_dir, **catalog_databases(config))
    key = api_key_from(config)
    if key is None:
        env_name = _catalog_section(config).get("api_key_env") or DEFAULT_API_KEY_ENV
        raise ValueError(f"[catalog] server_url is {url!r} but the API key variable {env_name} is not set")
    return open_remote_catalog(url, key, data_dir=data_dir)
