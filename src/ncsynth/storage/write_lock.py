"""One writer at a time on a data directory's SQLite catalog, across processes.

Several processes write runs into one data directory: two dry runs, a dry run and a replay
storing its analysis, the session and a replay, a catalog server taking a remote writer's runs.
They share ``catalog.db`` and ``tables.sqlite``. SQLite lets one connection write at a time,
and Tiled's connections to ``tables.sqlite`` (ADBC) do not wait for each other: a commit that
met another process's failed at once with ``database is locked`` and left its run out of the
catalog (measured: 2 of 12 runs, three processes writing four 30-event runs each at once). A
busy timeout on those connections did not cure it (5ad5c79, backed out in ab6b8e9): SQLite
skips the busy handler for a transaction that has read before it writes, and Tiled's table
writes read first.

So every Tiled app ncsynth builds on a data directory (the embedded catalog's, the catalog
server's) takes the directory's write lock for each request that may write (any HTTP method
but GET, HEAD and OPTIONS): an exclusive ``flock`` on ``<data_dir>/.write.lock``, held until
the response is sent. Writers in any number of processes (and threads) then take turns, each
request waiting milliseconds for the one before; readers never take it (write-ahead logging
lets them read while a writer commits, :mod:`~ncsynth.storage.integrity`). The holder writes
its process id and command into the file; a request that has waited :data:`LOCK_WAIT_S` for
it is answered ``503`` naming the directory and that holder (the run then fails as for any
refusing catalog: its journal stays for ``recover``), never a hang. A writer outside ncsynth
(``sqlite3`` on the file) is not covered.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sys
import time
from pathlib import Path

#: The lock file, in the data directory.
WRITE_LOCK_FILENAME = ".write.lock"
#: Longest wait of one request for another process's write, s.
LOCK_WAIT_S = 60.0
#: HTTP methods that never write (they take no lock).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FIRST_POLL_S, _LONGEST_POLL_S = 0.001, 0.05


@functools.lru_cache(maxsize=4)
def _holder_record(pid: int) -> bytes:
    """What process ``pid`` (this one) writes into the lock file when it takes the lock: a
    fixed-width record (rewritten without truncating the file, ~0.3 ms saved on ext4)."""
    return f"pid {pid} ({' '.join(sys.argv)})".encode(errors="replace")[:255].ljust(255) + b"\n"


class WriteLockTimeout(TimeoutError):
    """The data directory's write lock stayed held too long; the message names the holder."""


class WriteLock:
    """The exclusive write lock of the data directory ``root`` (a new open file each time it
    is taken: threads of one process exclude each other too)."""

    def __init__(self, root: Path):
        self.path = Path(root) / WRITE_LOCK_FILENAME

    def try_acquire(self) -> int | None:
        """The locked file's descriptor, None if another holds the lock, -1 if the lock file
        cannot be opened (a read-only directory: nothing can be written there anyway)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return -1
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.pwrite(fd, _holder_record(os.getpid()), 0)
        return fd

    def acquire(self, timeout_s: float = LOCK_WAIT_S) -> int:
        """Wait (polling, at most ``timeout_s``) for the lock; :class:`WriteLockTimeout`."""
        deadline, pause = time.monotonic() + timeout_s, _FIRST_POLL_S
        while (fd := self.try_acquire()) is None:
            if time.monotonic() > deadline:
                raise WriteLockTimeout(
                    f"{self.path.parent}: another process has held the data directory's write "
                    f"lock for over {timeout_s:g} s ({self.holder()}); the catalog took nothing")
            time.sleep(pause)
            pause = min(2 * pause, _LONGEST_POLL_S)
        return fd

    def holder(self) -> str:
        """Who holds (or last held) the lock, as it wrote into the file."""
        try:
            return self.path.read_text().strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    @staticmethod
    def release(fd: int) -> None:
        if fd >= 0:
            os.close(fd)  # closing the only descriptor of the open file releases the flock


class SerializedWrites:
    """ASGI middleware: each request that may write holds :class:`WriteLock` while it runs;
    with a ``refusal`` (a read-only directory's snapshot) it is answered 403 with it instead."""

    def __init__(self, app, root: Path, refusal: str | None = None):
        self.app = app
        self.lock = WriteLock(root)
        self.refusal = refusal

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        if self.refusal:
            await _answer(403, self.refusal, scope, receive, send)
            return
        fd = self.lock.try_acquire()
        if fd is None:  # another writer: wait in a worker thread, not on the event loop
            import anyio

            try:
                fd = await anyio.to_thread.run_sync(self.lock.acquire)
            except WriteLockTimeout as err:
                await _answer(503, str(err), scope, receive, send)
                return
        try:
            await self.app(scope, receive, send)
        finally:
            self.lock.release(fd)


async def _answer(status: int, detail: str, scope, receive, send) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def serialize_writes(app, layout):
    """Add :class:`SerializedWrites` to the Tiled ``app`` (FastAPI, not started yet) over the
    data directory ``layout`` when its catalog is the directory's SQLite files (refusing every
    write to a read-only directory's snapshot); a catalog in a database server keeps its own
    locking. Returns ``app``."""
    if layout is not None and layout.local:
        refusal = None
        if layout.snapshot is not None:
            from .read_only import read_only_refusal

            refusal = str(read_only_refusal(layout, "runs"))
        app.add_middleware(SerializedWrites, root=layout.root, refusal=refusal)
    return app
