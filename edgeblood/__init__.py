"""edgeblood: blood-cell classification from training to an app on a device."""

__version__ = "0.1.0"
