"""The two-piston injector board's ASCII line protocol (``docs/protocols.md``, "Two-piston
injector (ASCII)"), under :class:`~ncsynth.devices.injector.Injector`: a request is
``#<tag> <command>*<CRC>`` and its reply ``#<tag> OK|ERR ...*<CRC>``, the CRC being
CRC-16/XMODEM (``binascii.crc_hqx``) of what precedes the ``*``. :class:`BoardLine` makes one
exchange; a reply with another tag is a late one to an earlier request and is skipped.
The injector's errors are here too.
"""

from __future__ import annotations

import binascii
import itertools
import time
from dataclasses import dataclass

from ncsynth import timebase
from .serial_link import LinkFault, SerialLink


class InjectorError(RuntimeError):
    """The injector refused or failed an action; ``code`` names the reason.

    Codes are the board's error names (``NOT_ARMED``, ``EMPTY``, ``SPENT``,
    ``JAMMED``, ``BUSY``, ...), also when the device refuses on its own
    knowledge before sending anything.
    """

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class InjectorCommsError(InjectorError):
    """The board could not be reached or answered unintelligibly, after retries."""


class InjectorJamError(InjectorError):
    """A fired piston did not reach its extended end switch."""


@dataclass(frozen=True)
class ClockSample:
    """One reading ``us`` of the board clock taken at host time ``epoch_s`` ± ``uncertainty_s``."""

    us: int
    epoch_s: float
    uncertainty_s: float

    def to_epoch(self, us: int) -> float:
        """Epoch seconds of board time ``us`` (same uncertainty, drift neglected)."""
        return self.epoch_s + (us - self.us) * 1e-6


@dataclass(frozen=True)
class Reply:
    """One reply of the board: ``kind`` OK or ERR, its words after the kind, and the
    host times (``timebase.now()``) around the exchange."""

    kind: str  # "OK" or "ERR"
    words: list[str]
    t_send: float  # timebase.now() before the request was written
    t_recv: float  # timebase.now() after the reply was read

    def sample(self, us: int) -> ClockSample:
        """The board read ``us`` inside the exchange: its midpoint ± half its width."""
        return ClockSample(us, 0.5 * (self.t_send + self.t_recv), 0.5 * (self.t_recv - self.t_send))


def crc(body: bytes) -> str:
    """The line's checksum: CRC-16/XMODEM of the body as four hex digits."""
    return f"{binascii.crc_hqx(body, 0):04X}"


class BoardLine:
    """One request/reply exchange at a time with the board on ``link``, each reply awaited
    at most ``timeout_s`` of wall time; the caller serialises and retries."""

    def __init__(self, link: SerialLink, timeout_s: float):
        self.link = link
        self.timeout_s = timeout_s
        self._tags = itertools.count(1)

    def exchange(self, command: str) -> Reply:
        """One request/reply; raises :class:`~ncsynth.devices.serial_link.LinkFault` on
        anything but a valid reply to it."""
        tag = f"#{next(self._tags) % 100000}"
        body = f"{tag} {command}".encode("ascii")
        self.link.clear()
        t_send = timebase.now()
        self.link.write(body + b"*" + crc(body).encode() + b"\r\n")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self.parse(self.link.read_until(b"\n", deadline), tag, command)
            if reply is not None:
                return Reply(reply[0], reply[1], t_send, timebase.now())

    @staticmethod
    def parse(line: bytes, tag: str, command: str) -> tuple[str, list[str]] | None:
        """Check CRC and tag; return (kind, words) or None for a stale reply."""
        text = line.rstrip(b"\r\n")
        body, star, sent = text.rpartition(b"*")
        if not star or crc(body) != sent.decode("ascii", "replace"):
            raise LinkFault(f"garbled reply {line[:60]!r} (checksum)")
        words = body.decode("ascii", "replace").split()
        if not words or words[0] != tag:
            return None  # late reply to an earlier, timed-out request
        words = words[1:]
        expected = command.split()[0].rstrip("?")
        if not ((len(words) >= 2 and words[0] == "OK" and words[1] == expected)
                or (len(words) >= 3 and words[0] == "ERR")):
            raise LinkFault(f"unexpected reply {line[:60]!r}")
        return words[0], words[1:]
