"""ncsynth: in-situ SAXS of colloidal nanocrystal synthesis with Bluesky and ophyd."""

__version__ = "0.1.0"
