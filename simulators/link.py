"""A fault-injecting TCP relay put in front of every simulated instrument.

Clients connect to the link's ``socket://127.0.0.1:PORT``; the link forwards
requests to the protocol server untouched and passes replies through a fault
filter that tests drive from any thread (the simulators' back door):
drop, delay, corrupt or truncate replies, or close the port. Faults are
byte-level, so the same link serves the Modbus controller, the injector's
ASCII board and the detector.
"""

from __future__ import annotations

import asyncio
import threading


class FaultyLink:
    """Relay ``127.0.0.1:port -> target_host:target_port`` with injectable faults."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port: int | None = None
        self._lock = threading.Lock()
        self._drop = 0
        self._delay_s = 0.0
        self._corrupt = 0
        self._truncate = 0
        self._closed = False
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def clients(self) -> int:
        """Client connections being relayed now (a device's open port)."""
        return len(self._clients)

    # -- back door (thread-safe) ----------------------------------------------------
    def drop_replies(self, n: int = 1) -> None:
        """Swallow the next ``n`` replies (the client sees a time-out)."""
        with self._lock:
            self._drop += n

    def delay_replies(self, seconds: float) -> None:
        """Hold every reply back by ``seconds`` of wall time (0 clears)."""
        with self._lock:
            self._delay_s = max(0.0, float(seconds))

    def corrupt_next_reply(self, n: int = 1) -> None:
        """Flip bits in the next ``n`` replies (bad CRC / garbled line)."""
        with self._lock:
            self._corrupt += n

    def truncate_next_reply(self, n: int = 1) -> None:
        """Send only the first half of the next ``n`` replies."""
        with self._lock:
            self._truncate += n

    def close_port(self) -> None:
        """Drop every connection and refuse new ones until :meth:`reopen`."""
        with self._lock:
            self._closed = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._close_all)

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._drop = self._corrupt = self._truncate = 0
            self._delay_s = 0.0
            self._closed = False

    # -- relay ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self._close_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        self._clients.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        with self._lock:
            refused = self._closed
        if refused:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        self._clients.add(writer)
        forward = asyncio.ensure_future(self._pump(reader, up_writer, faulty=False))
        backward = asyncio.ensure_future(self._pump(up_reader, writer, faulty=True))
        await asyncio.wait([forward, backward], return_when=asyncio.FIRST_COMPLETED)
        self._clients.discard(writer)
        for task in (forward, backward):
            task.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    faulty: bool) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if faulty:
                chunk = await self._filter(chunk)
                if chunk is None:
                    continue
            writer.write(chunk)
            await writer.drain()

    async def _filter(self, chunk: bytes) -> bytes | None:
        with self._lock:
            if self._closed:
                return None
            delay = self._delay_s
            if self._drop:
                self._drop -= 1
                return None
            corrupt = self._corrupt > 0
            self._corrupt -= corrupt
            truncate = self._truncate > 0
            self._truncate -= truncate
        if delay:
            await asyncio.sleep(delay)
        if corrupt:
            data = bytearray(chunk)
            for i in range(len(data) // 2, len(data)):
                data[i] ^= 0x5A
            chunk = bytes(data)
        if truncate:
            chunk = chunk[: max(1, len(chunk) // 2)]
        return chunk
