"""Frames of a run read from the detector's HDF5 files, where its stream_resource/stream_datum
documents put them (the areaDetector HDF5 plugin's files; :class:`StreamFrames`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import h5py
import hdf5plugin  # noqa: F401  (registers the frames' bitshuffle-LZ4/LZ4 filters with h5py)
import numpy as np

from ncsynth.errors import first_line


class FrameFileError(OSError):
    """A frame file that is missing or cannot be read; the message names the file and the cause."""


class StreamFrames:
    """Frames referenced by stream_resource/stream_datum documents (mimetype ``application/x-hdf5``).

    Feed it the run's ``stream_resource`` and ``stream_datum`` documents (they precede the events
    that use them); :meth:`frame` then returns the frame of an event — its ``descriptor`` and
    ``seq_num`` select, through the stream_datum's ``seq_nums`` → ``indices``, a slice along axis
    0 of the resource's ``dataset``. Files are opened for SWMR reading when first needed (the
    detector may still be appending) and refreshed for a frame beyond what was last seen.
    ``root_map`` maps directories of the uris to where the files are now (files moved since
    acquisition; :meth:`locate`). ``complete=True`` (a stored run: every file closed) opens them without SWMR:
    HDF5's SWMR reader skips the truncated-file check, retries a metadata read past the end of
    a truncated file with a doubling back-off (for ever, in practice) and reads data chunks past
    the end as zeros. Files that are missing or cannot be read raise :class:`FrameFileError`.
    """

    MIMETYPE = "application/x-hdf5"

    def __init__(self, root_map: dict | None = None, *, complete: bool = False):
        self.root_map = {Path(old): Path(new) for old, new in (root_map or {}).items()}
        self.complete = bool(complete)
        self._resources: dict[str, tuple[Path, str, str]] = {}  # uid -> (path, dataset, data key)
        #: (descriptor uid, data key, seq_num) -> (stream_resource uid, index along axis 0)
        self._frames: dict[tuple[str, str, int], tuple[str, int]] = {}
        self._datasets: dict[str, h5py.Dataset] = {}

    def stream_resource(self, doc: dict) -> None:
        if doc.get("mimetype") == self.MIMETYPE:
            self._resources[doc["uid"]] = (self._path(doc["uri"]), doc["parameters"]["dataset"],
                                           doc["data_key"])

    def stream_datum(self, doc: dict) -> None:
        resource = self._resources.get(doc["stream_resource"])
        if resource is None:
            return  # not an HDF5 stream
        seq_nums, indices = doc["seq_nums"], doc["indices"]
        for offset in range(indices["stop"] - indices["start"]):
            self._frames[(doc["descriptor"], resource[2], seq_nums["start"] + offset)] = \
                (doc["stream_resource"], indices["start"] + offset)

    def frame(self, descriptor: str, data_key: str, seq_num: int) -> np.ndarray:
        """The frame of ``data_key`` in event ``seq_num`` of ``descriptor``; LookupError if no
        stream_datum references it, :class:`FrameFileError` if its file does not hold it."""
        try:
            uid, index = self._frames[(descriptor, data_key, seq_num)]
        except KeyError:
            raise LookupError(f"no stream_datum references {data_key} of event {seq_num}") from None
        dataset = self._datasets.get(uid)
        if dataset is None:
            dataset = self._datasets[uid] = self._open(*self._resources[uid][:2])
        if index >= dataset.shape[0] and not self.complete:
            dataset.refresh()
        if index >= dataset.shape[0]:
            raise FrameFileError(f"{dataset.file.filename}: frame {index} not written "
                                 f"({dataset.shape[0]} frames in the file)")
        try:
            return dataset[index]
        except OSError as err:
            raise FrameFileError(f"{dataset.file.filename}: frame {index} cannot be read "
                                 f"({first_line(err)})") from None

    def _open(self, path: Path, name: str) -> h5py.Dataset:
        try:
            file = h5py.File(path, "r", swmr=not self.complete)
        except FileNotFoundError:
            raise FrameFileError(f"{path}: frame file missing") from None
        except OSError as err:
            raise FrameFileError(f"{path}: frame file cannot be read ({first_line(err)})") from None
        try:
            return file[name]
        except KeyError:
            file.close()
            raise FrameFileError(f"{path}: no dataset {name!r} in the frame file") from None

    def close(self) -> None:
        for dataset in self._datasets.values():
            dataset.file.close()
        self._datasets.clear()

    def _path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise ValueError(f"stream_resource uri must be a file:// uri, got {uri!r}")
        return self.locate(Path(unquote(parts.path)))

    def locate(self, path: Path) -> Path:
        """Where the file written at ``path`` is now (``root_map``)."""
        for old, new in self.root_map.items():
            if path.is_relative_to(old):
                return new / path.relative_to(old)
        return path
