"""Platform-independent random streams for everything that must be identical everywhere.

Training data and DS3 automata must come out bit-for-bit the same on every platform, Python
version and NumPy release, because thousands of volunteers regenerate them from a seed and the
validator regenerates them again to check results. NumPy's ``Generator`` distributions may change
between releases (NEP 19), but the PCG64 bit generator's raw 64-bit output is fixed by its
algorithm. So we only ever take raw words from PCG64 and turn them into draws ourselves, with
integer arithmetic and exactly representable floats.

Seeds are derived from names with SHA-256 (never Python's ``hash()``, which is salted per process).
"""

import hashlib

import numpy as np

GENERATOR_NAME = "pcg64-raw/sha256-v1"


def derive_seed(*parts):
    """A 64-bit seed from any sequence of names and numbers, stable everywhere.

    ``derive_seed("SingleDirect", "train")`` is the seed of SingleDirect's training set.
    """
    text = "/".join(str(part) for part in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


class RawStream:
    """Raw 64-bit words from PCG64 and the few draws we build on them."""

    def __init__(self, seed):
        self._bits = np.random.PCG64(int(seed))

    def words(self, n):
        """``n`` raw uint64 words."""
        return self._bits.random_raw(int(n)).astype(np.uint64)

    def uniform(self, n):
        """``n`` floats in [0, 1), each exactly k / 2**53."""
        return (self.words(n) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

    def below(self, bound, n):
        """``n`` integers uniform on ``0 .. bound-1`` (floor of uniform * bound; bias < 2**-40)."""
        return np.floor(self.uniform(n) * bound).astype(np.int64)

    def permutation(self, n):
        """A uniformly random permutation of ``0 .. n-1``: the stable argsort of ``n`` raw words."""
        return np.argsort(self.words(n), kind="stable").astype(np.int64)
