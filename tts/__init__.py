"""Timbre Studio core."""
__version__ = "0.1.0"
