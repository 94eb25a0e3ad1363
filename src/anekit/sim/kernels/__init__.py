"""Op kernels, one module per op group; importing this package registers them all."""
from . import activations, constexpr, conv, elementwise, linalg, norm, pool, reduce, shape, state  # noqa: F401
