"""Op declarations: an op's name, parameters, dtype constraints and shape rule, in one place.

Every layer (builder, MIL emitter and parser, simulator, checker, cost model) reads
REGISTRY; none keeps its own list of op names.

Parameter kinds:
  tensor   a value flowing in the graph (may also be a constant)
  tensors  a variadic tuple of tensors, written `(a, b, c)` in MIL
  const    a compile-time constant input (strides, axis, ...), emitted as a named const op
  attr     a literal in the op's `[...]` attribute block (const's `val`, iOS16 constexpr ops)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..errors import ShapeError, UnknownOpError
from .dtypes import FLOATS

REQUIRED = object()   # default marker: the caller must pass this parameter


@dataclass(frozen=True)
class Param:
    kind: str                      # "tensor" | "tensors" | "const" | "attr"
    dtypes: Any = "T"              # "T" (the op's type variable), a dtype name, or a tuple of names
    rank: int | None = None        # const/attr: 0 scalar, 1 list, None any
    default: Any = REQUIRED        # value, callable(args) -> value, or None (optional, omitted)
    choices: tuple | None = None   # allowed values of a string const
    name: str = ""

    @property
    def optional(self) -> bool:
        return self.default is not REQUIRED


def tensor(dtypes="T", optional=False) -> Param:
    return Param("tensor", dtypes, default=None if optional else REQUIRED)


def tensors(dtypes="T") -> Param:
    return Param("tensors", dtypes)


def const(dtypes, rank: int | None = 0, default=REQUIRED, choices=None) -> Param:
    return Param("const", dtypes, rank, default, tuple(choices) if choices else None)


def attr(dtypes, rank: int | None = None, default=REQUIRED) -> Param:
    return Param("attr", dtypes, rank, default)


@dataclass(eq=False)
class OpSpec:
    """Everything known about one op. The signature fields are fixed at declaration; the fact
    slots below them are filled next to the declaration (in the same `ir/ops/*` module), or, for
    the simulator kernel, by `sim.registry.kernel`, which files the kernel on the spec itself."""
    name: str
    params: tuple[Param, ...]
    infer: Callable            # infer(args) -> list[(dtype, shape)], one per output
    kind: str                  # cost/check category: mac, elementwise, activation, ...
    T: tuple[str, ...] = FLOATS
    doc: str = ""
    since: str = "ios16"       # the oldest MIL op set (dialect) that has this op in this form
    param_index: dict = field(default_factory=dict, compare=False, repr=False)
    # --- facts beyond the signature ---
    grad: Callable | None = field(default=None, compare=False, repr=False)
    kernel: Any = field(default=None, compare=False, repr=False)

    def param(self, name: str) -> Param | None:
        return self.param_index.get(name)

    def defgrad(self, rule: Callable) -> Callable:
        """Decorator: `rule(op, gs) -> {param name: cotangent Tensor | None}` is this op's
        vector-Jacobian product, written with forward ops (`gs[i]` is the cotangent of output i,
        None where no gradient flows). Used as `@relu.defgrad` right after the declaration.

        A `tensors` parameter maps to a tuple, one entry per tensor. A cotangent may have the
        broadcast output shape: autodiff (anekit.train.autodiff) sums it down to the input's
        shape and casts it to the input's dtype. None means no gradient flows to that
        input; leaving out an input that needs one is an error; integer and bool inputs never
        get one. A rule may raise GradientError for an argument form it does not cover."""
        if self.grad is not None:
            raise RuntimeError(f"op '{self.name}' has two gradient rules")
        self.grad = rule
        return rule


REGISTRY: dict[str, OpSpec] = {}


def declare(name: str, *, kind: str, infer: Callable, T=FLOATS, doc: str = "", since: str = "ios16",
            **params: Param) -> OpSpec:
    if name in REGISTRY:
        raise RuntimeError(f"op '{name}' declared twice")
    named = tuple(replace(p, name=n) for n, p in params.items())
    spec = OpSpec(name, named, infer, kind, tuple(T), doc, since, {p.name: p for p in named})
    REGISTRY[name] = spec
    return spec


def op(*, kind: str, T=FLOATS, name: str | None = None, since: str = "ios16", **params: Param):
    """Decorator form of `declare`: the decorated function is the shape rule."""
    def wrap(infer):
        return declare(name or infer.__name__.rstrip("_"), kind=kind, infer=infer, T=T,
                       doc=(infer.__doc__ or "").strip(), since=since, **params)
    return wrap


def lookup(name: str) -> OpSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOpError(f"unknown op '{name}'") from None


class Args:
    """What a shape rule sees: tensors by parameter name, const values resolved, defaults applied."""

    def __init__(self, spec: OpSpec, values: dict[str, Any], T: str | None):
        self._spec, self._values, self.T = spec, values, T

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            if self._spec.param(name) is not None:
                return None
            raise AttributeError(name) from None

    def has(self, name: str) -> bool:
        return self._values.get(name) is not None

    def fail(self, arg: str, message: str) -> ShapeError:
        err = ShapeError(f"{self._spec.name}: argument '{arg}': {message}")
        err.param = arg        # lets the MIL parser point at the argument
        return err
