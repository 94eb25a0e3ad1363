"""Flexible input shapes (coremltools' RangeDim and EnumeratedShapes) pinned to one shape.

A flexible model declares unknown sizes in its MIL function and the allowed sizes in its
description (multiArrayType.shapeRange / enumeratedShapes). anekit runs one static shape at a
time, so the user names it (`ak.load(path, shapes={"x": (1, 3, 224, 224)})`, `--shape`) and it
is checked here against what the model declares.
"""
from __future__ import annotations

from ..errors import ShapeError

UNBOUNDED = -1    # shapeRange's upperBound for RangeDim(upper_bound=None)


class Allowed:
    """What one input accepts: per-axis ranges [(lo, hi | None)] or a list of shapes."""

    def __init__(self, ranges=None, shapes=None):
        self.ranges, self.shapes = ranges, shapes

    def describe(self) -> str:
        if self.shapes is not None:
            return "one of " + ", ".join(str(list(s)) for s in self.shapes)
        return "[" + ", ".join(str(lo) if lo == hi else f"{lo}..{'' if hi is None else hi}"
                               for lo, hi in self.ranges) + "]"

    def admits(self, shape: tuple) -> bool:
        if self.shapes is not None:
            return tuple(shape) in self.shapes
        return len(shape) == len(self.ranges) and all(
            lo <= s and (hi is None or s <= hi) for s, (lo, hi) in zip(shape, self.ranges))


def declared(description) -> dict[str, Allowed]:
    """{input name: Allowed} for the flexible array inputs of a model description."""
    out = {}
    for feature in description.input:
        if feature.type.WhichOneof("Type") != "multiArrayType":
            continue
        arr = feature.type.multiArrayType
        kind = arr.WhichOneof("ShapeFlexibility")
        if kind == "shapeRange":
            out[feature.name] = Allowed(ranges=[(int(r.lowerBound), None if r.upperBound == UNBOUNDED
                                                 else int(r.upperBound)) for r in arr.shapeRange.sizeRanges])
        elif kind == "enumeratedShapes":
            out[feature.name] = Allowed(shapes=[tuple(int(d) for d in s.shape) for s in arr.enumeratedShapes.shapes])
    return out


def normalize(shapes, source: str) -> dict[str, tuple[int, ...]]:
    """{name: tuple of positive ints} from the user's mapping; anything else is a ShapeError."""
    if shapes is None:
        return {}
    if not isinstance(shapes, dict):
        raise ShapeError(f"{source}: shapes must map input names to shapes, got {type(shapes).__name__}")
    out = {}
    for name, shape in shapes.items():
        try:
            dims = tuple(int(d) for d in shape)
            if any(d != s for d, s in zip(dims, shape)):
                raise ValueError
        except (TypeError, ValueError):
            raise ShapeError(f"{source}: shape for input '{name}' must be a sequence of ints, got {shape!r}") from None
        if any(d <= 0 for d in dims):
            raise ShapeError(f"{source}: shape for input '{name}' must be positive, got {list(dims)}")
        out[name] = dims
    return out


def pin(name: str, dims: tuple, pinned: tuple | None, allowed: Allowed | None, where: str) -> tuple:
    """The static shape of input `name`: its declared dims (None where flexible) with the user's
    `pinned` shape, checked against the declared range or enumeration."""
    flexible = None in dims
    spelled = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if pinned is None:
        if not flexible:
            return dims
        hint = allowed.describe() if allowed else spelled
        raise ShapeError(f"{where}: a flexible shape {hint}; pick one with "
                         f"shapes={{'{name}': (...)}} (CLI: --shape {name}=d0,d1,...)")
    if len(pinned) != len(dims) or any(d is not None and d != p for d, p in zip(dims, pinned)):
        raise ShapeError(f"{where}: shape {list(pinned)} does not fit its declared shape {spelled}")
    if allowed is not None and not allowed.admits(pinned):
        raise ShapeError(f"{where}: shape {list(pinned)} is outside what the model "
                         f"declares: {allowed.describe()}")
    return tuple(pinned)


def fits(declared_shape: tuple, shape: tuple) -> bool:
    """Whether a computed shape matches a declared one whose flexible dims are None."""
    return len(declared_shape) == len(shape) and all(d is None or d == s for d, s in zip(declared_shape, shape))


def unused(shapes: dict, inputs: set, source: str) -> None:
    extra = sorted(set(shapes) - inputs)
    if extra:
        raise ShapeError(f"{source}: shapes name no input of the model: {', '.join(extra)} "
                         f"(inputs: {', '.join(sorted(inputs))})")


def check_static(prog, shapes, source: str):
    """`prog` (read from MIL text, whose shapes are all static) when every pinned shape names
    an input and equals its shape; a ShapeError otherwise."""
    pins = normalize(shapes, source)
    inputs = {t.name: t for f in prog.functions.values() for t in f.inputs}
    unused(pins, set(inputs), source)
    for name, shape in pins.items():
        if tuple(inputs[name].shape) != shape:
            raise ShapeError(f"{source}: shape {list(shape)} for input '{name}' differs from its static "
                             f"shape {list(inputs[name].shape)}")
    return prog
