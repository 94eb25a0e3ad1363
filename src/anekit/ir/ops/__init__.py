"""Op declarations. Importing this package fills REGISTRY; nothing else lists op names."""
from ..spec import REGISTRY, OpSpec, Param, lookup
from . import control, core, elementwise, extra, linalg, more, reduce, shape  # noqa: F401  (declare on import)

__all__ = ["REGISTRY", "OpSpec", "Param", "lookup"]
