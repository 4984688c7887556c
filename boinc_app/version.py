"""The one version of mlds, in the trainer's package because the trainer reports it in every result
and a volunteer's app must not import the server's top-level ``mlds`` package to learn it."""

__version__ = "0.1.0"
