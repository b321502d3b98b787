"""The serial transport shared by the line-based instruments (injector board, syringe pumps).

A pyserial port (``serial_for_url``: ``/dev/ttyUSB0``, ``socket://host:port``, ...) opened
on demand, with a receive buffer read in chunks up to a terminator before a wall-clock
deadline. Anything that goes wrong on the wire — a time-out, a port error — is one
:class:`LinkFault`; after a port error the port is closed and reopened by the next request.
The protocol (framing, parsing, retries) stays with each device.
"""

from __future__ import annotations

import collections
import contextlib
import time

import serial

from . import background


#: Most bytes taken from the port at once once a reply has begun to arrive.
_CHUNK = 4096


class LinkFault(Exception):
    """One failed exchange (time-out, garbled or short reply, closed port)."""


def attempts_text(causes: list[str]) -> str:
    """The causes of a request's failed attempts for its error, each told once in order with
    its count when repeated ("port error: ... Connection refused (3 times)"), not three
    times over in one line."""
    counts = collections.Counter(causes)
    return "; ".join(cause if counts[cause] == 1 else f"{cause} ({counts[cause]} times)"
                     for cause in dict.fromkeys(causes))


class SerialLink:
    """A serial port opened on demand with a chunked reader; ``settings`` go to pyserial."""

    def __init__(self, url: str, timeout_s: float, **settings):
        self.url = url
        self.timeout_s = timeout_s
        self._settings = settings
        self._port = None
        self._rx = b""

    def clear(self) -> None:
        """Open the port if needed and drop anything unread (before a new request)."""
        with self._port_errors():
            port = self._open()
            port.reset_input_buffer()
            self._rx = b""

    def write(self, packet: bytes) -> None:
        with self._port_errors():
            self._open().write(packet)

    def read_until(self, terminator: bytes, deadline: float) -> bytes:
        """Bytes up to and including ``terminator``, read in chunks (not byte by byte) until
        the wall-clock ``deadline`` (``time.monotonic()``). Past the deadline the port is
        looked at once more without waiting: a reply that arrived in time while this process
        was held up (a garbage collection, a loaded machine) is taken, not counted as lost."""
        with self._port_errors():
            port = self._open()
            while (end := self._rx.find(terminator)) < 0:
                remaining = deadline - time.monotonic()
                chunk = self._read_available(port, max(remaining, 0.0))
                if not chunk and remaining <= 0:
                    raise LinkFault(f"no complete reply within {self.timeout_s:g} s"
                                    + (f" (got {self._rx[:40]!r})" if self._rx else ""))
                self._rx += chunk
            reply, self._rx = self._rx[:end + len(terminator)], self._rx[end + len(terminator):]
            return reply

    @staticmethod
    def _read_available(port, wait_s: float) -> bytes:
        """What ``port`` holds, waiting up to ``wait_s`` for its first byte (b"" if none came);
        the rest without waiting (a ``socket://`` port says only *whether* bytes wait)."""
        port.timeout = wait_s
        first = port.read(max(1, port.in_waiting))
        if not first:
            return b""
        port.timeout = 0
        return first + port.read(_CHUNK)

    def close(self) -> None:
        """Close the port (reopened by the next request) and forget unread bytes; the
        closing itself goes on in the background (:func:`close_in_background`)."""
        port, self._port = self._port, None
        if port is not None:
            close_in_background(port, name="serial-close")
        self._rx = b""

    def _open(self):
        if self._port is None:
            self._port = serial.serial_for_url(self.url, timeout=self.timeout_s,
                                               write_timeout=self.timeout_s, **self._settings)
        return self._port

    @contextlib.contextmanager
    def _port_errors(self):
        """A pyserial/OS error closes the link and becomes a :class:`LinkFault`."""
        try:
            yield
        except (serial.SerialException, OSError) as error:
            self.close()
            raise LinkFault(f"port error: {error}") from error


def close_in_background(port, name: str) -> None:
    """Close a pyserial ``port`` on a worker of the device pool, errors ignored.

    pyserial's ``socket://`` close() shuts the socket down, then sleeps 0.3 s "to give the
    server some time" for a quick reconnect: a retry, or a device being destroyed (the end
    of every dry run), must not wait for that; the next attempt opens a fresh port anyway."""
    background.run(_close_quietly, port, name=name)


def _close_quietly(port) -> None:
    try:
        port.close()
    except (OSError, serial.SerialException):
        pass
