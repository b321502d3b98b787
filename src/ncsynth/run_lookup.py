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


def raw_run_uid(root, ref: int | str) -> str | None:
    """The uid of the raw run that ``ref`` names in the data directory ``root``'s embedded
    SQLite catalog, read with the standard library only: the run
    :class:`~ncsynth.storage.run_view.RunView` would give (an int: the latest raw run with
    that scan id, or a negative index among the raw runs in the catalog's order, node id; a
    str: a full uid or a unique prefix of one, where an analysis run gives the run it
    analysed). None whenever that is not sure (no match, an ambiguous prefix, another database
    or schema): the catalog then answers, as before."""
    database = Path(root) / "catalog.db"
    if not database.is_file() or isinstance(ref, bool) or not isinstance(ref, (int, str)):
        return None
    try:
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=1.0) as db:
            return _raw_uid(db, ref)
    except sqlite3.Error:
        return None


def _raw_uid(db, ref: int | str) -> str | None:
    if isinstance(ref, str):
        if len(ref) < MIN_PARTIAL_UID:
            return None
        rows = db.execute(f"SELECT key, json_extract(metadata, '$.start.raw_uid') {_RUNS} "
                          f"AND substr(key, 1, ?) = ? LIMIT 2", (len(ref), ref)).fetchall()
        return (rows[0][1] or rows[0][0]) if len(rows) == 1 else None
    if ref < 0:
        query, args = f"SELECT key {_RAW} ORDER BY id DESC LIMIT 1 OFFSET ?", (-ref - 1,)
    elif ref > 0:
        query, args = (f"SELECT key {_RAW} AND json_extract(metadata, '$.start.scan_id') = ? "
                       f"ORDER BY id DESC LIMIT 1", (ref,))
    else:
        return None
    row = db.execute(query, args).fetchone()
    return row[0] if row else None
