"""ACR Run Archiver: archive-change events → managed identity → ACR Runs - Update → outcome topic."""

__version__ = "1.0.0"
