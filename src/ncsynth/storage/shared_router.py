"""Tiled's API routers built once per process and shared by every in-process app (issue 18).

Each :func:`~ncsynth.storage.catalog.open_catalog` of an embedded catalog builds its own
in-process Tiled app (``tiled.server.app.build_app``), and most of that build is three
routers: ``tiled.server.router.get_router`` (~60 endpoint functions decorated onto a fresh
``APIRouter``, FastAPI analysing every signature) and the Zarr v2 and v3 routers. Measured on
the 2-core machine (``benchmarks/catalog_open.py``): opening a catalog again and reading it
costs 0.46 CPU-s, of which ``build_app`` ~0.23; with the routers shared 0.26, ``build_app``
0.015. A process that opens catalogs more than once (``ncsynth catalog migrate`` opens two,
an IPython user opening one again, ``replay`` run through ``main`` after an in-process run, the
test suite's workers) paid the routers every time.

Each router is a function of its arguments only (Tiled 0.2.20): the Zarr routers take none;
``get_router`` takes the query, serialization, deserialization and validation registries and
the authenticators, and reads no settings while it is built — the endpoints look the tree and
settings up per request through the app, and the registries when they answer; of their
contents only the query types registered at that moment shape the router, as search
parameters of three endpoints. FastAPI (0.165) includes a router in an app by reference, each
app with its own include context: the pattern of a module-level router included in several
apps. :func:`share_api_routers` wraps Tiled's builders so that a call with the very same
registry objects, the same query types registered and no authenticators (the embedded
catalog's, and the catalog server's with a single API key) returns the router built the first
time; any other call builds one as before.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_set_aside = False  # inside routers_built_per_app(): no sharing installed


def _shared_zarr_router(build):
    built: list = []

    def shared():
        with _lock:
            if not built:
                built.append(build())
            return built[0]

    return shared


def _shared_api_router(build):
    built: list[tuple[tuple, dict, object]] = []  # (registries, query types, router)

    def get_router(query_registry, serialization_registry, deserialization_registry,
                   validation_registry, authenticators):
        registries = (query_registry, serialization_registry, deserialization_registry,
                      validation_registry)
        if authenticators:
            return build(*registries, authenticators)
        query_types = dict(query_registry.name_to_query_type)
        with _lock:
            for known, known_query_types, router in built:
                if all(a is b for a, b in zip(known, registries)) and known_query_types == query_types:
                    return router
            router = build(*registries, authenticators)
            built.append((registries, query_types, router))
            return router

    return get_router


#: Tiled's router builders (names in ``tiled.server.app``) and how each is shared; get_router,
#: whose wrapper marks the sharing as installed, last.
SHARED_BUILDERS = {"get_zarr_router_v2": _shared_zarr_router,
                   "get_zarr_router_v3": _shared_zarr_router,
                   "get_router": _shared_api_router}


def share_api_routers() -> None:
    """Make ``tiled.server.app.build_app`` reuse the API and Zarr routers of an earlier app of
    this process where they would be built alike (idempotent)."""
    import tiled.server.app as tiled_app

    with _lock:
        if _set_aside or getattr(tiled_app.get_router, "shared_by_ncsynth", False):
            return
        for name, share in SHARED_BUILDERS.items():
            build = getattr(tiled_app, name)
            shared = share(build)
            shared.__wrapped__ = build
            shared.shared_by_ncsynth = True
            setattr(tiled_app, name, shared)


@contextlib.contextmanager
def routers_built_per_app():
    """Inside, every app builds its own routers with Tiled's builders, as before they were
    shared, and no open installs the sharing again: the baseline the sharing is measured
    (``benchmarks/catalog_open.py``) and tested against."""
    global _set_aside
    import tiled.server.app as tiled_app

    share_api_routers()
    with _lock:
        shared = {name: getattr(tiled_app, name) for name in SHARED_BUILDERS}
        for name, builder in shared.items():
            setattr(tiled_app, name, builder.__wrapped__)
        _set_aside = True
    try:
        yield
    finally:
        with _lock:
            for name, builder in shared.items():
                setattr(tiled_app, name, builder)
            _set_aside = False
