"""The web view of runs: Tiled's browser interface (``/ui``) served by ``ncsynth catalog
serve`` (a real server process), opened in a real browser (Debian's chromium, headless,
``--dump-dom`` after the page's scripts have fetched their data) — the run list, one
analysis run's fit table, and nothing without the API key. Skipped, saying why, only when
chromium is not installed (``apt-get install chromium``; ``.ci/run`` does it)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import httpx
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det
from synthetic_analysis import analysed_frames, write_analysis
from test_catalog_server import _free_port, _start_server

from ncsynth.storage import open_catalog

API_KEY = "ncsynthbrowsertestkey0123456789"
KEY_ENV = "NCSYNTH_TEST_BROWSER_KEY"
TIMES_S = [1.5, 3.0, 10.0, 30.0, 100.0, 300.0]


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A served catalog: one acquired run and its analysis run (fits of six frames)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium to test the browser interface with (apt-get install chromium)")
    root = tmp_path_factory.mktemp("web")
    data_dir = root / "data"
    with open_catalog(data_dir) as catalog:
        RE = RunEngine({}, context_managers=[])
        writer = catalog.writer()
        RE.subscribe(writer)
        (raw_uid,) = RE(count([det], 2), sample="CdSe-07")
        fits, patterns = analysed_frames(TIMES_S, [True] * len(TIMES_S))
        analysis_uid = write_analysis(writer, catalog[raw_uid].metadata["start"], fits, patterns)
        writer.close()
    port = _free_port()
    env = {**os.environ, KEY_ENV: API_KEY, "PORT": str(port)}
    env.pop("NCSYNTH_CONFIG", None)
    (root / "ncsynth.toml").write_text(f'[data]\ndir = "{data_dir}"\n'
                                       f'[catalog]\napi_key_env = "{KEY_ENV}"\n')
    log = open(root / "server.log", "w+")
    server = _start_server(["-m", "ncsynth.cli", "catalog", "serve", "--config",
                            str(root / "ncsynth.toml"), "--port", str(port)], env, log)
    yield {"url": f"http://127.0.0.1:{port}", "browser": browser, "raw_uid": raw_uid,
           "analysis_uid": analysis_uid, "radius_nm": fits["radius_nm"], "root": root}
    server.terminate()
    server.wait(20)
    log.close()


def _page_text(web, path: str, api_key: str | None) -> str:
    """The text a headless chromium shows at ``path`` of the server once the page's scripts
    have run (virtual time: the fetches are waited for), tags stripped."""
    url = f"{web['url']}{path}" + (f"?api_key={api_key}" if api_key else "")
    profile = web["root"] / f"profile-{len(list(web['root'].glob('profile-*')))}"
    result = subprocess.run(
        [web["browser"], "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", result.stdout, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def test_the_ui_is_served_and_lists_the_runs_with_the_api_key(web):
    assert httpx.get(f"{web['url']}/ui/").status_code == 200  # the interface ships with tiled
    text = _page_text(web, "/ui/browse/", API_KEY)
    assert web["raw_uid"] in text and web["analysis_uid"] in text, text[:2000]


def test_one_analysis_run_shows_its_fit_table(web):
    text = _page_text(web, f"/ui/browse/{web['analysis_uid']}/fits/internal", API_KEY)
    assert "radius_nm" in text and "concentration_molar" in text, text[:2000]
    # the fitted radii of the first frames, as the table prints them (4 significant digits)
    shown = "radius_nm " + " ".join("%#.4g" % radius for radius in web["radius_nm"][:4])
    assert shown in text, (shown, text[:3000])


def test_without_the_api_key_the_browser_sees_no_run(web):
    for key in (None, "wrongwrongwrongwrongwrong"):
        text = _page_text(web, "/ui/browse/", key)
        assert "TILED" in text  # the page itself loads; the runs need the key
        assert web["raw_uid"] not in text and web["analysis_uid"] not in text, text[:2000]
        table = _page_text(web, f"/ui/browse/{web['analysis_uid']}/fits/internal", key)
        assert "radius_nm" not in table, table[:2000]
