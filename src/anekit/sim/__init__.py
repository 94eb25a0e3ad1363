"""The simulator: ANE-faithful execution of anekit programs with numpy.

    from anekit.sim import Simulator, profile_for, EXACT
    sim = Simulator(prog, profile=profile_for("m1"))     # or EXACT / "exact", "m4", "h16g"
    out = sim.run({"x": x})                               # {output name: array}

Two numerics modes: a chip profile (fp16 storage, the wide accumulator with its 4-lane
first stage, the 2**15 MAC port, NaN and zero rules, activation tables, per-family quirks;
see profiles.py and docs/numerics.md) and EXACT (float32 reference semantics).
"""
from . import kernels  # registers every kernel (the package __init__ runs before any submodule)
from .executor import Simulator
from .numerics import Numerics
from .profiles import EXACT, FAMILY_PROFILES, NumericsProfile, profile_for
from .registry import kernel

__all__ = ["kernels", "Simulator", "profile_for", "EXACT", "NumericsProfile", "FAMILY_PROFILES", "Numerics",
           "kernel"]
