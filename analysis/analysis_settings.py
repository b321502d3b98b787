"""Settings of the SAXS analysis of a run, validated at construction and recorded in the
derived run's start document (:class:`AnalysisSettings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.reduction import DEFAULT_Q_RANGE_NM


@dataclass(frozen=True)
class AnalysisSettings:
    """Settings of :class:`SAXSAnalysis` (validated at construction, recorded in the derived start).

    q_range_nm : (min, max) q of reduction and fit, nm⁻¹.
    n_bins : q bins (None: one pixel step, :func:`~ncsynth.analysis.reduction.default_n_bins`).
    calibration : K = Φ·T·ΔΩ_ref (counts s⁻¹ per unit I·d); None: the detector's configuration,
        ``calibration`` if it is given, else from ``flux_ph_per_s`` and ``transmission`` (the beam
        monitors of the areaDetector, read at staging).
    path_length_cm : None: the detector's ``thickness_cm``, else 0.4 cm (§S.2.1).
    geometry : None: the detector's ``geometry_json`` configuration.
    cd_initial_molar : c_Cd,0 of S2.6; None: the start document's ``recipe.cd_initial_molar``.
    beta : Se:Cd ratio of S3.2; None: ``recipe.extra["beta"]``, else :data:`DEFAULT_BETA`.
    image_key, temperature_key : data keys; None: the first external 2-D array of the primary
        stream, and the first key ending in ``_temperature``.
    """

    q_range_nm: tuple = DEFAULT_Q_RANGE_NM
    n_bins: int | None = None
    calibration: float | None = None
    path_length_cm: float | None = None
    geometry: DetectorGeometry | None = None
    cd_initial_molar: float | None = None
    beta: float | None = None
    image_key: str | None = None
    temperature_key: str | None = None

    def __post_init__(self):
        try:
            q_lo, q_hi = (float(v) for v in self.q_range_nm)
        except (TypeError, ValueError):
            raise ValueError(f"q_range_nm must be a (min, max) pair in nm^-1, got {self.q_range_nm!r}") from None
        if not 0 < q_lo < q_hi:
            raise ValueError(f"q_range_nm must satisfy 0 < min < max, got {self.q_range_nm!r}")
        object.__setattr__(self, "q_range_nm", (q_lo, q_hi))
        if self.n_bins is not None and (isinstance(self.n_bins, bool) or not isinstance(self.n_bins, int)
                                        or self.n_bins < 2):
            raise ValueError(f"n_bins must be an integer >= 2 or None, got {self.n_bins!r}")
        for name in ("calibration", "path_length_cm", "cd_initial_molar", "beta"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not (math.isfinite(value) and value > 0)):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if self.geometry is not None and not isinstance(self.geometry, DetectorGeometry):
            raise TypeError(f"geometry must be a DetectorGeometry or None, got {type(self.geometry).__name__}")
        for name in ("image_key", "temperature_key"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")

    def to_metadata(self) -> dict:
        md = asdict(self)
        md["q_range_nm"] = list(self.q_range_nm)
        md["geometry"] = None if self.geometry is None else self.geometry.to_dict()
        return md
