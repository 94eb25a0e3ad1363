"""Op declarations: an op's name, parameters, dtype constraints, shape rule and every other
fact about it, in one place.

Every layer (builder, MIL emitter and parser, simulator, checker, cost model, Core ML
reader) reads REGISTRY and the facts on each OpSpec; none keeps its own list of op names.
A fact is given as a keyword of `declare` / `@op`, or by a decorator on the returned spec
right below the declaration (`@conv.defrange`, `@conv.defwork`, `@relu.defgrad`).

Parameter kinds:
  tensor   a value flowing in the graph (may also be a constant)
  tensors  a variadic tuple of tensors, written `(a, b, c)` in MIL
  const    a compile-time constant input (strides, axis, ...), emitted as a named const op
  attr     a literal in the op's `[...]` attribute block (const's `val`, iOS16 constexpr ops)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple

from ..errors import ShapeError, UnknownOpError
from .dtypes import FLOATS

REQUIRED = object()   # default marker: the caller must pass this parameter

# Engine paths (cost model and checker): the MAC array through its convolution or its matmul
# roof (guide ch. 9, 12), the vector engine, a descriptor edit that moves no data (guide
# ch. 4, "metadata edit"), or compile-time work that never runs on the engine.
MAC_PATHS = ("conv", "matmul")
PATHS = MAC_PATHS + ("vector", "free", "const")
STATE_ROLES = ("read", "write", "update")   # update: write, then read back (coreml_update_state)


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


class MacWork(NamedTuple):
    """What a MAC-path op asks of the multiply array (cost model, guide ch. 9, 12, 13)."""
    macs: float          # multiply-accumulates
    lanes: int           # output lanes the array fills (conv Cout, matmul N)
    spatial: int         # innermost streamed extent (conv output width, matmul rows)
    winograd: bool = False   # eligible for Winograd F(2x2, 3x3) (guide ch. 13)


class OlderForm(NamedTuple):
    """An op's spelling in op sets before its `since`: the same name and meaning, other
    arguments, all of them block attributes (as the iOS 16 constexpr ops write theirs). MIL
    text and Core ML readers translate it to the op's own form on reading; emitters write it
    for a dialect before `since` (coremltools' iOS 16 and 17 programs use it)."""
    dialect: str                 # the op set this spelling is written in ("ios16": iOS 16 and 17)
    params: dict                 # {attribute name: Param}, all kind "attr"
    read: Callable               # read(attrs) -> {param: (numpy value, dtype)}: the op's const inputs
    write: Callable              # write(op) -> {attribute name: numpy value}; ShapeError if it has no such spelling


class ConstInput(NamedTuple):
    """An input that must be a compile-time constant on the ANE route (where `why` says so)."""
    rule: str            # the checker's finding id, e.g. "dynamic-weight-conv"
    why: Callable        # why(op) -> (reason, value) when a runtime tensor here cannot run, else None
    limit: str           # what does run, e.g. "batch 1"
    source: str          # the guide chapter the fact comes from


@dataclass(eq=False)
class OpSpec:
    """Everything known about one op. The signature fields are fixed at declaration; the fact
    slots below them are filled next to the declaration (in the same `ir/ops/*` module), or, for
    the simulator kernel, by `sim.registry.kernel`, which files the kernel on the spec itself.
    tests/test_op_facts.py walks REGISTRY and fails when a fact an op needs is missing."""
    name: str
    params: tuple[Param, ...]
    infer: Callable            # infer(args) -> list[(dtype, shape)], one per output
    kind: str                  # category: const, constexpr, mac, elementwise, activation, norm, ...
    T: tuple[str, ...] = FLOATS
    doc: str = ""
    since: str = "ios16"       # the oldest MIL op set (dialect) that has this op in this form
    param_index: dict = field(default_factory=dict, compare=False, repr=False)
    # --- facts beyond the signature ---
    grad: Callable | None = field(default=None, compare=False, repr=False)
    kernel: Any = field(default=None, compare=False, repr=False)
    # Engine path: one of PATHS ("conv"/"matmul" are the MAC array; default from `kind`).
    path: str = "vector"
    # Vector-engine passes over the data (a norm or softmax reads its input twice).
    vector_passes: int = 1
    # MAC-path work: mac_work(op) -> MacWork (required on the MAC paths; `@spec.defwork`).
    mac_work: Callable | None = field(default=None, compare=False, repr=False)
    # Whether the op can ride on a MAC op's output pass for free (guide ch. 13 epilogues).
    mac_epilogue: bool = False
    # Inputs that must be compile-time constants on the ANE route: {param: ConstInput}.
    const_inputs: dict = field(default_factory=dict, compare=False, repr=False)
    # State ops (iOS 18): role in STATE_ROLES and the parameter that names the state buffer.
    state_role: str | None = None
    state_param: str | None = None
    # fp16 range rule: fp16_range(op, res) -> interval | [interval per output] | None
    # (unbounded); res is a preflight.ranges.RangeResult. `@spec.defrange`.
    fp16_range: Callable | None = field(default=None, compare=False, repr=False)
    # Compressed-weight ops: stored_weight(op) -> (streaming format, stored bytes). `@spec.defstored`.
    stored_weight: Callable | None = field(default=None, compare=False, repr=False)
    # The op's spelling in op sets before `since` (an OlderForm), if it has one. `@spec.defolder`.
    older_form: OlderForm | None = field(default=None, compare=False, repr=False)
    # Core ML spellings: parameters Core ML adds that are dropped when their value is one of
    # those listed ({param: allowed values}), and the parameter naming a result dtype
    # (narrow ints there are widened to int32; see coreml/mapping.py).
    coreml_ignored: dict = field(default_factory=dict, compare=False, repr=False)
    coreml_dtype_param: str | None = None

    def param(self, name: str) -> Param | None:
        return self.param_index.get(name)

    def _set_once(self, slot: str, rule: Callable) -> None:
        if getattr(self, slot) is not None:
            raise RuntimeError(f"op '{self.name}' has two {slot} rules")
        setattr(self, slot, rule)

    def defrange(self, rule: Callable) -> Callable:
        """Decorator: `rule(op, res)` is this op's fp16 range rule (see `fp16_range`)."""
        self._set_once("fp16_range", rule)
        return rule

    def defwork(self, rule: Callable) -> Callable:
        """Decorator: `rule(op) -> MacWork` is this MAC-path op's work (see `mac_work`)."""
        self._set_once("mac_work", rule)
        return rule

    def defstored(self, rule: Callable) -> Callable:
        """Decorator: `rule(op) -> (format, bytes)` is this constexpr op's stored form."""
        self._set_once("stored_weight", rule)
        return rule

    def defolder(self, form: OlderForm) -> OlderForm:
        """This op's spelling in op sets before `since` (see `OlderForm`)."""
        if self.older_form is not None:
            raise RuntimeError(f"op '{self.name}' has two older forms")
        if any(p.kind != "attr" for p in form.params.values()):
            raise RuntimeError(f"op '{self.name}': an older form's parameters are block attributes")
        self.older_form = form
        return form

    def older_arguments(self, names) -> bool:
        """Whether arguments named `names` (besides `name`) spell this op's older form: all of
        them its parameters, at least one not a parameter of the op's own form."""
        given = set(names) - {"name"}
        form = self.older_form
        return form is not None and bool(given) and given <= set(form.params) and \
            any(self.param(n) is None for n in given)

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


# Facts `declare` and `@op` take as keywords (the rule slots are also set by the decorators).
FACTS = ("path", "vector_passes", "mac_work", "mac_epilogue", "const_inputs", "state_role", "state_param",
         "fp16_range", "stored_weight", "coreml_ignored", "coreml_dtype_param")


def declare(name: str, *, kind: str, infer: Callable, T=FLOATS, doc: str = "", since: str = "ios16",
            **params_and_facts) -> OpSpec:
    """Declare op `name`. Keywords named in FACTS are fact slots, the others (Params) its
    parameters. Defaults follow `kind`: const/constexpr ops take the "const" path, norms make
    two vector passes, activations ride on MAC outputs."""
    if name in REGISTRY:
        raise RuntimeError(f"op '{name}' declared twice")
    facts = {k: params_and_facts.pop(k) for k in FACTS if k in params_and_facts}
    facts.setdefault("path", "const" if kind in ("const", "constexpr") else "vector")
    facts.setdefault("vector_passes", 2 if kind == "norm" else 1)
    facts.setdefault("mac_epilogue", kind == "activation")
    if facts["path"] not in PATHS:
        raise RuntimeError(f"op '{name}': path '{facts['path']}' is not one of {PATHS}")
    if facts.get("state_role") not in (None,) + STATE_ROLES:
        raise RuntimeError(f"op '{name}': state role '{facts['state_role']}' is not one of {STATE_ROLES}")
    bad = [k for k, p in params_and_facts.items() if not isinstance(p, Param)]
    if bad:
        raise RuntimeError(f"op '{name}': {bad} are neither parameters nor facts ({', '.join(FACTS)})")
    named = tuple(replace(p, name=n) for n, p in params_and_facts.items())
    spec = OpSpec(name, named, infer, kind, tuple(T), doc, since, {p.name: p for p in named}, **facts)
    REGISTRY[name] = spec
    return spec


def op(*, kind: str, T=FLOATS, name: str | None = None, since: str = "ios16", **params_and_facts):
    """Decorator form of `declare`: the decorated function is the shape rule."""
    def wrap(infer):
        return declare(name or infer.__name__.rstrip("_"), kind=kind, infer=infer, T=T,
                       doc=(infer.__doc__ or "").strip(), since=since, **params_and_facts)
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

    def fail(self, arg: str, message: str) -> ShapeError:
        err = ShapeError(f"{self._spec.name}: argument '{arg}': {message}")
        err.param = arg        # lets the MIL parser point at the argument
        return err
