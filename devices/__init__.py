"""ophyd devices of the in-situ SAXS synthesis set-up."""

from .clock import DeadlineTimer
from .detector import AreaDetectorSAXS, DetectorError, SAXSDetector, SimulatedBackend
from .heater import HeatingController
from .injector import Injector, InjectorCommsError, InjectorError, InjectorJamError

__all__ = ["DeadlineTimer", "AreaDetectorSAXS", "DetectorError", "SAXSDetector",
           "SimulatedBackend", "HeatingController", "Injector", "InjectorCommsError",
           "InjectorError", "InjectorJamError"]
