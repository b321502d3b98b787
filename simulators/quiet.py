"""Is this process quiet? What a jumping :class:`~ncsynth.simulators.clock.WorldClock` asks
before it moves its time (the Lewis way: the simulation decides when time moves, from what it
observes, not from calls the devices make for it).

A thread with work to do either runs — its CPU time grows — or waits for a CPU: state ``R``
(Linux: ``/proc/self/task/<tid>/syscall`` then reads ``running``); one in uninterruptible
sleep (``D`` in its ``stat``: disk I/O, an HDF5 file written) counts as working too. A thread
blocked on a socket, a pipe, a lock or a condition is neither, and whatever wakes it from
inside this process (a reply written on the loopback, a Status finished, a queue put) makes it
runnable at once, in the waker's own system call — or, woken from another CPU, "being woken"
until that CPU takes it (``R`` in its ``stat``, while ``syscall`` still names the call it
slept in: µs, on a virtual machine up to ms). So, outside the threads that wait on the
clock itself, "no CPU time spent and nobody runnable" means nothing in the process can still
act at the world's current time: a device
between two requests, a reply on its way, a Status callback, a worker picking up a task — all
of them show. A thread waiting for the GIL shows too: it ran to get there, or the thread holding
the GIL runs, unless that is the looking thread itself (a sleep that ends during the look):
so a quiet look lets go of the GIL and looks again (what the clock's scheduler asks:
:meth:`ThreadWatch.anyone_working_after_handover`). A thread asleep in ``nanosleep``
(``time.sleep``: Modbus's inter-frame silence before a request, a retry's back-off) is
counted as working too: it passes wall time inside a transaction and goes on by itself
(unless it sleeps long: :class:`ThreadWatch`).

A message between two threads on the loopback is, for a moment, in no thread: the kernel
normally delivers it within the sender's system call, waking the reader there, but on a busy
machine it may leave the delivery to its own ``ksoftirqd`` thread, and the packet waits in a
CPU's network backlog meanwhile. ``/proc/net/softnet_stat`` gives each backlog's length
(Linux 5.10 on): a packet waiting there counts as work. Where the kernel does not say, only the
clock's ``idle_s`` of quiet covers such a delivery.

What it cannot see: a thread in a timed wait (a condition, ``select``) that will act on the
world when its time-out ends rather than when woken; and bytes a TCP socket holds back,
unsent, until the peer acknowledges what it sent before (Nagle's algorithm, up to the peer's
40 ms delayed acknowledgement). The simulators avoid both (the simulated IOC turns off
caproto's 10 ms batching of monitor updates, and sends with ``TCP_NODELAY``:
:class:`~.ca_loopback.LoopbackContext`).

Without ``/proc`` (not Linux) only the CPU-time test is made.
"""

from __future__ import annotations

import functools
import os
import platform
import struct
import time
from typing import Iterable

_TASKS = "/proc/self/task"
_HAS_PROC = os.path.isdir(_TASKS)
_SOFTNET = "/proc/net/softnet_stat"
_SOFTNET_BYTES = 1 << 17  # ~140 bytes a CPU
#: System call numbers of nanosleep and clock_nanosleep (a thread in ``time.sleep``).
_SLEEPS = {"x86_64": (b"35", b"230"), "aarch64": (b"101", b"115")}.get(platform.machine(), ())
#: System calls that wait only in interruptible sleep (``S``, never ``D``): futex (a lock, a
#: condition), epoll_wait, epoll_pwait(2), poll, ppoll, select, pselect6, accept(4), recvfrom,
#: recvmsg, wait4, waitid, rt_sigtimedwait, futex_waitv. A thread blocked in one of them is
#: idle without a look at its ``stat``; in any other call (read, write, fsync: maybe the disk)
#: its ``stat`` says whether it is in ``D``.
_ONLY_INTERRUPTIBLE = frozenset({
    "x86_64": (b"202", b"232", b"281", b"441", b"7", b"271", b"23", b"270", b"43", b"288",
               b"45", b"47", b"61", b"247", b"128", b"449"),
    "aarch64": (b"98", b"22", b"441", b"73", b"72", b"202", b"242", b"207", b"212", b"260",
                b"95", b"137", b"449"),
}.get(platform.machine(), ()))
#: clock_nanosleep's first two arguments in ``time.sleep``: CLOCK_MONOTONIC, TIMER_ABSTIME.
_MONOTONIC_DEADLINE = [b"0x1", b"0x1"]
#: Wall seconds a look lets go of the GIL before its second look
#: (:meth:`ThreadWatch.anyone_working_after_handover`).
GIL_HANDOVER_S = 50e-6


def cpu_ns(excluded: Iterable[int] = ()) -> tuple[int, int]:
    """Bounds (ns) of the CPU time this process's threads have used, not counting the calling
    thread and the threads with ids (``threading`` idents) in ``excluded`` (one that has ended
    counts 0): the caller runs while the clocks are read, so its own time is only bracketed."""
    own = time.thread_time_ns()
    total = time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)
    own_after = time.thread_time_ns()
    for ident in excluded:
        try:
            total -= time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
        except OSError:  # ended meanwhile: its time is in the process total, as before
            pass
    return total - own_after, total - own


