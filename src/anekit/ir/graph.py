"""The typed graph: tensors produced by ops, gathered into functions of a program."""
from __future__ import annotations

import itertools
from typing import Any, Iterable

import numpy as np

from ..errors import AnekitError, DTypeError, ShapeError
from . import dtypes as _dt
from .indexing import plan
from .spec import OpSpec

_input_seq = itertools.count()


class Tensor:
    """A value in the graph: produced by an op (or a function input), with static dtype and shape."""

    __slots__ = ("name", "dtype", "shape", "op", "index", "const", "range", "state", "_seq", "vjp")

    def __init__(self, dtype: str, shape: Iterable[int], op: "Op | None" = None, index: int = 0,
                 name: str | None = None, const: Any = None, range: tuple | None = None, state: bool = False):
        self.name, self.dtype, self.shape = name, dtype, tuple(int(s) for s in shape)
        self.op, self.index, self.const, self.range, self.state = op, index, const, range, state
        self._seq = next(_input_seq) if op is None else -1
        self.vjp = None     # a composite's own VJP (ir/custom_vjp.py), read by ak.grad

    rank = property(lambda self: len(self.shape))
    ndim = rank
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))
    is_const = property(lambda self: self.op is not None and self.op.type == "const")

    def __repr__(self) -> str:
        return f"Tensor({self.name or '?'}: {self.dtype}{list(self.shape)})"

    # Operators read as the math: numpy broadcasting (a mismatch is a ShapeError naming the
    # op), numpy-style indexing. == and != stay identity, so tensors can key dicts and sets.
    # The builder installs itself as `_build` (it imports this module, so no import back).
    _build: Any = None
    __array_ufunc__ = None   # `array * tensor` builds the op here instead of numpy looping over it

    def _b(self, op, *args, **kw):
        return Tensor._build(op, *args, **kw)

    def __add__(self, o): return self._b("add", self, o)
    def __radd__(self, o): return self._b("add", o, self)
    def __sub__(self, o): return self._b("sub", self, o)
    def __rsub__(self, o): return self._b("sub", o, self)
    def __mul__(self, o): return self._b("mul", self, o)
    def __rmul__(self, o): return self._b("mul", o, self)
    def __truediv__(self, o): return self._b("real_div", self, o)
    def __rtruediv__(self, o): return self._b("real_div", o, self)
    def __floordiv__(self, o): return self._b("floor_div", self, o)
    def __rfloordiv__(self, o): return self._b("floor_div", o, self)
    def __mod__(self, o): return self._b("mod", self, o)
    def __pow__(self, o): return self._b("pow", self, o)
    def __rpow__(self, o): return self._b("pow", o, self)
    def __neg__(self): return self._b("mul", self, -1)      # -1 takes x's dtype: int32 stays int32
    def __pos__(self): return self
    def __matmul__(self, o): return self._b("matmul", self, o)
    def __rmatmul__(self, o): return self._b("matmul", o, self)
    def __abs__(self): return self._b("abs", self)
    def __gt__(self, o): return self._b("greater", self, o)
    def __ge__(self, o): return self._b("greater_equal", self, o)
    def __lt__(self, o): return self._b("less", self, o)
    def __le__(self, o): return self._b("less_equal", self, o)
    __hash__ = object.__hash__   # identity; == stays identity too (graph nodes, not values)

    def __getitem__(self, key):
        """x[1:, ::2, 0, None, ...] as slice_by_index, squeeze (integer indices), expand_dims (None)."""
        p = plan(self.shape, key)
        out = self
        if not p.identity:   # stride and masks only where they are not the defaults
            out = self._b("slice_by_index", self, begin=p.begin, end=p.end,
                          stride=p.stride if any(s != 1 for s in p.stride) else None,
                          begin_mask=p.begin_mask if any(p.begin_mask) else None,
                          end_mask=p.end_mask if any(p.end_mask) else None)
        if p.squeeze:
            out = self._b("squeeze", out, axes=p.squeeze)
        if p.new_axes:
            out = self._b("expand_dims", out, axes=p.new_axes)
        return out

    def __iter__(self):
        raise TypeError("a graph tensor is not iterable; index it (x[i]) or split it (ak.split)")

    def eq(self, o): return self._b("equal", self, o)
    def ne(self, o): return self._b("not_equal", self, o)
    def relu(self): return self._b("relu", self)
    def sigmoid(self): return self._b("sigmoid", self)
    def tanh(self): return self._b("tanh", self)
    def exp(self): return self._b("exp", self)
    def log(self): return self._b("log", self)
    def sqrt(self): return self._b("sqrt", self)
    def rsqrt(self): return self._b("rsqrt", self)
    def square(self): return self._b("square", self)
    def silu(self): return self._b("silu", self)
    def softmax(self, axis=-1): return self._b("softmax", self, axis=axis)
    def reshape(self, *shape):
        return self._b("reshape", self, shape=shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
    def transpose(self, *perm):
        return self._b("transpose", self, perm=perm[0] if len(perm) == 1 and not isinstance(perm[0], int) else perm)
    def sum(self, axes=None, keep_dims=False): return self._b("reduce_sum", self, axes=axes, keep_dims=keep_dims)
    def mean(self, axes=None, keep_dims=False): return self._b("reduce_mean", self, axes=axes, keep_dims=keep_dims)
    def max(self, axes=None, keep_dims=False): return self._b("reduce_max", self, axes=axes, keep_dims=keep_dims)
    def min(self, axes=None, keep_dims=False): return self._b("reduce_min", self, axes=axes, keep_dims=keep_dims)
    def cast(self, dtype): return self._b("cast", self, dtype=dtype)

    @property
    def T(self):
        return self._b("transpose", self, perm=tuple(reversed(range(self.rank))))


class Op:
    """One op instance: its declaration, inputs by parameter name, block attributes, outputs."""

    __slots__ = ("type", "name", "spec", "inputs", "attrs", "outputs")

    def __init__(self, spec: OpSpec, inputs: dict, attrs: dict | None = None, name: str | None = None):
        self.spec, self.type, self.name = spec, spec.name, name
        self.inputs: dict[str, Tensor | tuple[Tensor, ...]] = inputs
        self.attrs: dict[str, Any] = attrs or {}
        self.outputs: list[Tensor] = []

    def __repr__(self) -> str:
        return f"Op({self.type} {self.name or '?'})"

    def input(self, name: str):
        return self.inputs.get(name)

    def attr(self, name: str):
        """The compile-time value of a const or attr parameter (declared default if absent)."""
        if name in self.attrs:
            return self.attrs[name]
        t = self.inputs.get(name)
        if t is not None:
            if isinstance(t, tuple) or t.const is None:
                raise ShapeError(f"{self.type} '{self.name}': argument '{name}' is not a constant")
            return python_value(t.const)
        p = self.spec.param(name)
        if p is None:
            raise AttributeError(f"op '{self.type}' has no parameter '{name}'")
        return None if p.default is None or callable(p.default) else p.default

    def tensor_inputs(self) -> list[Tensor]:
        out: list[Tensor] = []
        for v in self.inputs.values():
            out.extend(v if isinstance(v, tuple) else (v,))
        return out


def python_value(v):
    """A const's value as a shape rule wants it: scalars as Python, 1-D as tuples, else the array."""
    if isinstance(v, (str, bool, int, float)):
        return v
    a = np.asarray(v)
    if a.ndim == 0:
        return a.item()
    if a.ndim == 1 and a.dtype.kind in "iub":
        return tuple(x.item() for x in a)
    return a


class Function:
    """A named function: inputs, ops in topological order (consts included), named outputs."""

    def __init__(self, name: str, inputs: list[Tensor], ops: list[Op], outputs: list[Tensor],
                 opset: str | None = None, attributes: dict | None = None, states=()):
        self.name, self.inputs, self.ops, self.outputs = name, inputs, ops, outputs
        self.opset = opset            # the `<ios18>` tag when parsed; None = dialect default
        self.attributes = attributes or {}
        # Inputs declared `state<tensor<...>>`: buffers that persist across calls and that
        # read_state / write_state / coreml_update_state read and update (Core ML states).
        self.states: tuple[str, ...] = tuple(states)

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> Tensor:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"Function({self.name}: {len(self.inputs)} inputs, {len(self.ops)} ops, outputs {self.output_names})"


class Program:
    """A MIL program: one or more functions (`main` first) and header attributes."""

    def __init__(self, functions: dict[str, Function], version: str | None = None,
                 attributes: dict | None = None, dialect: str | None = None):
        if not functions:
            raise AnekitError("a program needs at least one function")
        self.functions = functions
        self.version = version          # "1.3" / "1.0" when parsed
        self.attributes = attributes or {}   # e.g. {"buildInfo": {...}}
        self.dialect = dialect          # "ios18" / "ios16" when parsed

    @property
    def main(self) -> Function:
        return self.functions["main"] if "main" in self.functions else next(iter(self.functions.values()))

    def single(self, function: str = "main") -> "Program":
        """This program reduced to one function, renamed main: what a backend that compiles one
        procedure per program (the ANE route, a Core ML package) runs."""
        if function not in self.functions:
            raise ShapeError(f"program has no function '{function}' (has {', '.join(self.functions)})")
        fn = self.functions[function]
        if fn.name == "main" and len(self.functions) == 1:
            return self
        main = Function("main", fn.inputs, fn.ops, fn.outputs, fn.opset, fn.attributes, fn.states)
        return Program({"main": main}, self.version, self.attributes, self.dialect)

    def __repr__(self) -> str:
        return f"Program({', '.join(map(repr, self.functions.values()))})"


def input(name: str, shape, dtype: str = "fp16", range: tuple | None = None, state: bool = False) -> Tensor:
    """A function input. `range=(lo, hi)` declares the values it will carry (for range checks);
    `state=True` makes it a persistent state buffer (`state<tensor<...>>`, e.g. a KV cache)."""
    if not isinstance(name, str) or not name:
        raise ShapeError(f"input name must be a non-empty string, got {name!r}")
    try:
        dtype = _dt.canonical(dtype)      # "float16" and np.float16 mean fp16
    except DTypeError:
        pass
    if dtype not in ("fp16", "fp32", "int32", "bool"):
        raise DTypeError(f"input '{name}': dtype '{dtype}' not allowed (fp16, fp32, int32, bool)")
    try:
        shape = tuple(shape)
    except TypeError:
        raise ShapeError(f"input '{name}': shape must be a sequence of positive integers, got {shape!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ShapeError(f"input '{name}': shape {shape} must be positive integers")
    if range is not None:
        try:
            lo, hi = (float(v) for v in range)
        except (TypeError, ValueError):
            raise ShapeError(f"input '{name}': range must be two numbers (lo, hi), got {range!r}") from None
        if not lo <= hi:   # also refuses NaN
            raise ShapeError(f"input '{name}': range {range!r} needs lo <= hi, both numbers")
        range = (lo, hi)
    return Tensor(dtype, shape, name=name, range=range, state=state)


def topo_order(outputs: list[Tensor]) -> tuple[list[Op], list[Tensor]]:
    """Ops reachable from outputs in dependency order (inputs' producers first, in parameter
    order, so a const lands right before its first consumer), and the graph inputs found."""
    order: list[Op] = []
    inputs: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, Tensor):
            if node.op is None:
                if id(node) not in seen:
                    seen.add(id(node))
                    inputs.append(node)
                continue
            node = node.op
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for t in reversed(node.tensor_inputs()):
            stack.append((t, False))
    inputs.sort(key=lambda t: t._seq)
    return order, inputs


def program(outputs, name: str = "main", functions: dict | None = None) -> Program:
    """Gather the graph behind `outputs` ({name: tensor}) into a program with unique names.

    The graph is copied, so the same tensors can go into several programs under different
    names. `functions` adds further functions ({fn name: {out name: tensor}}).
    """
    fns = {name: outputs, **(functions or {})}
    return Program({fname: _freeze(fname, outs) for fname, outs in fns.items()})


def _freeze(fname: str, outputs) -> Function:
    if isinstance(outputs, Tensor):
        outputs = {"output": outputs}
    if not isinstance(outputs, dict) or not outputs:
        raise ShapeError("program outputs must be a non-empty {name: tensor} dict")
    for key, t in outputs.items():
        if not isinstance(t, Tensor):
            raise ShapeError(f"program output '{key}' is {type(t).__name__}, not a Tensor")
    if len({id(t) for t in outputs.values()}) != len(outputs):
        raise ShapeError("the same tensor is returned under two output names")
    ops, inputs = topo_order(list(outputs.values()))
    out_name = {id(t): k for k, t in outputs.items()}

    names: set[str] = set()

    def claim(n: str) -> str:
        if n in names:
            raise ShapeError(f"duplicate name '{n}' in function '{fname}'")
        names.add(n)
        return n

    def fresh(base: str) -> str:
        n, i = base, 0
        while n in names:
            i += 1
            n = f"{base}_{i}"
        return claim(n)

    # Inputs, user-named ops and outputs keep their names; the rest are numbered per op type.
    new: dict[int, Tensor] = {}
    new_inputs = []
    for t in inputs:
        nt = Tensor(t.dtype, t.shape, name=claim(t.name), range=t.range, state=t.state)
        nt._seq = t._seq
        new[id(t)] = nt
        new_inputs.append(nt)
    op_name: dict[int, str] = {}
    for o in ops:
        if o.type == "const":
            continue
        outs = [out_name.get(id(t)) for t in o.outputs]
        if len(o.outputs) == 1 and outs[0]:
            op_name[id(o)] = claim(outs[0])
        elif o.name:
            op_name[id(o)] = claim(o.name)
    for key in out_name.values():
        if key not in names:
            claim(key)
    counters: dict[str, int] = {}
    for o in ops:
        if o.type != "const" and id(o) not in op_name:
            while True:
                n = f"{o.type}_{counters.get(o.type, 0)}"
                counters[o.type] = counters.get(o.type, 0) + 1
                if n not in names:
                    break
            op_name[id(o)] = claim(n)
    # Consts are named after their first consumer and parameter, as coremltools does.
    for o in ops:
        if o.type == "const":
            continue
        for pname, v in o.inputs.items():
            for i, t in enumerate(v if isinstance(v, tuple) else (v,)):
                if t.op is not None and t.op.type == "const" and id(t.op) not in op_name:
                    base = t.op.name or f"{op_name[id(o)]}_{pname}" + (f"_{i}" if isinstance(v, tuple) else "")
                    op_name[id(t.op)] = fresh(base)
    new_ops = []
    for o in ops:
        no = Op(o.spec, {}, dict(o.attrs), op_name.get(id(o)) or fresh("const"))
        for pname, v in o.inputs.items():
            no.inputs[pname] = tuple(new[id(t)] for t in v) if isinstance(v, tuple) else new[id(v)]
        for i, t in enumerate(o.outputs):
            if id(t) in out_name:
                tname = out_name[id(t)]
            elif len(o.outputs) == 1:
                tname = no.name
            else:
                tname = fresh(f"{no.name}_{i}")
            nt = Tensor(t.dtype, t.shape, no, i, tname, t.const)
            new[id(t)] = nt
            no.outputs.append(nt)
        new_ops.append(no)
    return Function(fname, new_inputs, new_ops, [new[id(t)] for t in outputs.values()],
                    states=[t.name for t in new_inputs if t.state])
