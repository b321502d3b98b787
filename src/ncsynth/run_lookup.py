"""An unknown run named in one line before the catalog is opened.

Opening the catalog imports Tiled and its server app (~10 s of a command's start on a 2-core
machine); a mistyped run reference should not wait for that. :func:`absent_run` looks the
reference up in a data directory's embedded SQLite catalog with the standard library only,
read-only, in Tiled's table of nodes (``nodes``: ``key`` = run uid, ``parent`` = the root
node, ``metadata`` JSON holding the start document). It answers only when it is sure that no
run matches; anything else (a match, a PostgreSQL catalog, a catalog it cannot read or whose
tables it does not know) returns None and the command opens the catalog as before, whose
answer stays the authority. The references and messages are those of
:class:`~ncsynth.storage.run_view.RunView` (uid or uid prefix, scan id, negative index).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MIN_PARTIAL_UID = 5  # characters of a uid prefix, as databroker requires

_RUNS = "FROM nodes WHERE parent = (SELECT id FROM nodes WHERE parent IS NULL AND key = '')"
_RAW = f"{_RUNS} AND json_extract(metadata, '$.start.raw_uid') IS NULL"


def absent_run(root, ref: str) -> str | None:
    """Why no run of the data directory ``root`` matches ``ref`` (as typed on a command line),
    or None if one may (see the module docstring)."""
    database = Path(root) / "catalog.db"
    if not database.is_file():
        return None
    try:
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=1.0) as db:
            return _absent(db, str(ref), root)
    except sqlite3.Error:  # locked, damaged or another schema: the catalog will say
        return None


def _absent(db, text: str, root) -> str | None:
    def count(where: str, *args) -> int:
        return db.execute(f"SELECT count(*) {where}", args).fetchone()[0]

    def uid_prefix(prefix: str) -> int:
        return count(f"{_RUNS} AND substr(key, 1, ?) = ?", len(prefix), prefix)

    if not text.lstrip("-").isdigit():
        if len(text) < MIN_PARTIAL_UID or uid_prefix(text):
            return None
        return f"no run with uid {text!r} (or starting with it) in {root}"
    number = int(text)
    if number < 0:
        held = count(_RAW)
        return f"run index {number} is out of range: {root} holds {held} runs" if -number > held else None
    if number == 0 or count(f"{_RAW} AND json_extract(metadata, '$.start.scan_id') = ?", number):
        return None
    if len(text) >= MIN_PARTIAL_UID:  # digits long enough to be a uid prefix (cli._run_ref)
        return None if uid_prefix(text) else \
            f"no run with uid {text!r} (or starting with it) in {root}"
    return f"no run with scan id {number} in {root}"
