"""Channel Access on the loopback: the ports, PVs and client environment of simulated IOCs.

A simulated IOC (:mod:`.area_detector`) serves on 127.0.0.1 with a UDP search port it holds
alone (:class:`LoopbackContext`); this process's Channel Access clients find it through
``EPICS_CA_ADDR_LIST`` with no auto address list (:func:`epics_client_environment`,
:func:`point_clients_at`). :func:`setpoint_pairs` builds an IOC's setpoint/``_RBV`` channel
pairs, as ADCore names them, their client writes going through the IOC's hooks.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import threading
from collections.abc import Callable

from caproto import ChannelChar, ChannelDouble, ChannelEnum, ChannelInteger, ChannelString
from caproto.asyncio.server import Context
from caproto.asyncio.utils import _DatagramProtocol, _UdpTransportWrapper


def setpoint_pairs(pvs: dict, prefix: str, table, enums: dict[str, list[str]], put) -> None:
    """Add to ``pvs`` a setpoint ``<prefix><suffix>`` and its read-back ``..._RBV`` for each
    (suffix, kind, initial value) of ``table``; kind "double", "int", "text" (char waveform),
    "port" (string) or a key of ``enums``. A client's write to a setpoint goes through
    ``await put(name, value)`` (which may refuse it, or return the value to keep) and is
    mirrored to the read-back."""
    for suffix, kind, initial in table:
        readback = _channel(kind, initial, enums)
        pvs[prefix + suffix] = _channel(kind, initial, enums, setpoint_of=(put, prefix + suffix, readback))
        pvs[f"{prefix}{suffix}_RBV"] = readback


def _channel(kind: str, value, enums, setpoint_of=None):
    """A channel of ``kind``; ``setpoint_of`` = (put, name, readback): see :func:`setpoint_pairs`."""
    cls, options = {"double": (ChannelDouble, {"precision": 4}), "int": (ChannelInteger, {}),
                    "text": (ChannelChar, {"max_length": 512}), "port": (ChannelString, {})}.get(kind, (ChannelEnum, {}))
    if cls is ChannelEnum:
        options = {"enum_strings": enums[kind]}
    if setpoint_of is None:
        return cls(value=value, **options)
    put, name, readback = setpoint_of

    class Setpoint(cls):
        async def verify_value(self, data):
            value = await put(name, await super().verify_value(data))
            await readback.write(value)
            return value

    return Setpoint(value=value, **options)


class LoopbackContext(Context):
    """caproto's asyncio server serving ``pvdb`` on ``host`` only, its UDP search port
    (``ca_server_port``, ``port``; 0: a free one) bound as the context is made and held alone.

    caproto binds that socket with ``SO_REUSEADDR``, and so does every caproto client its own
    search socket, bound to port 0: Linux then may give a client the IOC's port (any such
    process on the host, ~ one in 28 000 per live IOC), and the IOC's socket, bound to the more
    specific 127.0.0.1, takes the search replies meant for that client, which never connects
    ("could not connect within 10.0-second timeout"). A plainly bound socket shares its port with
    no one: tests/test_area_detector.py::test_no_channel_access_client_can_share_the_search_port.

    Each circuit sends without Nagle's delay (``TCP_NODELAY``), as an EPICS IOC's do (rsrv sets
    it on every client socket). caproto makes its listening socket with protocol number 0, and
    asyncio sets ``TCP_NODELAY`` only on sockets whose protocol reads ``IPPROTO_TCP``: a monitor
    update sent while the previous one was not yet acknowledged then waited for the client's
    delayed ACK, up to 40 ms, in no thread (tests/test_area_detector.py::
    test_a_monitor_update_reaches_the_client_without_waiting_for_an_acknowledgement)."""

    def __init__(self, pvdb: dict, host: str, port: int = 0):
        super().__init__(pvdb, interfaces=[host])
        self._search_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self._search_socket.setblocking(False)
        try:
            self._search_socket.bind((host, port))
        except OSError:
            self._search_socket.close()
            raise
        self.ca_server_port = self._search_socket.getsockname()[1]

    async def tcp_handler(self, client, addr):
        """caproto's own, on a circuit that sends each reply at once (``TCP_NODELAY``)."""
        client.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await super().tcp_handler(client, addr)

    async def _create_broadcaster_transport(self, interface):
        """caproto's own, but with the socket bound in :meth:`__init__` (caproto calls it once
        per interface, as the server starts)."""
        sock, self._search_socket = self._search_socket, None
        if sock is None:
            raise RuntimeError("the search socket of a LoopbackContext serves one start only")
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            functools.partial(_DatagramProtocol, parent=self, identifier=interface,
                              queue=self.broadcaster_datagram_queue), sock=sock)
        self.udp_socks[interface] = _UdpTransportWrapper(transport)


def epics_client_environment(address: tuple[str, int]) -> dict[str, str]:
    """Channel Access client settings that find an IOC at ``address`` (host, UDP port) only:
    ``EPICS_CA_ADDR_LIST`` = ``host:port``, ``EPICS_CA_AUTO_ADDR_LIST`` = ``NO``."""
    return {"EPICS_CA_ADDR_LIST": f"{address[0]}:{address[1]}", "EPICS_CA_AUTO_ADDR_LIST": "NO"}


_served: list[str] = []  # "host:port" of the IOCs this process's clients are pointed at
_saved: dict[str, str | None] = {}
_served_lock = threading.Lock()


def point_clients_at(address: tuple[str, int]) -> Callable[[], None]:
    """Point this process's Channel Access clients at the IOC at ``address`` (host, UDP port),
    beside any other simulated IOC it serves, and nowhere else (``EPICS_CA_ADDR_LIST``, no auto
    list; caproto reads them at every search). The returned function takes it off the list; the
    last one restores the environment as it was."""
    entry = f"{address[0]}:{address[1]}"
    with _served_lock:
        if not _served:
            _saved.update({key: os.environ.get(key) for key in ("EPICS_CA_ADDR_LIST", "EPICS_CA_AUTO_ADDR_LIST")})
        _served.append(entry)
        os.environ.update(EPICS_CA_ADDR_LIST=" ".join(_served), EPICS_CA_AUTO_ADDR_LIST="NO")

    def release() -> None:
        with _served_lock:
            if entry not in _served:
                return
            _served.remove(entry)
            if _served:
                os.environ["EPICS_CA_ADDR_LIST"] = " ".join(_served)
                return
            for key, value in _saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return release
