"""Host for the simulators' asyncio servers: one event loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable

from .link import FaultyLink


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

    def serve(self, interface, host: str = "127.0.0.1") -> FaultyLink:
        """Start ``interface`` (``async start(host, port) -> port``) behind a fault link."""
        port = self.run(interface.start(host, 0))
        self._stoppables.append(interface)
        return self.start_link(port, host)

    def start_link(self, target_port: int, host: str = "127.0.0.1") -> FaultyLink:
        link = FaultyLink(host, target_port)
        self.run(link.start(host, 0))
        self._stoppables.append(link)
        return link

    def close(self) -> None:
        """Stop every server and the loop (idempotent)."""
        if not self.loop.is_running():
            return
        for item in reversed(self._stoppables):
            try:
                self.run(item.stop(), timeout=5)
            except Exception:  # a server that is already gone must not block shutdown
                pass
        self._stoppables.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
