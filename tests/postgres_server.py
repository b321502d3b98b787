"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a cluster made
by ``initdb`` in a temporary directory, ``pg_ctl start`` on a loopback port, stopped and
deleted after the session. ``initdb`` and ``postgres`` refuse to run as root: as root they
run as the ``postgres`` user (created by the Debian package) through ``runuser``.

``postgres`` (session fixture) gives a :class:`PostgresServer`; ``server.new_database()``
creates an empty database and returns its ``postgresql://`` URI. The fixture skips, saying
why, only when the binaries are not installed (``apt-get install postgresql``; ``.ci/run``
does it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb and pg_ctl (or None)."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(Path(p) / "initdb", os.X_OK) and os.access(Path(p) / "pg_ctl", os.X_OK)]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster of its own on 127.0.0.1:``port`` (trust authentication for the
    superuser ``postgres``: loopback only, a throw-away cluster)."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ncsynth-pg-"))
        self.port = _free_port()
        self._as_postgres = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "cluster"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   f"-c fsync=off -c max_connections=200")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "ncsynth") -> str:
        """Create an empty database; its URI."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)
        return self.uri(name)

    def query(self, database_uri: str, sql: str) -> str:
        """``psql -c sql`` on the database of ``database_uri``; its unaligned output."""
        result = subprocess.run([str(self.bin_dir / "psql"), database_uri, "-At", "-c", sql],
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server (see the module docstring); skipped only without the
    binaries."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()
