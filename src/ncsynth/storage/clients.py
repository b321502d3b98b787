"""Tiled clients that read a run while it is being written.

A run's frames grow while it is acquired: each stream_datum the writer commits extends the
array's structure in the catalog. Tiled's array client reads "the whole array" as a request
without a slice, carrying the shape it was given when it fetched the node
(``expected_shape``); if the writer has registered another frame in between, the server now
serves the longer array and answers HTTP 500 ("the shape expected from the structure does not
match the actual data shape"; tiled 0.2.20, upstream bluesky/tiled#1314). Measured here: a
reader in another process polling ``run.primary["saxs_image"].read()`` while a run was
written got that 500 in 2 of 3 runs, on its first or second read.

:data:`STRUCTURE_CLIENTS` is Tiled's default ("numpy") set of structure clients with one
change: reading the whole of an array asks for its leading axis by explicit bounds
(``0:n``, n the frames the client knows of), which the server can always serve exactly. A
reader thus sees every frame registered when it looked the array up, never an error; frames
registered since appear on its next lookup.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping

from tiled.client.array import ArrayClient
from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH
from tiled.ndslice import NDSlice


class GrowingArrayClient(ArrayClient):
    """Tiled's (numpy) array client; a read of the whole array names its leading-axis
    bounds, so an array that grew since this client was made is read as it was then."""

    def read(self, slice=None):
        if not NDSlice(slice) and self.shape:  # the whole array (no slice, ``...`` or ``:``)
            slice = (builtins.slice(0, self.shape[0]),)
        return super().read(slice)


class _StructureClients(Mapping):
    """Tiled's default structure clients (looked up when used, so the specs that packages
    register through entry points, e.g. BlueskyRun, are found) with ``array`` replaced."""

    def __init__(self, base: Mapping, **replaced):
        self._base, self._replaced = base, replaced

    def __getitem__(self, key):
        if key in self._replaced:
            return self._replaced[key]
        return self._base[key]

    def __iter__(self) -> Iterator:
        return iter({*self._base, *self._replaced})

    def __len__(self) -> int:
        return len({*self._base, *self._replaced})


#: ``structure_clients`` for :func:`tiled.client.from_context` (the catalog's clients).
STRUCTURE_CLIENTS = _StructureClients(DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"],
                                      array=GrowingArrayClient)
