"""Tiled's routers built once per process (ncsynth.storage.shared_router): a catalog opened
again, or another catalog opened beside it, builds no router anew, and each serves its own runs;
calls that would build a different router still build one."""

from __future__ import annotations

import dataclasses
import threading

import tiled.server.app as tiled_app
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det
from tiled.media_type_registration import (default_deserialization_registry,
                                           default_serialization_registry)
from tiled.queries import Eq
from tiled.query_registration import QueryRegistry, default_query_registry
from tiled.validation_registration import default_validation_registry

from ncsynth.storage import open_catalog, shared_router
from ncsynth.storage.shared_router import share_api_routers


REGISTRIES = (default_query_registry, default_serialization_registry,
              default_deserialization_registry, default_validation_registry)


def _routers_built_anew() -> None:
    """Tiled's three routers, built as every app built them before they were shared."""
    for name in shared_router.SHARED_BUILDERS:
        builder = getattr(tiled_app, name).__wrapped__
        if name == "get_router":
            builder(*REGISTRIES, {})
        else:
            builder()


def _write_run(catalog, events: int) -> str:
    RE = RunEngine({})
    writer = catalog.writer()
    RE.subscribe(writer)
    (uid,) = RE(count([det], events))
    writer.close()
    return uid


def _analysed_opening(path, rebuilt) -> int:
    """Dependencies FastAPI analyses while a catalog is opened and its app answers."""
    rebuilt.clear()
    with open_catalog(path) as catalog:
        len(catalog)
    return len(rebuilt)


def test_a_catalog_opened_again_builds_none_of_the_routers(tmp_path, rebuilt):
    with open_catalog(tmp_path):
        pass
    rebuilt.clear()
    _routers_built_anew()
    routers = len(rebuilt)
    shared = _analysed_opening(tmp_path, rebuilt)
    with shared_router.routers_built_per_app():
        unshared = _analysed_opening(tmp_path, rebuilt)
    # what is left is the app's own: its authentication and graph routers, and the routes'
    # dependencies FastAPI resolves for this app at its first request
    assert routers > 1000 and unshared - shared >= 0.9 * routers, (routers, shared, unshared)


def test_catalogs_opened_beside_each_other_serve_their_own_runs(tmp_path):
    with open_catalog(tmp_path / "first") as first:
        first_uid = _write_run(first, 2)

    opened: dict[str, object] = {}

    def open_second():
        opened["second"] = open_catalog(tmp_path / "second")
        opened["second"].client  # noqa: B018 (its app, built in this thread)

    thread = threading.Thread(target=open_second)
    with open_catalog(tmp_path / "first") as again:  # the same catalog, opened again
        thread.start()
        again.client  # noqa: B018 (built while the other thread builds the second's)
        thread.join(60)
        second = opened["second"]
        try:
            second_uid = _write_run(second, 3)
            assert [run.metadata["start"]["uid"] for run in again.node.values()] == [first_uid]
            assert [run.metadata["start"]["uid"] for run in second.node.values()] == [second_uid]
            assert len(again[first_uid].primary.read()["det"]) == 2
            assert len(second[second_uid].primary.read()["det"]) == 3
            # a search still takes Tiled's query types (its parameters are in the router)
            assert len(again.client.search(Eq("start.uid", first_uid))) == 1
            assert len(again.client.search(Eq("start.uid", second_uid))) == 0
        finally:
            second.close()


def test_routers_that_would_differ_are_built_anew():
    share_api_routers()
    registries = REGISTRIES
    assert tiled_app.get_router(*registries, {}) is tiled_app.get_router(*registries, {})
    assert tiled_app.get_zarr_router_v3() is tiled_app.get_zarr_router_v3()
    # an authentication provider
    provider = {"example": object()}
    assert tiled_app.get_router(*registries, provider) is not tiled_app.get_router(*registries, provider)
    # another query registry, and the same one once a query type is registered in it
    queries = QueryRegistry()
    other = tiled_app.get_router(queries, *registries[1:], {})
    assert other is not tiled_app.get_router(*registries, {})
    assert tiled_app.get_router(queries, *registries[1:], {}) is other

    @queries.register(name="example_query")
    @dataclasses.dataclass
    class ExampleQuery:
        key: str

        def encode(self):
            return {"key": self.key}

    assert tiled_app.get_router(queries, *registries[1:], {}) is not other


def test_sharing_is_installed_once():
    share_api_routers()
    installed = tiled_app.get_router
    share_api_routers()
    assert tiled_app.get_router is installed and installed.shared_by_ncsynth
