"""Deterministic random streams keyed by name.

Every decision in the simulator draws from a stream keyed by what it is about (a day, a unit, an
ECO), never from one shared sequence. That keeps the world *prefix-stable*: simulating 400 days
gives exactly the first 365 days of a 365-day run, which is what `simulate advance` relies on.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, *key: object) -> np.random.Generator:
    digest = zlib.crc32("\x1f".join(map(str, key)).encode())
    return np.random.default_rng([seed, digest])
