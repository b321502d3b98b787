"""Host for the simulators' asyncio servers: one event loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable

from .link import FaultyLink

#: The reply time-out (s of wall time per attempt) the simulated beamline and flow reactor give
#: their serial instruments in a hutch configuration (``hutch_settings``; the hutch's is 0.5 s).
#: They answer from the dry run's own process and this one event loop: a Eurotherm controller
#: answers a read after bringing the world up to the clock's now, which during the nucleation
#: burst took up to 1.9 s of wall time on a slow 2-core machine (the hutch's 0.5 s then failed
#: all four attempts of a read), and a full garbage collection of a test worker's heap held the
#: loop up to 1.9 s (the suite, 2026-12-07: the injector's three 0.5 s attempts failed at a
#: plan's first STATUS?).
SIMULATED_REPLY_TIMEOUT_S = 2.0


class SimulatorHost:
    """Runs the protocol servers and their fault links on one event loop thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="simulators",
                                        daemon=True)
        self._thread.start()
        self._stoppables: list[Any] = []

    def run(self, coro: Awaitable, timeout: float | None = 30.0):
        """Run ``coro`` on the simulators' loop from any thread; return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, interface, host: str = "127.0.0.1") -> int:
        """Start ``interface`` (``async start(host, port) -> port``; ``async stop()`` when the
        host closes) on a free port of ``host``; return the port."""
        port = self.run(interface.start(host, 0))
        self._stoppables.append(interface)
        return port

    def serve(self, interface, host: str = "127.0.0.1") -> FaultyLink:
        """Start ``interface`` (as :meth:`start`) behind a fault link."""
        return self.start_link(self.start(interface, host), host)

    def start_link(self, target_port: int, host: str = "127.0.0.1") -> FaultyLink:
        link = FaultyLink(host, target_port)
        self.run(link.start(host, 0))
        self._stoppables.append(link)
        return link

    def close(self) -> None:
        """Stop every server and the loop, then close the loop and its self-pipe (idempotent;
        an unclosed loop left two sockets to the garbage collector: ResourceWarnings in the
        suite)."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            for item in reversed(self._stoppables):
                try:
                    self.run(item.stop(), timeout=5)
                except Exception:  # a server that is already gone must not block shutdown
                    pass
            self._stoppables.clear()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RequestServer:
    """asyncio TCP server for a request/reply instrument protocol (the board's line protocol,
    the pump's CR-terminated packets): subclasses say how the byte stream splits into
    requests (:meth:`split`), answer one request (:meth:`handle`), and what to reply when a
    request outgrows ``max_request`` bytes without its terminator (:meth:`overflow_reply`)."""

    max_request = 64

    def __init__(self):
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def split(self, buffer: bytes) -> tuple[list[bytes], bytes]:
        """The complete requests in ``buffer`` and the incomplete rest."""
        raise NotImplementedError

    def handle(self, raw: bytes) -> bytes:
        """The reply to one request (without its terminator)."""
        raise NotImplementedError

    def overflow_reply(self) -> bytes:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._writers.add(writer)
        pending = b""
        try:
            while chunk := await reader.read(4096):
                requests, pending = self.split(pending + chunk)
                for raw in requests:
                    writer.write(self.handle(raw))
                if len(pending) > self.max_request:
                    pending = b""
                    writer.write(self.overflow_reply())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
