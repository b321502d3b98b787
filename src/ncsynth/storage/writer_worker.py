"""The catalog writer's Tiled side in a process of its own (``CatalogWriter(worker="process")``).

Tiled's in-process app (Starlette, FastAPI, SQLAlchemy) costs a fast dry run about a fifth of
its interpreter time, all of it under the RunEngine's GIL when the writer's background thread
drives it. In process mode that background thread only forwards each document to a child
process, ``python -m ncsynth.storage.writer_worker DATA_DIR [READABLE_DIR ...]``, which opens
its own embedded catalog on the same files and feeds one ``TiledWriter`` per run, exactly as
the thread would (same documents, same order, same commits at the same moments): the catalog
it writes is the one the thread writes. The RunEngine's side (journal first, bounded queue,
waiting at stop, ``failed_runs``, ``flush``) is unchanged; a run whose documents the worker
cannot take is a failed run, and its journal stays in ``journal/active`` for ``recover``.

Wire: the parent writes pickled requests on the child's stdin and reads one pickled reply per
request from the child's stdout (the child moves its own stdout to stderr first, so that
nothing else can write there):

* ``("doc", uid, name, doc)`` -> ``("ok",)`` or ``("error", exception_or_text)``
* ``("commit", uid)``          -> the same (events held back by the run's writer are written)
* ``("close",)``               -> the child exits (so does it at the end of its stdin)

The first reply, before any request, is ``("ready",)`` or ``("error", ...)`` when the catalog
cannot be opened. An embedded catalog is ready once its files are opened (on first use
created: :meth:`~ncsynth.storage.writer.CatalogWriter.wait_ready`, the dry run's refusal before anything moves); the
worker imports Tiled's app and ``TiledWriter`` after that, while the caller starts its run
(issue 18: ~1.2 s less waiting), and a failure there is the answer to every request.

A data directory whose catalog lives in a database server (``DataDirectory.database_uri``,
``tables_uri``) passes those URIs to the child in its environment
(:data:`DATABASE_URI_ENV`, :data:`TABLES_URI_ENV`), not on its command line (``ps``).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

from ncsynth.worker_process import close_quietly, how_it_ended


DATABASE_URI_ENV = "NCSYNTH_WORKER_DATABASE_URI"
TABLES_URI_ENV = "NCSYNTH_WORKER_TABLES_URI"


class CatalogWorkerError(RuntimeError):
    """The catalog worker process refused or lost a document (its error, in one line)."""


def _portable(err: BaseException) -> BaseException | str:
    """``err`` if it pickles (its type and message survive the pipe), else its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return f"{type(err).__name__}: {err}"


def _as_exception(payload) -> BaseException:
    if isinstance(payload, BaseException):
        return payload
    return CatalogWorkerError(str(payload))


