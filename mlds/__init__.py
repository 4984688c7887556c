"""mlds: the Machine Learning Dataset Generator (command line and version)."""

from boinc_app.version import __version__  # noqa: F401  (one version, set where the trainer reads it)


def load_dataset(path):
    """Load a dataset store file or release archive; see ``assimilator.dataset``."""
    from assimilator.dataset import load_dataset as load

    return load(path)
