"""ncsynth."""
