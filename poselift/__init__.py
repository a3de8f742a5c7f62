"""poselift: real-time streaming 3D human pose lifting (see README.md)."""

__version__ = "0.1.0"
