"""SerialLink against a real TCP server (pyserial ``socket://``, as a terminal server is reached)."""

import socket
import time

from ncsynth.devices.serial_link import SerialLink


def test_closing_does_not_wait_out_pyserials_reconnect_pause_and_the_link_reopens():
    """pyserial's socket:// close() sleeps 0.3 s after shutting the socket down; a device's
    close (the end of every dry run) or a retry after a port error must not wait for it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        link = SerialLink(f"socket://127.0.0.1:{server.getsockname()[1]}", timeout_s=1.0)
        link.write(b"one\n")
        first, _ = server.accept()
        with first:
            first.settimeout(10)
            assert first.recv(16) == b"one\n"
            began = time.perf_counter()
            link.close()
            took = time.perf_counter() - began
            assert took < 0.15, f"close() took {took:.3f} s"  # 0.3 s when it waits
            assert first.recv(16) == b""  # the far end sees the connection closed
        link.write(b"two\n")  # a new port, opened on demand
        second, _ = server.accept()
        with second:
            second.settimeout(10)
            assert second.recv(16) == b"two\n"
        link.close()
