"""mlds: the Machine Learning Dataset Generator (command line and version)."""

__version__ = "0.1.0"
