"""The serial transport shared by the line-based instruments (injector board, syringe pumps).

A pyserial port (``serial_for_url``: ``/dev/ttyUSB0``, ``socket://host:port``, ...) opened
on demand, with a receive buffer read in chunks up to a terminator before a wall-clock
deadline. Anything that goes wrong on the wire — a time-out, a port error — is one
:class:`LinkFault`; after a port error the port is closed and reopened by the next request.
The protocol (framing, parsing, retries) stays with each device.
"""

from __future__ import annotations

import contextlib
import time

import serial


class LinkFault(Exception):
    """One failed exchange (time-out, garbled or short reply, closed port)."""


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
        the wall-clock ``deadline`` (``time.monotonic()``)."""
        with self._port_errors():
            port = self._open()
            while (end := self._rx.find(terminator)) < 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkFault(f"no complete reply within {self.timeout_s:g} s"
                                    + (f" (got {self._rx[:40]!r})" if self._rx else ""))
                port.timeout = remaining
                self._rx += port.read(max(1, port.in_waiting))
            reply, self._rx = self._rx[:end + len(terminator)], self._rx[end + len(terminator):]
            return reply

    def close(self) -> None:
        """Close the port (reopened by the next request) and forget unread bytes."""
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None
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
