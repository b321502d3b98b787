"""A real tmpfs of a given size for tests of full or read-only disks (skips where the machine
does not let the tests mount one)."""

import contextlib
import subprocess

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mount_point, size: str):
    """Mount a tmpfs of ``size`` (e.g. ``"60m"``) on the new directory ``mount_point``, yield
    it, unmount it after (lazily: a test's leftover process may still hold a file there)."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
