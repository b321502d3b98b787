"""Per-run journal: every document on disk the moment it is emitted.

The journal is the durability layer under the catalog. For each run one JSON-lines file
``<start uid>.jsonl`` receives ``{"name": ..., "doc": ...}`` per document (the format of
``bluesky_tiled_plugins``' ``JSONLinesWriter``), written and flushed to the operating system
per document (events arrive as single-row ``event_page`` documents: the form event_model's
``RunRouter`` hands them on), so a process killed with ``kill -9`` loses nothing that was emitted before the
kill (the kernel still holds the page cache). ``os.fsync`` (surviving a power cut) is issued for
the documents that structure a run (start, descriptor, resource, stream_resource, stop) and at
least once a second while events arrive.

While a run is being written its journal is held under an exclusive ``flock``; the lock dies
with the process, which is how :func:`ncsynth.storage.recovery.recover_runs` tells a run of a
killed process (unlocked journal) from a run still being acquired (locked journal).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

#: Documents fsync-ed as soon as they are written.
FSYNC_DOCUMENTS = frozenset({"start", "descriptor", "resource", "stream_resource", "stop"})
#: Longest time between two fsyncs while documents arrive, in seconds.
FSYNC_INTERVAL_S = 1.0


class JournalLocked(RuntimeError):
    """The journal is held by a live writer (its run is still being acquired)."""


class JournalDamage(NamedTuple):
    """A journal line that holds no readable document record.

    ``torn``: the file's last line, cut short (no newline) — the trace of a process killed in
    the middle of a write, not damage to what was written before.
    """

    path: str
    line: int
    reason: str
    torn: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class JournalDamaged(ValueError):
    """A journal holds unreadable lines other than a torn last line."""


def _to_json(value: Any) -> Any:
    """``json.dumps`` fallback for numpy values found in documents."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"document value of type {type(value).__name__} is not JSON serialisable: {value!r}")


def _record(name: str, doc: dict) -> str:
    """One journal line (with its newline)."""
    return json.dumps({"name": name, "doc": doc}, default=_to_json) + "\n"


def _try_lock(file) -> None:
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        raise JournalLocked(f"journal {file.name!r} is locked by a running writer") from err


def writer_holds(path) -> bool:
    """True if a live writer holds the journal's lock (its run is being written); False if
    none does, or the file is gone (archived meanwhile: its writer has finished it)."""
    try:
        with open(path, "rb") as file:
            try:
                _try_lock(file)
            except JournalLocked:
                return True
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


class RunJournal:
    """Append-only journal of one run; call it with ``(name, doc)``.

    Opening (a new or an existing journal) takes the exclusive lock: :class:`JournalLocked` if
    a live writer holds it, ``FileNotFoundError`` if the file was archived while we waited for
    it. :meth:`archive` moves the file to ``complete_dir`` and releases the lock. Not thread
    safe: one thread appends, another may archive after the last append.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            _try_lock(self._file)
            if not self.path.exists():  # archived between open() and the lock
                raise FileNotFoundError(self.path)
        except BaseException:
            self._file.close()
            raise
        self._last_fsync = time.monotonic()

    def __enter__(self) -> "RunJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, name: str, doc: dict) -> None:
        try:
            self._file.write(_record(name, doc))
            self._file.flush()
            now = time.monotonic()
            if name in FSYNC_DOCUMENTS or now - self._last_fsync >= FSYNC_INTERVAL_S:
                os.fsync(self._file.fileno())
                self._last_fsync = now
        except OSError as exc:  # name the file: "[Errno 28] No space left on device" alone
            raise OSError(exc.errno, f"{name} document not journaled in {self.path}: "
                                     f"{exc.strerror or exc}") from exc

    def archive(self, complete_dir: str | os.PathLike) -> Path:
        """Move the journal to ``complete_dir`` (the catalog holds the run) and unlock it."""
        target = Path(complete_dir) / self.path.name
        os.fsync(self._file.fileno())
        os.replace(self.path, target)
        self.close()
        self.path = target
        return target

    def close(self) -> None:
        """Release the lock and close the file (the journal stays where it is)."""
        if not self._file.closed:
            self._file.close()


def scan_journal(path: str | os.PathLike) -> tuple[list[tuple[str, dict]], list[JournalDamage]]:
    """Every readable ``(name, doc)`` pair of a journal, in order, and every line that holds
    none (not UTF-8, not JSON, not a ``{"name": str, "doc": {...}}`` record, or a last line
    cut short) as a :class:`JournalDamage`."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the last line is complete (ends with its newline)
    if tail:
        lines.append(tail)
    docs, damage = [], []
    for number, line in enumerate(lines, start=1):
        torn = bool(tail) and number == len(lines)
        try:
            docs.append(parse_record(line))
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            damage.append(JournalDamage(str(path), number, _why(err, torn), torn))
    return docs, damage


def parse_record(line: bytes) -> tuple[str, dict]:
    """The ``(name, doc)`` pair of one journal line; ValueError if it holds none."""
    record = json.loads(line)
    if not (isinstance(record, dict) and isinstance(record.get("name"), str)
            and isinstance(record.get("doc"), dict)):
        raise ValueError('not a {"name": ..., "doc": {...}} document record')
    return record["name"], record["doc"]


def _why(err: ValueError, torn: bool) -> str:
    if torn:
        return "last line cut short (the process died while writing it)"
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON ({err.msg}, column {err.colno})"
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(err)


def read_journal(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """All ``(name, doc)`` pairs of a journal, in order.

    A torn last line (a process killed in the middle of a write) is skipped with a warning;
    any other unreadable line raises :class:`JournalDamaged` naming the file and line.
    """
    docs, damage = scan_journal(path)
    for bad in damage:
        if not bad.torn:
            raise JournalDamaged(f"journal {bad}")
        logger.warning("journal %s: skipping it", bad)
    return docs


def write_journal(path: str | os.PathLike, docs: list[tuple[str, dict]]) -> Path:
    """Write ``docs`` as a complete journal at ``path``, atomically (a temporary file in the
    same directory, fsync-ed, then renamed over ``path``)."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as file:
        try:
            file.writelines(_record(name, doc) for name, doc in docs)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            os.unlink(file.name)
            raise
    os.replace(file.name, path)
    return path


def active_journals(directory: str | os.PathLike) -> Iterator[Path]:
    """Journals in ``directory``, oldest first."""
    yield from sorted(Path(directory).glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
