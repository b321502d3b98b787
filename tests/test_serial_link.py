"""SerialLink against a real TCP server (pyserial ``socket://``, as a terminal server is reached)."""

import contextlib
import socket
import time

import pytest

from ncsynth.devices.serial_link import LinkFault, SerialLink


@contextlib.contextmanager
def _link_to_a_server(timeout_s: float):
    """A listening socket and a SerialLink pointed at it (opened by its first write)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        yield server, SerialLink(f"socket://127.0.0.1:{server.getsockname()[1]}",
                                 timeout_s=timeout_s)


def _accept(server, request: bytes) -> socket.socket:
    """The link's connection, once ``request`` has come through it."""
    peer, _ = server.accept()
    peer.settimeout(10)
    assert peer.recv(16) == request
    return peer


def test_closing_does_not_wait_out_pyserials_reconnect_pause_and_the_link_reopens():
    """pyserial's socket:// close() sleeps 0.3 s after shutting the socket down; a device's
    close (the end of every dry run) or a retry after a port error must not wait for it."""
    with _link_to_a_server(timeout_s=1.0) as (server, link):
        link.write(b"one\n")
        with _accept(server, b"one\n") as first:
            began = time.perf_counter()
            link.close()
            took = time.perf_counter() - began
            assert took < 0.15, f"close() took {took:.3f} s"  # 0.3 s when it waits
            assert first.recv(16) == b""  # the far end sees the connection closed
        link.write(b"two\n")  # a new port, opened on demand
        _accept(server, b"two\n").close()
        link.close()


def test_a_reply_that_arrived_in_time_is_taken_after_a_pause_of_the_reader():
    """A reader held up past its deadline (a garbage collection, a loaded machine: the
    simulated instruments of a dry run pause with it) still takes a reply that is waiting on
    the port; only an empty port past the deadline is a time-out."""
    with _link_to_a_server(timeout_s=0.5) as (server, link):
        link.write(b"STATUS?\n")
        with _accept(server, b"STATUS?\n") as peer:
            peer.sendall(b"OK STATUS A=LOADED B=LOADED\r\n" + b"#2 OK")
            time.sleep(0.05)  # on the loopback, in the reader's socket buffer
            past = time.monotonic() - 1.0  # the reader comes back after its deadline
            assert link.read_until(b"\n", past) == b"OK STATUS A=LOADED B=LOADED\r\n"
            with pytest.raises(LinkFault, match=r"no complete reply within 0.5 s \(got b'#2 OK'\)"):
                link.read_until(b"\n", past)  # a part of a line, nothing more coming
            began = time.monotonic()
            with pytest.raises(LinkFault, match="no complete reply within 0.5 s"):
                link.read_until(b"\n", began + 0.2)
            assert time.monotonic() - began >= 0.2  # it did wait until the deadline
        link.close()
