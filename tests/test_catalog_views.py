"""The catalog as a databroker/Tiled user expects it: a real RunEngine writing to a real
catalog on disk; ``cat[-1]`` the latest acquired run, slices, ``len``/``list``, searches by
sample, operator, date and exit status, analysis runs reached from their raw run, and scan
ids that increase across runs and processes in one data directory."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky_tiled_plugins.queries import TimeRange
from event_model import compose_run
from ophyd.sim import det
from tiled.queries import Key

from ncsynth.storage import RunNotFound, open_catalog


def _derived(writer, raw_uid: str, stopped: bool = True) -> str:
    """An analysis run of ``raw_uid`` as the live analysis writes it (start names the raw run)."""
    bundle = compose_run(metadata={"raw_uid": raw_uid})
    writer("start", bundle.start_doc)
    if stopped:
        writer("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """Four raw runs (three samples, two operators, one failed), each but one followed by
    an analysis run, as a session writes them."""
    with open_catalog(tmp_path_factory.mktemp("data")) as catalog:
        RE = RunEngine({}, context_managers=[], scan_id_source=catalog.scan_ids())
        writer = catalog.writer()
        RE.subscribe(writer)
        raw, derived = [], []
        for sample, operator in (("CdSe-01", "alice"), ("CdSe-02", "bob"), ("CdSe-01", "bob")):
            (uid,) = RE(bp.count([det], 2), sample=sample, operator=operator)
            raw.append(uid)
            derived.append(_derived(writer, uid))
        since = time.time()

        def failing():
            yield from bps.open_run()
            yield from bps.trigger_and_read([det])
            raise RuntimeError("the sample holder jammed")
        with pytest.raises(RuntimeError, match="jammed"):
            RE(failing(), sample="CdSe-03", operator="alice")
        raw.append(catalog.client.values().last().metadata["start"]["uid"])
        writer.close()
        yield catalog, raw, derived, since


def test_latest_run_is_the_latest_acquired_one_and_reads_its_primary_stream(filled):
    catalog, raw, derived, _ = filled
    run = catalog[-1]
    assert run.metadata["start"]["uid"] == raw[-1]  # not the analysis written after it
    assert len(run.primary.read()["det"]) == 1
    assert catalog[-2].metadata["start"]["uid"] == raw[-2]
    assert catalog[derived[0][:8]].metadata["start"]["raw_uid"] == raw[0]  # uids find any run
    analysis = catalog.analysis(catalog[raw[2][:8]])
    assert analysis.metadata["start"]["uid"] == derived[2]
    assert catalog.analysis(-1) is None
    assert [r.metadata["start"]["uid"] for r in catalog.analyses(raw[1]).values()] == [derived[1]]


def test_list_len_iteration_and_slices(filled):
    catalog, raw, _, _ = filled
    assert len(catalog) == 4 and list(catalog) == raw
    assert [r.metadata["start"]["uid"] for r in catalog[-2:]] == raw[-2:]
    assert [r.metadata["start"]["uid"] for r in catalog[1:4:2]] == [raw[1], raw[3]]
    assert [r.metadata["start"]["uid"] for r in catalog[::-1]] == raw[::-1]
    assert catalog[10:] == [] and raw[0] in catalog
    with pytest.raises(RunNotFound, match="out of range"):
        catalog[-5]


def test_search_by_sample_operator_date_and_exit_status(filled):
    catalog, raw, _, since = filled
    by_sample = catalog.search(Key("sample") == "CdSe-01")
    assert list(by_sample) == [raw[0], raw[2]]
    assert by_sample[-1].metadata["start"]["operator"] == "bob"
    assert list(by_sample.search(Key("operator") == "alice")) == [raw[0]]
    assert list(catalog.search(TimeRange(since=since))) == raw[3:]
    assert list(catalog.search(Key("stop.exit_status") == "fail")) == [raw[3]]
    assert len(catalog.search(Key("stop.exit_status") == "success")) == 3
    assert len(catalog.search(Key("sample") == "nothing like it")) == 0
    assert [r.metadata["start"]["uid"] for r in by_sample[-1:]] == [raw[2]]


def test_scan_ids_increase_across_runs_and_processes(filled):
    catalog, raw, _, _ = filled
    assert [catalog[uid].metadata["start"]["scan_id"] for uid in raw] == [1, 2, 3, 4]
    assert catalog[3].metadata["start"]["uid"] == raw[2]
    script = ("import sys\nfrom bluesky import RunEngine\nfrom bluesky.plans import count\n"
              "from ophyd.sim import det\nfrom ncsynth.storage import open_catalog\n"
              "with open_catalog(sys.argv[1]) as cat:\n"
              "    RE = RunEngine({}, context_managers=[], scan_id_source=cat.scan_ids())\n"
              "    w = cat.writer(); RE.subscribe(w)\n"
              "    RE(count([det], 1)); w.close()\n")
    done = subprocess.run([sys.executable, "-c", script, str(catalog.layout.root)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert catalog[-1].metadata["start"]["scan_id"] == 5  # a fresh RE.md in another process
    # a RunEngine whose RE.md already counts further goes on from there
    RE = RunEngine({"scan_id": 41}, context_managers=[], scan_id_source=catalog.scan_ids())
    writer = catalog.writer()
    RE.subscribe(writer)
    RE(bp.count([det], 1))
    RE.md["scan_id"] = 0  # a RunEngine that forgot: the directory's counter remembers
    RE(bp.count([det], 1))
    writer.close()
    assert [catalog[i].metadata["start"]["scan_id"] for i in (-2, -1)] == [42, 43]


SCAN_ID_WITHOUT_TILED = """
import sys
from ncsynth.storage import open_catalog
with open_catalog(sys.argv[1], lazy=True) as cat:
    print(cat.scan_ids()({}), *(m in sys.modules for m in ("tiled.server.app", "tiled.catalog")))
"""


def test_a_directory_without_its_scan_id_counter_reads_the_highest_from_the_database(tmp_path):
    """The counter file gone (or damaged): the next id is one more than the highest scan id
    of the raw runs in catalog.db, read without Tiled's app (a process that only writes
    through the catalog worker builds none); analysis runs' metadata does not count."""
    root = tmp_path / "data"
    with open_catalog(root) as catalog:
        RE = RunEngine({"scan_id": 6}, context_managers=[])  # bluesky's own ids: 7, 8
        writer = catalog.writer()
        RE.subscribe(writer)
        raw = [RE(bp.count([det], 1))[0] for _ in range(2)]
        bundle = compose_run(metadata={"raw_uid": raw[0], "scan_id": 99})  # not a raw run
        writer("start", bundle.start_doc)
        writer("stop", bundle.compose_stop())
        writer.close()
    assert not (root / "last_scan_id").exists()
    done = subprocess.run([sys.executable, "-c", SCAN_ID_WITHOUT_TILED, str(root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["9", "False", "False"]
    assert (root / "last_scan_id").read_text() == "9\n"
    (root / "last_scan_id").write_text("garbled")
    with open_catalog(root) as catalog:
        assert catalog.scan_ids()({}) == 9
    with open_catalog(tmp_path / "new", lazy=True, create=False) as empty:
        assert empty.scan_ids()({}) == 1  # no catalog.db yet: no runs
        assert not (tmp_path / "new" / "catalog.db").exists()
