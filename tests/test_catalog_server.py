"""The catalog server: a real Tiled server (uvicorn, subprocess) over a catalog written by a
real RunEngine; real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from ncsynth.catalog_server import (CatalogAuthenticationError, RemoteCatalog, open_configured_catalog,
                                    open_remote_catalog, serve_catalog)
from ncsynth.config import load_config
from ncsynth.storage import RunNotFound, open_catalog

API_KEY = "ncsynthtestkey0123456789abcdef"
KEY_ENV = "NCSYNTH_TEST_CATALOG_KEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(path, data_dir, port) -> None:
    path.write_text(f'hardware = "sim"\n[data]\ndir = "{data_dir}"\n'
                    f'[catalog]\nserver_url = "http://127.0.0.1:{port}"\napi_key_env = "{KEY_ENV}"\n')


def _start_server(args, env, log):
    """Start a catalog server process (``args`` after the interpreter), logging to the open
    file ``log``; returns it once /healthz answers on the port given in ``env["PORT"]``."""
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['PORT']}"
    deadline = time.monotonic() + 300  # a hang guard: under load the imports alone can take a minute
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"catalog server did not start:\n{log.read()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A catalog holding one `count` run, served by `serve_catalog` in a subprocess whose
    data directory, port and key variable come from a configuration file."""
    root = tmp_path_factory.mktemp("served")
    data_dir = root / "data"
    events = []
    with open_catalog(data_dir) as catalog:
        RE = RunEngine({})
        RE.subscribe(catalog.writer())
        RE.subscribe(lambda name, doc: events.append(doc) if name == "event" else None)
        (uid,) = RE(count([det], 3))
    port = _free_port()
    config_file = root / "ncsynth.toml"
    _write_config(config_file, data_dir, port)
    env = {**os.environ, "NCSYNTH_CONFIG": str(config_file), KEY_ENV: API_KEY, "PORT": str(port)}
    env.pop("NCSYNTH_DATA_DIR", None)
    log = open(root / "server.log", "w+")
    proc = _start_server(["-c", "from ncsynth.catalog_server import serve_catalog; "
                                "from ncsynth.config import load_config; serve_catalog(load_config())"],
                         env, log)
    url = f"http://127.0.0.1:{port}"
    yield {"url": url, "port": port, "uid": uid, "events": events, "config_file": config_file,
           "data_dir": data_dir, "root": root}
    proc.terminate()
    proc.wait(10)
    log.close()


def test_reads_the_run_with_the_api_key(served):
    cat = open_remote_catalog(served["url"], API_KEY)
    uid = served["uid"]
    assert isinstance(cat, RemoteCatalog) and len(cat) == 1
    # the embedded catalog's lookups: latest, scan id, partial and full uid
    for ref in (-1, 1, uid[:8], uid):
        assert cat[ref].start["uid"] == uid
    assert list(cat[-1].primary.read()["det"].values) == [e["data"]["det"] for e in served["events"]]
    names = [name for name, _ in cat.documents(uid[:8])]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 3
    with pytest.raises(RunNotFound, match=served["url"]):
        cat[2]
    cat.close()


def test_refuses_a_missing_or_wrong_key(served):
    api = f"{served['url']}/api/v1/metadata/"
    assert httpx.get(api).status_code == 401
    assert httpx.get(api, headers={"Authorization": "Apikey wrongwrongwrongwrong"}).status_code == 401
    assert httpx.get(api, headers={"Authorization": f"Apikey {API_KEY}"}).status_code == 200
    with pytest.raises(CatalogAuthenticationError, match="refused the API key"):
        open_remote_catalog(served["url"], "wrongwrongwrongwrong")
    with pytest.raises(CatalogAuthenticationError, match="requires an API key"):
        open_remote_catalog(served["url"], None)


def test_the_access_log_does_not_show_a_key_sent_in_the_query(served):
    response = httpx.get(f"{served['url']}/api/v1/metadata/?api_key={API_KEY}")
    assert response.status_code == 200
    time.sleep(0.5)
    log = (served["root"] / "server.log").read_text()
    assert "/api/v1/metadata/?api_key=[redacted]" in log
    assert API_KEY not in log