class WorkerLink:
    """The parent's end: starts the worker process and sends it requests, one at a time."""

    def __init__(self, data_dir, readable_storage=()):
        """``data_dir``: a path, or a :class:`~ncsynth.storage.layout.DataDirectory` (whose
        database URIs the worker then uses too)."""
        env = {**os.environ}
        for name, uri in ((DATABASE_URI_ENV, getattr(data_dir, "database_uri", None)),
                          (TABLES_URI_ENV, getattr(data_dir, "tables_uri", None))):
            env.pop(name, None)
            if uri:
                env[name] = uri
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ncsynth.storage.writer_worker",
             str(getattr(data_dir, "root", data_dir)), *map(str, readable_storage)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env,
            process_group=0)  # out of reach of group signals while it starts (see below)
        self._lock = threading.Lock()
        self._ready: BaseException | None | bool = False

    def _reply(self):
        try:
            return pickle.load(self._process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError) as err:
            raise self._ended(err) from None

    def _ended(self, err: BaseException) -> CatalogWorkerError:
        """The worker's pipe broke (``err``): how its process ended, as a CatalogWorkerError."""
        how = how_it_ended(self._process)
        return CatalogWorkerError(f"the catalog worker process {how}: {type(err).__name__}")

    def _wait_ready(self) -> None:
        if self._ready is False:
            reply = self._reply()
            self._ready = None if reply[0] == "ready" else _as_exception(reply[1])
        if self._ready is not None:
            raise self._ready

    def wait_ready(self) -> None:
        """Wait until the worker has opened the catalog (creating it on first use); raise
        its error if it could not."""
        with self._lock:
            self._wait_ready()

    def request(self, *request) -> None:
        """Send one request and wait for its reply; raise the worker's error, if any."""
        with self._lock:
            self._wait_ready()
            try:
                pickle.dump(request, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self._process.stdin.flush()
            except OSError as err:  # BrokenPipeError too
                raise self._ended(err) from None
            reply = self._reply()
        if reply[0] != "ok":
            raise _as_exception(reply[1])

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Ask the worker to end and wait for it (killed after ``timeout_s``)."""
        with self._lock:
            try:
                pickle.dump(("close",), self._process.stdin)
                self._process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):  # it died before (killed, crashed)
                pass
            close_quietly(self._process.stdin)
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()


class RemoteRunWriter:
    """One run's TiledWriter, in the worker: the ``(name, doc)`` callable and ``commit()``
    a :class:`~ncsynth.storage.writer._RunRecorder` drives."""

    def __init__(self, link: WorkerLink, uid: str):
        self.link, self.uid = link, uid

    def __call__(self, name: str, doc: dict) -> None:
        self.link.request("doc", self.uid, name, doc)

    def commit(self) -> None:
        self.link.request("commit", self.uid)


def _serve(data_dir: str, readable: list[str], requests, replies) -> None:
    def reply(*message) -> None:
        pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    uris = {"database_uri": os.environ.get(DATABASE_URI_ENV) or None,
            "tables_uri": os.environ.get(TABLES_URI_ENV) or None}
    try:
        from .catalog import open_catalog

        # "ready" once the catalog's files are opened (on first use created): what can refuse
        # them; Tiled's app and TiledWriter are imported after, while the caller starts its
        # run. A database server is reached by the app: built before "ready".
        catalog = open_catalog(data_dir, readable_storage=readable, **uris,
                               lazy=not any(uris.values()))
    except BaseException as err:
        reply("error", _portable(err))
        return
    reply("ready")
    broken = None  # why the app could not be built: every request's answer
    try:
        from bluesky_tiled_plugins import TiledWriter

        from .tiled_run import CommittingNormalizer

        catalog.client  # noqa: B018 (the in-process app, built now)
    except BaseException as err:
        broken = err
    runs: dict[str, tuple] = {}  # uid -> (TiledWriter, [normalizer])
    try:
        while True:
            try:
                request = pickle.load(requests)
            except EOFError:
                return
            if request[0] == "close":
                return
            try:
                if broken is not None:
                    raise broken
                if request[0] == "doc":
                    _, uid, name, doc = request
                    if name == "start":
                        holder: list = []

                        def normalizer(holder=holder, **kwargs):
                            holder.append(CommittingNormalizer(
                                close_streams=catalog.streams_watched, **kwargs))
                            return holder[-1]

                        runs[uid] = (TiledWriter(catalog.client, normalizer=normalizer), holder)
                    run = runs.get(uid)
                    if run is None:
                        raise CatalogWorkerError(f"run {uid}: a {name!r} document before its start")
                    run[0](name, doc)
                    if name == "stop":
                        runs.pop(uid, None)
                elif request[0] == "commit":
                    run = runs.get(request[1])
                    if run is not None and run[1]:
                        run[1][-1].commit()
                else:
                    raise CatalogWorkerError(f"unknown request {request[0]!r}")
            except Exception as err:
                if request[0] == "doc" and request[2] == "stop":
                    runs.pop(request[1], None)
                reply("error", _portable(err))
            else:
                reply("ok")
    finally:
        catalog.close()


#: Niceness a worker adds to its own: on a busy machine the parent, which drives the simulated
#: instruments and their devices' wall-clock reply time-outs (the heater's 0.5 s), gets a core
#: first; a worker only falls behind (the journal and the queues hold what it has not done).
WORKER_NICENESS = 5


def detach_from_group_signals() -> None:
    """A worker ends when its parent closes the pipe, not on a signal sent to the whole process
    group or service: the terminal's Ctrl-C or hang-up, a service manager's SIGTERM (systemd
    sends it to every process of the unit), ``timeout``'s. The parent is then still closing
    the run through it (a worker killed by it left the run out of the catalog). A parent that
    is killed closes the pipe, so the worker still ends. It also yields the CPU to its parent
    (:data:`WORKER_NICENESS`). Workers are also started in a process group of their own, so
    that a terminal's or ``timeout``'s signal does not reach one before it gets here."""
    import signal

    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):
        pass


def serve_over_stdio(serve) -> None:
    """A worker process's body: detached from group signals, ``serve(requests, replies)``
    on stdin/stdout (binary; anything else printed goes to stderr, never into the replies),
    then an exit with no interpreter teardown (Tiled's threads, ADBC connections)."""
    from ncsynth import quiet

    quiet.configure()  # as verbose as the command that started this process
    detach_from_group_signals()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = os.fdopen(os.dup(0), "rb")
    serve(requests, replies)
    replies.close()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    serve_over_stdio(lambda requests, replies: _serve(argv[0], argv[1:], requests, replies))


if __name__ == "__main__":
    main()
