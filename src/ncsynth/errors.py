"""Errors told in one line (kernel: imports nothing from ncsynth)."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name if it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class RefusedToStart(RuntimeError):
    """A plan refused to start because the set-up is not ready (a spent piston, ...): said in
    one line, before anything moved. The session prints it without a traceback."""
