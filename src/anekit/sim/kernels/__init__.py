"""Op kernels, one module per op group; importing this package registers them all."""
from . import (activations, constexpr, control, conv, elementwise, linalg, more, norm, pool, recurrent, reduce,
               shape, state)

__all__ = ["activations", "constexpr", "control", "conv", "elementwise", "linalg", "more", "norm", "pool",
           "recurrent", "reduce", "shape", "state"]
