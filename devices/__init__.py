"""ophyd devices of the in-situ SAXS synthesis set-up and the continuous-flow reactor."""

from .clock import DeadlineTimer
from .area_detector import AreaDetectorSAXS
from .detector import DetectorError
from .heater import HeatingController
from .injector import Injector, InjectorCommsError, InjectorError, InjectorJamError
from .pump import PumpAlarm, PumpCommunicationError, PumpError, SyringePump
from .spectrometer import SpectrometerBackend, SpectrometerError, UVVisSpectrometer

__all__ = ["DeadlineTimer", "AreaDetectorSAXS", "DetectorError", "HeatingController",
           "Injector", "InjectorCommsError",
           "InjectorError", "InjectorJamError", "PumpAlarm", "PumpCommunicationError",
           "PumpError", "SyringePump", "SpectrometerBackend", "SpectrometerError",
           "UVVisSpectrometer"]
