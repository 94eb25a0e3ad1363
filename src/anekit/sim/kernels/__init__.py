"""Op kernels, one module per op group; importing this package registers them all."""
from . import activations, constexpr, conv, elementwise, linalg, norm, pool, reduce, shape, state

__all__ = ["activations", "constexpr", "conv", "elementwise", "linalg", "norm", "pool", "reduce", "shape",
           "state"]
