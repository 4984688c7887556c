"""mlds: the Machine Learning Dataset Generator (command line and version)."""

__version__ = "0.1.0"


def load_dataset(path):
    """Load a dataset store file or release archive; see ``assimilator.dataset``."""
    from assimilator.dataset import load_dataset as load

    return load(path)
