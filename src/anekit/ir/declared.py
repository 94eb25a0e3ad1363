"""The declared ops as functions, for code inside the package (the op modules' gradient rules,
graph rewrites, training kernels) that cannot import `anekit` itself: `F.matmul(a, b,
transpose_y=True)` is the same function as `ak.matmul`, built from the declaration on first
use, so an op name that no declaration defines fails at once (UnknownOpError)."""
from __future__ import annotations

from .builder import make_builder
from .spec import lookup


class _Declared:
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = make_builder(lookup(name))
        setattr(self, name, fn)
        return fn


F = _Declared()
