"""Test helper: a Simulator's stored outputs on the numpy route and on the compiled route (the
numba kernels, when the `fast` extra is installed), for tests that hold the two to the same bits."""
from __future__ import annotations

import numpy as np

from anekit.sim import compiled


def both_routes(sim, feeds):
    """sim.run_stored on the numpy route, then on the compiled route: (reference, compiled)."""
    previous = compiled.set_enabled(False)
    try:
        with np.errstate(all="ignore"):
            ref = sim.run_stored(feeds)
        compiled.set_enabled(True)
        got = sim.run_stored(feeds)
    finally:
        compiled.set_enabled(previous)
    return ref, got
