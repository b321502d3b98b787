"""Tables of analysis results as CSV (seed 000 §S.2: one row per SAXS frame).

``write_fits_csv(rows, path)`` writes the ``fits`` stream of a derived run
(:mod:`ncsynth.analysis.derived_run`): the header names every column with its unit in brackets,
``radius_nm [nm]``; failed frames are written with empty numeric cells (NaN) and their reason.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ncsynth.analysis.derived_run import FIT_KEYS


def _header(name: str) -> str:
    unit = FIT_KEYS.get(name, {}).get("units", "")
    return f"{name} [{unit}]" if unit else name


def _as_rows(rows) -> list[Mapping]:
    """Rows from a list of mappings, or from a mapping of columns (dict of arrays, xarray Dataset)."""
    if isinstance(rows, Mapping) or hasattr(rows, "data_vars"):
        names = list(rows.data_vars) if hasattr(rows, "data_vars") else list(rows)
        columns = {name: np.asarray(rows[name]).tolist() for name in names}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"rows given as columns must all have one length, got lengths {sorted(lengths)}")
        count = lengths.pop() if lengths else 0
        return [{name: columns[name][i] for name in names} for i in range(count)]
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be a list of mappings or a mapping of columns, got {type(rows).__name__}")
    rows = list(rows)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{index}] must be a mapping, got {type(row).__name__}")
    return rows


def _cell(value):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return value


def write_fits_csv(rows, path) -> Path:
    """Write per-frame fit results to ``path`` as CSV; returns the path.

    ``rows``: the ``fits`` events' data (a list of dicts) or their columns (dict of arrays,
    xarray Dataset from ``run["fits"].read()``). Columns follow the fits stream's order
    (time_s, frame_time, radius_nm, ...), then any others; every row must have the columns of
    the first. ``success`` is written as 1/0, NaN as an empty cell.
    """
    table = _as_rows(rows)
    if not table:
        raise ValueError("rows must hold at least one fit, got none")
    present = list(table[0])
    names = [name for name in FIT_KEYS if name in present] + [n for n in present if n not in FIT_KEYS]
    for index, row in enumerate(table):
        missing = [name for name in names if name not in row]
        if missing:
            raise ValueError(f"rows[{index}] lacks the columns {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([_header(name) for name in names])
        writer.writerows([_cell(row[name]) for name in names] for row in table)
    return path
