"""Tiled's override of its settings made redundant before FastAPI sees it
(ncsynth.storage.fastapi_overrides): FastAPI does not rebuild every request's dependencies, and
the app's settings still apply."""

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det
from fastapi import FastAPI
from starlette.testclient import TestClient
from tiled.server.settings import Settings, get_settings

from ncsynth.catalog_server import catalog_app
from ncsynth.storage import open_catalog
from ncsynth.storage.fastapi_overrides import skip_redundant_settings_override

API_KEY = "0123456789abcdef0123456789abcdef"


def test_the_embedded_catalog_takes_and_serves_a_run_without_rebuilding_dependencies(
        tmp_path, rebuilt):
    with open_catalog(tmp_path / "data") as catalog:
        catalog.client  # noqa: B018 (the app is built before counting)
        rebuilt.clear()
        RE = RunEngine({})
        writer = catalog.writer()
        RE.subscribe(writer)
        events = []
        RE.subscribe(lambda name, doc: events.append(doc["data"]["det"]), "event")
        (uid,) = RE(count([det], 3))
        writer.close()
        assert list(catalog[uid].primary.read()["det"].values) == events and len(events) == 3
        assert rebuilt == []


@pytest.mark.parametrize("anonymous", [True, False])  # the last leaves Tiled's shared settings as they were
def test_the_catalog_servers_settings_still_apply_without_rebuilding_dependencies(
        tmp_path, rebuilt, anonymous):
    config = {"data": {"dir": str(tmp_path / "data")}}
    app = catalog_app(config, API_KEY, allow_anonymous_read=anonymous)
    override = dict.__getitem__(app.dependency_overrides, get_settings)
    assert get_settings() is override() and get_settings().allow_anonymous_access is anonymous
    with TestClient(app) as client:
        client.get("/api/v1/metadata/")  # FastAPI builds its routes' dependencies once, now
        rebuilt.clear()
        assert client.get("/api/v1/metadata/").status_code == (200 if anonymous else 401)
        keyed = client.get("/api/v1/metadata/", headers={"Authorization": f"Apikey {API_KEY}"})
        assert keyed.status_code == 200
        assert rebuilt == []


def test_an_override_returning_other_settings_is_kept():
    app = FastAPI()
    app.dependency_overrides[get_settings] = lambda: Settings()  # a new object every time
    assert not skip_redundant_settings_override(app)
    assert app.dependency_overrides  # FastAPI still applies it on every request