def same_cpu(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """True if two :func:`cpu_ns` bounds allow that nobody used CPU in between."""
    return after[0] <= before[1]


class ThreadWatch:
    """Sees whether a thread of this process is working now (see module docstring).

    A thread asleep in ``time.sleep`` counts as working if its wake-up comes less than
    ``long_sleep_s`` after the watch first saw it in that sleep, also after the wake-up while it
    has not yet run (a timer late on a virtual machine: a Modbus silence of 4 ms once slept
    10 ms there): a longer sleep is a library's periodic chore (Channel Access's
    unresponsive-server check every 0.5 s, ophyd's debug monitor every 1 s), not a
    transaction's silence (Modbus RTU's 3.5 characters: 4 ms at 9600 baud), and holds the
    clock neither during its sleep nor as it ends (when it counted as working in its last
    ``long_sleep_s``, a dry run's clock waited for such chores ~400 times). Where the wake-up
    time cannot be read, a sleeper counts as working until it has slept ``long_sleep_s``
    without running.

    The ``/proc`` files of each thread are opened once and read again in place (``pread``),
    and a thread's ``stat`` only where its system call may wait for the disk: a look at 46
    threads takes ~0.15 ms instead of ~0.35 ms (~0.9 ms opening the files each time), and a
    jumping clock looks at least twice per jump. :meth:`close` closes them.
    """

    def __init__(self, long_sleep_s: float = 0.01):
        self.long_sleep_s = long_sleep_s
        self._sleepers: dict[str, tuple[bytes, float]] = {}  # tid -> (run time, seen asleep since)
        self._files: dict[str, _TaskFiles] = {}
        self._softnet: int | None = None  # its file, opened on the first look
        self._memory: int | None = None  # /proc/self/mem, opened on the first sleeper seen

    def packets_queued(self) -> bool:
        """True if a packet waits in a CPU's network backlog (False where the kernel does not
        say: :func:`kernel_shows_backlog`)."""
        if not kernel_shows_backlog():
            return False
        if self._softnet is None:
            self._softnet = os.open(_SOFTNET, os.O_RDONLY)
        return backlog_packets(os.pread(self._softnet, _SOFTNET_BYTES, 0)) > 0

    def anyone_working(self, excluded_native_ids: Iterable[int] = (), *,
                       woken_too: bool = True) -> bool:
        """True if a thread of this process, other than ``excluded_native_ids`` (kernel thread
        ids, ``threading.get_native_id()``), runs, waits for a CPU or the disk, is being woken
        (``woken_too``: one more ``/proc`` read for each thread blocked on a lock, a socket or
        a condition, ~3.5 µs each here; :func:`_being_woken_or_on_disk`), or sleeps briefly
        now."""
        if not _HAS_PROC:
            return False
        if self.packets_queued():
            return True
        skip = {str(tid) for tid in excluded_native_ids}
        working, sleepers = False, {}
        tids = os.listdir(_TASKS)
        for tid in self._files.keys() - set(tids):  # ended since the last look
            self._files.pop(tid).close()
        for tid in tids:
            if tid in skip:
                continue
            files = self._files.get(tid)
            if files is None:
                files = self._files[tid] = _TaskFiles(tid)
            # "running" while the thread runs or waits for a CPU, else the call it is blocked
            # in and its arguments (also while it is being woken: _being_woken_or_on_disk)
            call = files.read("syscall").rstrip(b"\n").split(b" ", 4)
            if call[0] == b"running":
                working = True
            elif call[0] not in _SLEEPS:
                if woken_too or call[0] not in _ONLY_INTERRUPTIBLE:
                    working |= _being_woken_or_on_disk(files.read("stat"), call[0])
            else:
                ran = files.read("schedstat").split(b" ", 1)[0]  # the same sleep while unchanged
                # seen asleep now, when its call was read, not when the look began: a look the
                # machine holds up for ms (a loaded 2-core machine, many threads) would count
                # the delay into a sleep begun meanwhile, and a Modbus silence of 4 ms looked
                # long (a clock test saw the jump it must not make beside two CPU hogs)
                now = time.monotonic()
                seen = self._sleepers.get(tid)
                sleepers[tid] = seen if seen is not None and seen[0] == ran else (ran, now)
                asleep_since = sleepers[tid][1]
                wake = self._wake_time(call)
                if wake is not None:  # a short sleep, due or overdue (a late timer: a VM's CPU stolen)
                    working |= wake - asleep_since < self.long_sleep_s
                else:
                    working |= now - asleep_since < self.long_sleep_s
        self._sleepers = sleepers
        return working

    def anyone_working_after_handover(self, excluded_native_ids: Iterable[int] = ()) -> bool:
        """:meth:`anyone_working`, and if it saw nobody, once more after letting go of the GIL
        for :data:`GIL_HANDOVER_S`: a thread whose sleep ended while the looking thread held
        the GIL for its look (Python) waits for the GIL asleep on a futex, like an idle one;
        given the GIL, it runs (the caller's CPU test) or is runnable (the second look). What
        a jumping clock asks before it moves. Only the second look asks which threads are being
        woken: one woken before the first and not yet running is still being woken then, and
        the first look, which a jump always follows with the second, costs half as much."""
        if self.anyone_working(excluded_native_ids, woken_too=False):
            return True
        time.sleep(GIL_HANDOVER_S)
        return self.anyone_working(excluded_native_ids)

    def _wake_time(self, call: list[bytes]) -> float | None:
        """When (``time.monotonic()`` s) a thread in ``call`` (its ``/proc`` syscall fields)
        wakes: CPython's ``time.sleep`` is ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
        &deadline)``, the deadline on the sleeping thread's stack, read from
        ``/proc/self/mem``; None for another sleep, or if that cannot be read."""
        if call[0] != _SLEEPS[1] or len(call) < 4 or call[1:3] != _MONOTONIC_DEADLINE:
            return None
        try:
            if self._memory is None:
                self._memory = os.open("/proc/self/mem", os.O_RDONLY)
            seconds, nanoseconds = struct.unpack("qq", os.pread(self._memory, 16, int(call[3], 16)))
        except (OSError, ValueError, struct.error):  # woken meanwhile, or not ours to read
            return None
        return seconds + nanoseconds * 1e-9

    def close(self) -> None:
        """Close the ``/proc`` files kept open."""
        for files in self._files.values():
            files.close()
        self._files.clear()
        for fd in (self._softnet, self._memory):
            if fd is not None:
                os.close(fd)
        self._softnet = self._memory = None


def _being_woken_or_on_disk(stat: bytes, call: bytes) -> bool:
    """True if a thread that ``/proc`` shows blocked in system call ``call`` has its ``stat``
    say ``R`` (:func:`thread_state`), or ``D`` where ``call`` may wait for the disk.

    ``R`` for a blocked call is a thread being woken that has not run yet: woken from another
    CPU, it waits for that CPU to take it (the kernel's ``TASK_WAKING``, which ``stat`` reports
    as ``R`` and ``syscall`` as the call it slept in). On this kind of virtual machine that
    took 13 µs in the median, 0.15 ms in 1 % of wake-ups and up to 3.3 ms (a vCPU woken from
    its halt; tests/test_clock_observation.py). Seen from ``syscall`` alone, a reply on its
    way looked like a quiet process, and the clock jumped to the next deadline with a
    controller's read in flight (a dry run's heater reading at 6864 s instead of 6854 s, and
    other fits for the same seed, issue 18)."""
    state = thread_state(stat)
    return state == b"R" or (state == b"D" and call not in _ONLY_INTERRUPTIBLE)


def thread_state(stat: bytes) -> bytes:
    """The state letter (``R``, ``S``, ``D`` ...) of a thread's ``/proc`` ``stat``
    (``"<tid> (<name>) <state> ..."``, the name may hold spaces and parentheses)."""
    return stat[stat.rfind(b")") + 2:][:1]


def backlog_packets(softnet_stat: bytes) -> int:
    """Packets waiting in the CPUs' network backlogs, from ``/proc/net/softnet_stat`` (a line
    per CPU, hexadecimal fields; the 12th is that CPU's backlog, the 13th the CPU's number)."""
    return sum(int(line.split()[11], 16) for line in softnet_stat.splitlines())


@functools.cache
def kernel_shows_backlog() -> bool:
    """True if ``/proc/net/softnet_stat`` has each backlog's length: its lines then go on with
    each CPU's number, increasing (Linux 5.10 on; older kernels end before)."""
    try:
        with open(_SOFTNET, "rb") as stat:
            rows = [line.split() for line in stat.read().splitlines()]
        cpus = [int(row[12], 16) for row in rows]
    except (OSError, IndexError, ValueError):
        return False
    return bool(cpus) and cpus == sorted(set(cpus))


class _TaskFiles:
    """A thread's ``/proc/self/task/<tid>/`` files, opened on first read and read in place;
    empty once its thread has ended. A file kept open reads ``ESRCH`` once its thread has
    ended: it is opened again, in case a new thread has the same id."""

    def __init__(self, tid: str):
        self._tid = tid
        self._fds: dict[str, int] = {}

    def read(self, name: str) -> bytes:
        for _ in range(2):
            fd = self._fds.get(name)
            if fd is None:
                try:
                    fd = self._fds[name] = os.open(f"{_TASKS}/{self._tid}/{name}", os.O_RDONLY)
                except OSError:  # ended (FileNotFoundError), or not ours to read
                    return b""
            try:
                return os.pread(fd, 512, 0)
            except OSError:  # ended: maybe a new thread has its id
                os.close(self._fds.pop(name))
        return b""

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
