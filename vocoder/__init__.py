"""vocoder package."""
