"""Does the jumping world clock ever move while bytes are on their way between two threads?

The clock moves once it judges the process quiet (:mod:`ncsynth.simulators.quiet`: no thread
ran, none is runnable). It cannot see a socket: a request written but held back by the kernel
(Nagle's algorithm waiting for an ACK) or a reply received that no thread reads yet would be
work in flight at the world's current time. This probe wraps ``WorldClock._process_quiet`` and,
at every "quiet" it answers, reads this process's sockets (the inodes of ``/proc/self/fd``)
in ``/proc/self/net/{tcp,tcp6,udp,udp6}``: a receive queue not empty (received, unread), and
for connected TCP sockets ``TCP_INFO``'s ``tcpi_notsent_bytes`` (written, not yet sent). It then
runs a short in-process dry run (writer and analysis in this process, 30 frames) and prints how
many quiet judgements found bytes queued, with the first few.

    OPENBLAS_NUM_THREADS=1 python benchmarks/inflight.py [software|detector]
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import sys
import tempfile

import numpy as np

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run
from ncsynth.simulators.clock import WorldClock

#: Offset of ``tcpi_notsent_bytes`` in Linux's ``struct tcp_info`` (since Linux 4.6).
NOTSENT_OFFSET = 144


def socket_fds() -> dict[str, int]:
    """This process's sockets: inode -> file descriptor."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            found[link[8:-1]] = int(fd)
    return found


def not_sent(fd: int) -> int:
    """Bytes written to the TCP socket ``fd`` and not yet sent (0 if unknown)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    except OSError:
        return 0
    return struct.unpack_from("I", info, NOTSENT_OFFSET)[0] if len(info) >= NOTSENT_OFFSET + 4 else 0


def queued() -> list[tuple]:
    """(protocol, local, remote, unread bytes, unsent bytes) of this process's sockets that
    hold bytes received and unread or written and unsent."""
    fds, found = socket_fds(), []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/self/net/{protocol}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            fd = fds.get(fields[9])
            if fd is None:
                continue
            unread = int(fields[4].split(":")[1], 16)
            unsent = not_sent(fd) if protocol.startswith("tcp") and fields[3] == "01" else 0
            if unread or unsent:
                found.append((protocol, fields[1], fields[2], unread, unsent))
    return found


def main() -> None:
    acquisition = sys.argv[1] if len(sys.argv) > 1 else "software"
    counts, examples = collections.Counter(), []
    judged = WorldClock._process_quiet

    def probed(clock, seen, used):
        quiet = judged(clock, seen, used)
        if quiet:
            counts["quiet"] += 1
            bytes_queued = queued()
            if bytes_queued:
                counts["quiet with bytes queued"] += 1
                examples.append((clock.now(), bytes_queued))
        return quiet

    WorldClock._process_quiet = probed
    config = load_config(None)
    with tempfile.TemporaryDirectory(prefix="ncsynth-inflight-") as tmp:
        config["data"]["dir"] = tmp
        summary = dry_run(config, seed=11, progress=False, recipe_kwargs={"reaction_time_s": 60},
                          plan_kwargs={"schedule_s": np.geomspace(2.0, 60.0, 30).round(3).tolist(),
                                       "n_background": 2, "monitor_period_s": 10,
                                       "acquisition": acquisition},
                          processes=())
    print(f"{acquisition}-triggered dry run: {summary['exit_status']}, {summary.get('frames')} frames; "
          f"quiet judgements {counts['quiet']}, of which with bytes queued on a socket "
          f"{counts['quiet with bytes queued']}")
    for when, bytes_queued in examples[:10]:
        print(f"  world {when:.3f}: {bytes_queued}")


if __name__ == "__main__":
    main()
