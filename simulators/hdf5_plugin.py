"""The HDF5 file plugin (NDFileHDF5, ``<prefix>HDF1:``) of the simulated areaDetector IOC.

Behaviour (areaDetector's, reduced to what :class:`~ncsynth.devices.area_detector.AreaDetectorSAXS`
needs):

* ``Capture`` = 1 (``FileWriteMode`` Stream) opens ``FullFileName_RBV`` = ``FileTemplate``
  filled C-style with ``FilePath``, ``FileName``, ``FileNumber`` (:func:`c_format`) and appends
  every frame to ``/entry/data/data`` (n, rows, cols) ``uint32``, compressed as ``Compression``
  says (``None``, ``zlib`` at ``ZLevel``, ``Blosc`` as ``BloscCompressor``/``BloscLevel``/
  ``BloscShuffle`` say, ``BSLZ4``, ``LZ4``; another choice is refused), with the frame's
  NDAttributes (time stamp, unique id, the two beam monitors, ``AcquireTime``) and the
  detector's calibration as NeXus (:mod:`ncsynth.simulators.frame_file`); flushed every
  ``NumFramesFlush`` frames, SWMR if ``SWMRMode`` On; ``NumCaptured_RBV`` counts them, each
  frame's ``TimeStamp_RBV`` (its start, s after the EPICS epoch) posted before it is counted.
* As areaDetector's plugin with ``BlockingCallbacks`` No, it writes (compression included) in
  a thread of its own, frames queued in order (:meth:`SimulatedHDF5Plugin.receive`), so the
  driver's next exposure runs while the last frame is written.
* ``Capture`` = 0 closes the file once the queued frames are written. ``FilePath`` is created
  if ``CreateDirectory`` is not 0; ``FilePathExists_RBV`` says whether it exists. A failed open
  or write sets ``WriteStatus`` (1, Error) and ``WriteMessage`` (:func:`write_message`).

Time: a jumping world clock holds still (``clock.busy()``) from the moment a frame is queued
until it is written or has failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import h5py
import numpy as np
from caproto import ChannelChar, ChannelDouble, ChannelInteger, ChannelString

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.timebase import EPICS_EPOCH_S
from .ca_loopback import setpoint_pairs
from .frame_file import BLOSC_COMPRESSORS, BLOSC_SHUFFLES, COMPRESSIONS, append_frame, compression_filter, open_frame_file

_ENUMS = {"no_yes": ["No", "Yes"], "write_mode": ["Single", "Capture", "Stream"], "off_on": ["Off", "On"],
          "disable_enable": ["Disable", "Enable"], "compression": list(COMPRESSIONS),
          "blosc_compressor": list(BLOSC_COMPRESSORS), "blosc_shuffle": list(BLOSC_SHUFFLES)}
#: (suffix, kind, initial value) of the plugin's setpoints (each with its ``_RBV``).
_HDF_PAIRS = [("EnableCallbacks", "disable_enable", "Enable"), ("BlockingCallbacks", "no_yes", "No"),
              ("FileWriteMode", "write_mode", "Stream"), ("FileTemplate", "text", "%s%s_%3.3d.h5"),
              ("AutoSave", "no_yes", "No"), ("AutoIncrement", "no_yes", "No"),
              ("NumCapture", "int", 0), ("CreateDirectory", "int", 0), ("SWMRMode", "off_on", "Off"),
              ("NumFramesFlush", "int", 1), ("Capture", "int", 0), ("FilePath", "text", "/"),
              ("FileName", "text", "frames"), ("FileNumber", "int", 0), ("ArrayCounter", "int", 0),
              ("NDArrayPort", "port", "SAXS1"), ("Compression", "compression", "None"),
              ("ZLevel", "int", 6), ("BloscCompressor", "blosc_compressor", "blosclz"),
              ("BloscLevel", "int", 5), ("BloscShuffle", "blosc_shuffle", "None")]


class SimulatedHDF5Plugin:
    """The plugin (see module docstring): its PVs, named ``<prefix>HDF1:...``, go into ``pvs``
    (the IOC's table); ``clock``: the world's; ``geometry``: described in every file it opens;
    ``dtype``: the frames'. :attr:`stall_writes` (back door for tests): frames are received but
    never written (a capture that never completes)."""

    def __init__(self, pvs: dict, prefix: str, clock, geometry: DetectorGeometry, dtype):
        self.pvs, self.clock, self.geometry, self.dtype = pvs, clock, geometry, dtype
        self.hdf = hdf = f"{prefix}HDF1:"
        self.stall_writes = False
        self._file: h5py.File | None = None
        # the plugin's own thread (its queue: the executor's, first in, first out) and the
        # frames queued to it, not yet written
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="HDF1")
        self._writes: set[asyncio.Future] = set()
        setpoint_pairs(pvs, hdf, _HDF_PAIRS, _ENUMS, self._put)
        rows, cols = geometry.shape
        for name, value in [("ArraySize0_RBV", cols), ("ArraySize1_RBV", rows), ("ArraySize2_RBV", 0),
                            ("NumCaptured_RBV", 0), ("FilePathExists_RBV", 0), ("WriteStatus", 0)]:
            pvs[hdf + name] = ChannelInteger(value=value)
        pvs[f"{hdf}TimeStamp_RBV"] = ChannelDouble(value=0.0, precision=6, units="s")
        pvs[f"{hdf}PluginType_RBV"] = ChannelString(value="NDFileHDF5")
        pvs[f"{hdf}PortName_RBV"] = ChannelString(value="FileHDF1")  # the asyn port graph ophyd checks
        for name in ("FullFileName_RBV", "WriteMessage"):
            pvs[hdf + name] = ChannelChar(value="", max_length=512)
        self._hooks = {"Capture": self._on_capture, "FilePath": self._on_file_path,
                       "Compression": _on_compression}

    def start(self) -> None:
        """A fresh writer thread (the IOC starts serving)."""
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="HDF1")

    async def stop(self) -> None:
        """The frames already received are written, the file closed, the thread ended."""
        await self._drain_writes()
        self._close_file()
        self._thread.shutdown(wait=False)

    async def _put(self, name: str, value):
        hook = self._hooks.get(name.removeprefix(self.hdf))
        return value if hook is None else await hook(value)

    def _value(self, suffix: str):
        return self.pvs[self.hdf + suffix].value

    async def _set(self, suffix: str, value) -> None:
        """Update a setpoint and its read-back from the IOC side."""
        await self.pvs[self.hdf + suffix].write(value, verify_value=False)
        await self.pvs[f"{self.hdf}{suffix}_RBV"].write(value)

    # -- frames ------------------------------------------------------------------------------
    def receive(self, frame: np.ndarray, t_start: float, counter: int, exposure_s: float,
                monitors: tuple[float, float]) -> None:
        """Queue a frame (NDArray callback, non-blocking as areaDetector's ``BlockingCallbacks``
        No) with its NDAttributes: start (epoch s), unique id ``counter``, exposure (s) and
        ``monitors`` (incident, transmitted flux, ph/s). Writes run in order in the plugin's
        thread; a jumping clock holds still until this one is written (or has failed)."""
        held = contextlib.ExitStack()  # the clock's hold taken now, not when the task first runs
        busy = getattr(self.clock, "busy", None)
        if busy is not None:
            held.enter_context(busy())
        task = asyncio.ensure_future(self._write_frame(frame, t_start, counter, exposure_s, monitors))
        self._writes.add(task)
        task.add_done_callback(lambda done: (self._writes.discard(done), held.close()))

    async def _write_frame(self, frame, t_start, counter, exposure_s, monitors) -> None:
        """One frame: ``ArrayCounter``, sizes and ``TimeStamp_RBV`` (its start, s after the
        EPICS epoch, as ADCore's plugins post each array's), the write (compression included)
        in the plugin's thread, then ``NumCaptured_RBV``."""
        hdf = self.hdf
        await self.pvs[f"{hdf}TimeStamp_RBV"].write(t_start - EPICS_EPOCH_S)
        for axis, size in enumerate((frame.shape[1], frame.shape[0], 0)):
            await self.pvs[f"{hdf}ArraySize{axis}_RBV"].write(size)
        await self._set("ArrayCounter", self._value("ArrayCounter_RBV") + 1)
        handle = self._file
        if handle is None or self.stall_writes:
            return
        try:
            written = await asyncio.get_running_loop().run_in_executor(
                self._thread, functools.partial(
                    append_frame, handle, frame, t_start, counter, *monitors,
                    int(self._value("NumFramesFlush")), exposure_s=exposure_s))
        except (OSError, RuntimeError, ValueError) as error:  # ValueError: a file closed meanwhile
            await self._set_write_error(write_message(error))
            return
        if handle is self._file:
            await self.pvs[f"{hdf}NumCaptured_RBV"].write(written)

    async def _set_write_error(self, message: str) -> None:
        await self.pvs[f"{self.hdf}WriteStatus"].write(1)
        await self.pvs[f"{self.hdf}WriteMessage"].write(message)

    # -- files -------------------------------------------------------------------------------
    async def _on_file_path(self, value):
        path = value if str(value).endswith("/") else f"{value}/"
        if self._value("CreateDirectory"):
            try:
                os.makedirs(path, exist_ok=True)
            except OSError:
                pass  # FilePathExists_RBV says no
        await self.pvs[f"{self.hdf}FilePathExists_RBV"].write(int(os.path.isdir(path)))
        return path

    async def _on_capture(self, value):
        if not value:
            await self._drain_writes()
            self._close_file()
            return 0
        if self._file is not None:
            return 1
        get = self._value
        path = c_format(get("FileTemplate"), get("FilePath"), get("FileName"), get("FileNumber"))
        try:
            opened = datetime.fromtimestamp(self.clock.now()).isoformat()
            self._file = open_frame_file(path, self.geometry, self.dtype, opened,
                                         swmr=get("SWMRMode") == "On",
                                         compression=get("Compression"), zlevel=get("ZLevel"),
                                         blosc=(get("BloscCompressor"), get("BloscLevel"), get("BloscShuffle")))
        except (OSError, RuntimeError) as error:
            await self._set_write_error(write_message(error, f"cannot open {path}: "))
            raise
        await self.pvs[f"{self.hdf}WriteStatus"].write(0)
        await self.pvs[f"{self.hdf}FullFileName_RBV"].write(path)
        await self.pvs[f"{self.hdf}NumCaptured_RBV"].write(0)
        return 1

    async def _drain_writes(self) -> None:
        """Wait for the frames queued (``Capture`` = 0 closes the file after them, as the
        plugin does)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _close_file(self) -> None:
        if self._file is not None:
            self._thread.submit(lambda: None).result()  # no write of it still running
            self._file.close()
            self._file = None


def write_message(error: Exception, prefix: str = "") -> str:
    """The HDF5 plugin's ``WriteMessage`` for a failed write: one line of at most 500
    characters, the operating system's cause first (HDF5 buries it, e.g. ``errno = 28,
    error message = 'No space left on device'``, in a message that spans lines)."""
    text = " ".join(str(error).split())
    code, name = re.search(r"errno = (\d+)", text), re.search(r"filename = '([^']*)'", text)
    if code:
        text = f"[Errno {code[1]}] {os.strerror(int(code[1]))}: {name[1] if name else '?'} ({text.split(' (')[0]})"
    return (prefix + text)[:500]


async def _on_compression(value):
    """A ``Compression`` this plugin does not write is refused (the put fails)."""
    compression_filter(value)
    return value


def c_format(template: str, *args) -> str:
    """``template`` with its C conversions (``%s``, ``%d``, ``%3.3d``) filled from ``args`` in
    order, as the areaDetector file plugins build ``FullFileName`` from ``FileTemplate``."""
    values = iter(args)
    return re.sub(r"%([-0-9.]*)([sd])", lambda m: ("%" + m.group(1) + m.group(2)) % next(values),
                  template)
