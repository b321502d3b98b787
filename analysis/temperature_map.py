"""Where the clusters accumulate: amounts on the nucleation × growth temperature grid (seed 002).

Seed 002, Fig. 1: at 14 s of reaction time CdSe-437 is found only for nucleation temperatures
of 270–300 °C and grows with the growth temperature, while regular nanocrystals dominate
outside that window.  :func:`temperature_map_figure` draws that story from a grid run: one
panel per species (the MSC families, then the NCs), growth temperature across, nucleation
temperature up, the colour the CdSe held by the species (mmol/L of CdSe units, from the
cluster identification's Beer–Lambert amounts), cells above the diagonal (growth >
nucleation) left empty.  :func:`amount_grid` is the pure part: scattered points onto the grid.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display needed).
Units: °C, mol/L of CdSe units in, mmol/L on the colour scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .optical import MSC_PEAKS_NM

#: Panels in order: the MSC families by absorption maximum, then the nanocrystals.
SPECIES = (*MSC_PEAKS_NM, "NC")


def amount_grid(nucleation_c, growth_c, amount):
    """``(nucleation axis, growth axis, grid)``: ``amount`` per point placed on the grid.

    The axes are the sorted distinct temperatures (°C); ``grid[i, j]`` is the mean amount of
    the points at nucleation axis[i] and growth axis[j], NaN where no point was measured.
    """
    nucleation = np.asarray(nucleation_c, dtype=float)
    growth = np.asarray(growth_c, dtype=float)
    values = np.asarray(amount, dtype=float)
    if not (nucleation.ndim == growth.ndim == values.ndim == 1
            and nucleation.size == growth.size == values.size > 0):
        raise ValueError(f"nucleation_c, growth_c and amount must be 1-D of one length > 0, got "
                         f"shapes {nucleation.shape}, {growth.shape}, {values.shape}")
    rows, i = np.unique(nucleation, return_inverse=True)
    columns, j = np.unique(growth, return_inverse=True)
    total = np.zeros((rows.size, columns.size))
    count = np.zeros_like(total)
    np.add.at(total, (i, j), values)
    np.add.at(count, (i, j), 1.0)
    with np.errstate(invalid="ignore"):
        return rows, columns, np.where(count > 0, total / count, np.nan)


def _edges(axis: np.ndarray) -> np.ndarray:
    """Cell edges around the axis values (half way between neighbours; ±5 °C for one value)."""
    if axis.size == 1:
        return np.array([axis[0] - 5.0, axis[0] + 5.0])
    middle = 0.5 * (axis[1:] + axis[:-1])
    return np.concatenate([[2 * axis[0] - middle[0]], middle, [2 * axis[-1] - middle[-1]]])


def draw_temperature_map(nucleation_c, growth_c, amounts_molar: dict, *, title: str = "") -> Figure:
    """One panel per species of ``amounts_molar`` (label → per-point CdSe units, mol/L; labels
    of :data:`SPECIES` first, in that order) on the nucleation × growth grid, all on one colour
    scale (so the panels compare); a species never found is titled "not found"."""
    labels = [s for s in SPECIES if s in amounts_molar] + \
        [s for s in amounts_molar if s not in SPECIES]
    if not labels:
        raise ValueError("amounts_molar holds no species")
    grids = {label: amount_grid(nucleation_c, growth_c, amounts_molar[label]) for label in labels}
    top = max(float(np.nanmax(grid)) for _, _, grid in grids.values()) * 1e3
    n_columns = min(3, len(labels))
    n_rows = -(-len(labels) // n_columns)
    figure = Figure(figsize=(4.0 * n_columns + 1.0, 3.6 * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for ax, label in zip(axes, labels):
        rows, columns, grid = grids[label]
        mesh = ax.pcolormesh(_edges(columns), _edges(rows), np.ma.masked_invalid(grid * 1e3),
                             cmap="viridis", vmin=0.0, vmax=top if top > 0 else 1.0, gid=label)
        name = "NCs" if label == "NC" else f"CdSe-{label.split('-', 1)[1]}"
        ax.set_title(name if np.nanmax(grid) > 0 else f"{name}: not found")
        ax.set_xlabel("growth temperature (°C)")
        ax.set_ylabel("nucleation temperature (°C)")
        ax.set_xticks(columns)
        ax.set_yticks(rows)
        ax.tick_params(axis="x", labelrotation=90)
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    figure.colorbar(mesh, ax=axes[:len(labels)].tolist(), label="CdSe units held (mmol/L)")
    if title:
        figure.suptitle(title)
    return figure


def temperature_map_figure(nucleation_c, growth_c, amounts_molar: dict, path, *,
                           title: str = "") -> Path:
    """Draw :func:`draw_temperature_map` and save it to ``path`` (PNG by its suffix); return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_temperature_map(nucleation_c, growth_c, amounts_molar, title=title).savefig(path, dpi=100)
    return path
