"""The configuration's schema: every section and key, its type, bounds and unit, in one table.

The packaged ``default.toml`` gives each key's default and its comment for the user; this
table says what a value may be. ``ncsynth.config`` checks the defaults, the user's file and
the environment against it, so a typo (``max_temprature_c``), a wrong type
(``hardware = "SIM"``, ``dir = 5``) or an out-of-range value never reaches a device.

Kernel module: imports nothing from the application.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncsynth import validation

#: Largest value a one-decimal int16 Modbus register carries (°C); the heater's
#: ``REGISTER_LIMIT`` (devices/heater.py) must agree.
REGISTER_LIMIT_C = 3276.7
#: Fastest simulated world clock (× real time); 0 jumps from deadline to deadline, faster.
MAX_SIM_SPEED = 1e4


@dataclass(frozen=True)
class Key:
    """What one key may hold: ``kind`` is "real", "int", "text" or "choice"."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    unit: str = ""
    options: tuple = ()
    empty: bool = False

    def check(self, name: str, value):
        """``value`` in plain form (an int given for a real becomes a float), or TypeError /
        ValueError naming ``name``."""
        if self.kind == "real":
            return validation.real(name, value, minimum=self.minimum, maximum=self.maximum,
                                   above=self.above, unit=self.unit)
        if self.kind == "int":
            return validation.integer(name, value, minimum=self.minimum, maximum=self.maximum)
        if self.kind == "choice":
            return validation.choice(name, value, self.options)
        return validation.text(name, value, empty=self.empty)


def real(unit: str, *, minimum=None, above=None, maximum=None) -> Key:
    return Key("real", minimum=minimum, maximum=maximum, above=above, unit=unit)


def integer(minimum: int, maximum: int) -> Key:
    return Key("int", minimum=minimum, maximum=maximum)


def text(*, empty: bool = False) -> Key:
    return Key("text", empty=empty)


#: Lossless choices of the areaDetector HDF5 plugin's ``Compression`` PV the detector offers:
#: none, HDF5's deflate (zlib), Blosc (HDF5 filter 32001), bitshuffle + LZ4 (filter 32008),
#: LZ4 (filter 32004).
FRAME_COMPRESSIONS = ("None", "zlib", "Blosc", "BSLZ4", "LZ4")

#: World-clock speed of a simulation: 0 (jump) or K × real time.
SIM_SPEED = real("× real time", minimum=0, maximum=MAX_SIM_SPEED)

_HEATER = {
    "url": text(),
    "slave_address": integer(1, 247),
    "max_temperature_c": real("°C", minimum=20, maximum=REGISTER_LIMIT_C),
    "tolerance_c": real("°C", above=0, maximum=50),
    "settle_time_s": real("s", minimum=0, maximum=3600),
}
_ZONE = {**_HEATER, "poll_interval_s": real("s", above=0, maximum=60),
         "reply_timeout_s": real("s", above=0, maximum=30)}
_PUMP = {
    "url": text(),
    "address": integer(0, 99),                            # NE-1000 network address
    "diameter_mm": real("mm", minimum=0.1, maximum=50),   # the pump's syringe range
    "max_rate_ml_min": real("mL/min", above=0, maximum=1000),
    "reply_timeout_s": real("s", above=0, maximum=30),
}
_DETECTOR = {
    "prefix": text(), "exposure_s": real("s", above=0, maximum=3600),
    # calibration (seed 000 §S.2.1): pyFAI PONI file, mask image, sample path, K (0: from the monitors)
    "poni": text(empty=True), "mask": text(empty=True),
    "thickness_cm": real("cm", above=0, maximum=10),
    "calibration": real("counts/s per unit I·d", minimum=0),
    # or the absolute scale from a water standard and its empty cell (HDF5 or fabio frame files,
    # or "run:<scan id or uid>"); the fabio files' header keys (comma-separated candidates)
    "water_standard": text(empty=True), "empty_cell": text(empty=True),
    "standard_exposure_header": text(), "standard_flux_header": text(),
    "incident_monitor_pv": text(empty=True), "transmitted_monitor_pv": text(empty=True),
    "compression": Key("choice", options=FRAME_COMPRESSIONS),
    "trigger_sequencer": text(empty=True),  # PV prefix of the timing system's pulse sequencer
}

#: section -> key -> Key (a nested section is a dict).
SCHEMA: dict = {
    "hardware": Key("choice", options=("sim", "hutch")),
    "data": {"dir": text()},
    "catalog": {
        "server_url": text(empty=True),
        "api_key_env": text(),
        "database_uri": text(empty=True),
        "tables_uri": text(empty=True),
    },
    # the reply time-out of each attempt (wall time; the heater makes 4 before a read
    # fails, the injector 3 before a request does)
    "heater": {**_HEATER, "reply_timeout_s": real("s", above=0, maximum=30)},
    "injector": {"url": text(), "jam_timeout_s": real("s", above=0, maximum=60),
                 "reply_timeout_s": real("s", above=0, maximum=30)},
    "detector": _DETECTOR,
    "steering": {
        "min_radius_nm": real("nm", above=0, maximum=100),
        "max_radius_nm": real("nm", above=0, maximum=100),
        "confidence_sigma": real("sigma", minimum=0, maximum=10),
        "window_frames": integer(3, 1000),
        "analysis_stall_s": real("s", above=0, maximum=3600),
        "coast_s": real("s", minimum=0, maximum=3600),
        "quench_coast_s": real("s", minimum=0, maximum=3600),
        "max_coast_nm": real("nm", minimum=0, maximum=10),
    },
    "analysis": {"publish_address": text(empty=True), "subscribe_address": text(empty=True)},
    "simulation": {"speed": SIM_SPEED, "seed": integer(0, 2**32 - 1)},
    "session": {"speed": SIM_SPEED},
    "flow": {
        "reactor": {
            "chamber_volume_ml": real("mL", above=0, maximum=100),
            "oven_volume_ml": real("mL", above=0, maximum=100),
            "transfer_volume_ml": real("mL", above=0, maximum=100),
            "min_temperature_c": real("°C", minimum=0, maximum=REGISTER_LIMIT_C),
        },
        "pump_cd": _PUMP,
        "pump_se": _PUMP,
        "chamber": _ZONE,
        "oven": _ZONE,
        "spectrometer": {
            "serial_number": text(empty=True),
            "integration_time_s": real("s", above=0, maximum=60),
            "averages": integer(1, 1000),
            "path_cm": real("cm", above=0, maximum=10),
        },
        "detector": _DETECTOR,
        "scan": {
            "flush_volumes": real("reactor volumes", above=0, maximum=100),
            "frames_per_point": integer(1, 1000),
            "n_blank": integer(0, 1000),
        },
    },
}