def test_serve_takes_the_key_from_a_file_and_keeps_it_out_of_the_process_list(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o600)
    port = _free_port()
    env = {**os.environ, "PORT": str(port)}
    env.pop(KEY_ENV, None)
    env.pop("TILED_API_KEY", None)
    with open(tmp_path / "server.log", "w+") as log:
        proc = _start_server(["-m", "ncsynth.cli", "catalog", "serve", "--data-dir", str(tmp_path / "data"),
                              "--port", str(port), "--api-key-file", str(key_file)], env, log)
        try:
            assert API_KEY.encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read()
            api = f"http://127.0.0.1:{port}/api/v1/metadata/"
            assert httpx.get(api).status_code == 401
            assert httpx.get(api, headers={"Authorization": f"Apikey {API_KEY}"}).status_code == 200
            # a second server on the same port: one line before it announces an address
            second = subprocess.run(
                [sys.executable, "-m", "ncsynth.cli", "catalog", "serve", "--data-dir",
                 str(tmp_path / "data"), "--port", str(port), "--api-key-file", str(key_file)],
                env=env, capture_output=True, text=True, timeout=120)
            assert second.returncode == 1 and second.stderr == (
                f"ncsynth catalog serve: cannot serve on 127.0.0.1:{port}: Address already in "
                f"use (another server there?)\n"), second.stderr
        finally:
            proc.terminate()
            proc.wait(10)
    # the key on the command line still works, with a warning; a bad one is one line
    result = subprocess.run([sys.executable, "-m", "ncsynth.cli", "catalog", "serve", "--data-dir",
                             str(tmp_path / "data"), "--api-key", "short1"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "warning: --api-key shows the key" in result.stderr and "at least 16" in result.stderr


def test_listens_on_loopback_only_by_default(served):
    table = "/proc/net/tcp"
    if not os.path.exists(table):
        pytest.skip("no /proc/net/tcp on this system")
    port_hex = f"{served['port']:04X}"
    listening = []
    with open(table) as f:
        next(f)
        for line in f:
            local, state = line.split()[1], line.split()[3]
            if local.endswith(f":{port_hex}") and state == "0A":  # 0A: LISTEN
                listening.append(local.split(":")[0])
    assert listening == ["0100007F"]  # 127.0.0.1, not 0.0.0.0 (00000000)


def test_reader_sees_a_run_while_it_is_written(served, tmp_path):
    writer_cat = open_remote_catalog(served["url"], API_KEY, data_dir=tmp_path / "hutch")
    reader_cat = open_remote_catalog(served["url"], API_KEY)
    RE = RunEngine({})
    RE.subscribe(writer_cat.writer(flush_interval_s=0.2))
    seen: list[tuple[int, bool]] = []
    done = threading.Event()

    def read_while_acquiring():
        while not done.wait(0.25):
            try:
                run = reader_cat[-1]
            except RunNotFound:
                continue
            if run.start.get("purpose") == "live read" and "primary" in run:
                # the stream's node can be there before its first event (no columns yet)
                seen.append((len(run.primary.read().get("time", ())), run.metadata.get("stop") is None))

    reader = threading.Thread(target=read_while_acquiring)
    reader.start()
    try:
        (uid,) = RE(count([det], 15, delay=0.2), purpose="live read")
    finally:
        done.set()
        reader.join()
    partial = [n for n, running in seen if running and 0 < n < 15]
    assert partial, f"the reader never saw the run in progress: {seen}"
    assert partial == sorted(partial)  # the run grows
    final = reader_cat[uid]
    assert len(final.primary.read()["time"]) == 15 and final.stop["exit_status"] == "success"
    assert (tmp_path / "hutch" / "journal" / "complete" / f"{uid}.jsonl").exists()
    writer_cat.close()
    reader_cat.close()


def test_configured_catalog_is_the_server(served, monkeypatch):
    config = load_config(served["config_file"])
    monkeypatch.setenv(KEY_ENV, API_KEY)
    cat = open_configured_catalog(config)
    assert isinstance(cat, RemoteCatalog) and cat.url == served["url"]
    assert cat[served["uid"][:6]].start["uid"] == served["uid"]
    cat.close()
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        open_configured_catalog(config)


def test_server_refuses_to_start_without_a_usable_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = {"data": {"dir": str(tmp_path)}, "catalog": {"api_key_env": KEY_ENV, "server_url": ""}}
    with pytest.raises(ValueError, match=f"no API key.*{KEY_ENV}"):
        serve_catalog(config, port=_free_port())
    with pytest.raises(ValueError, match="at least 16"):
        serve_catalog(config, port=_free_port(), api_key="short1")
    with pytest.raises(ValueError, match="letters and digits"):
        serve_catalog(config, port=_free_port(), api_key="not-a-safe-key-0123456789")
    with pytest.raises(ValueError, match="port"):
        serve_catalog(config, port=70000, api_key=API_KEY)
    with pytest.raises(ValueError, match="url"):
        open_remote_catalog("127.0.0.1:8000", API_KEY)
    assert not (tmp_path / "catalog.db").exists()  # refused before anything was created
