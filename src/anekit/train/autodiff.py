"""Reverse-mode autodiff over the IR: trainable parameters and `grad`.

    w = ak.param("w", np.random.randn(10, 64) * 0.1)   # a graph input with an initial value
    loss = ak.reduce_mean(ak.square(x @ w.T - y))
    (gw,) = ak.grad(loss, [w])                          # a graph tensor, built from forward ops

The backward pass is a reverse walk over the forward graph (the shape of tinygrad's
gradient.py): each op's vector-Jacobian product is declared next to the op
(`@<spec>.defgrad` in `ir/ops/*`), written with forward ops, so the gradient is an ordinary
graph that checks, estimates, simulates and runs like any other (guide ch. 15). A parameter
is a graph input, not a folded constant, so one compiled program serves every step while the
weights change (guide ch. 15, "A trainable weight is a graph input").
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import GradientError, ShapeError
from ..ir.builder import make_const
from ..ir.graph import Tensor, input as graph_input, topo_order
from ..ir.ops._gradlib import FLOAT, unbroadcast
from ..ir.declared import F


class Parameter(Tensor):
    """A trainable weight: a graph input fed by name, carrying its initial value."""

    __slots__ = ("init",)

    def __repr__(self) -> str:
        return f"Parameter({self.name}: {self.dtype}{list(self.shape)})"


def param(name: str, init, dtype: str = "fp16") -> Parameter:
    """A trainable parameter named `name` with initial value `init` (array-like).

    It is a graph input (`ak.input`) fed by name, so a program compiles once and the
    weights change freely between calls; `p.init` holds the initial value (float32)."""
    if dtype not in FLOAT:
        raise ShapeError(f"param '{name}': dtype must be fp16 or fp32, got '{dtype}'")
    arr = np.asarray(init)
    if arr.dtype.kind not in "fiu" or arr.ndim == 0:
        raise ShapeError(f"param '{name}': init must be a numeric array of rank >= 1, got {arr.dtype} "
                         f"shape {list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ShapeError(f"param '{name}': init has non-finite values")
    if dtype == "fp16" and np.abs(arr).max() > 65504.0:
        raise ShapeError(f"param '{name}': init reaches {np.abs(arr).max():g}, beyond the fp16 maximum 65504")
    base = graph_input(name, arr.shape, dtype)
    p = Parameter(base.dtype, base.shape, name=base.name)
    p._seq = base._seq
    p.init = np.array(arr, dtype=np.float32)
    p.init.flags.writeable = False
    return p


def params_of(*tensors: Tensor) -> list[Parameter]:
    """The parameters the given tensors depend on, in creation order (what a trainer updates)."""
    _, inputs = topo_order(list(tensors))
    return [t for t in inputs if isinstance(t, Parameter)]


def initial_values(params: Iterable[Parameter]) -> dict[str, np.ndarray]:
    """{name: initial value} of parameters, as the feeds of a first step."""
    return {p.name: p.init for p in params}


def grad(loss: Tensor, wrt: Iterable[Tensor], seed=None) -> list[Tensor]:
    """d loss / d t for each t in `wrt` (parameters, inputs or any intermediate tensor).

    `loss` must have one element; `seed` (a number, array or tensor of loss's shape, default
    1) scales the cotangent, e.g. a loss scale. A tensor the loss does not depend on gets a
    zero gradient. Raises GradientError naming the op and its path from the loss when an op
    on the way has no gradient rule. Integer and bool tensors carry no gradient.
    """
    if not isinstance(loss, Tensor):
        raise GradientError(f"grad: loss must be a graph Tensor, got {type(loss).__name__}")
    wrt = list(wrt)
    for i, t in enumerate(wrt):
        if not isinstance(t, Tensor):
            raise GradientError(f"grad: wrt[{i}] is {type(t).__name__}, not a graph Tensor")
    if loss.size != 1:
        raise GradientError(f"grad: the loss must be a scalar or size-1 tensor, got shape {list(loss.shape)}; "
                            "reduce it first (e.g. ak.reduce_mean)")
    if loss.dtype not in FLOAT:
        raise GradientError(f"grad: the loss has dtype {loss.dtype}; only float tensors have gradients")
    seed_t = _seed(loss, seed)

    ops, _ = topo_order([loss])
    targets = {id(t) for t in wrt}
    # Forward pass: which tensors depend on a target through float values (others get no flow).
    needs: set[int] = set(targets)
    for o in ops:
        if any(id(t) in needs for t in o.tensor_inputs()):
            for t in o.outputs:
                if t.dtype in FLOAT:
                    needs.add(id(t))
    cot: dict[int, Tensor] = {id(loss): seed_t}
    path: dict[int, tuple] = {id(loss): ()}      # ops from the loss down to a tensor
    for o in reversed(ops):
        gs = [cot.get(id(t)) for t in o.outputs]
        if all(g is None for g in gs) or not any(id(t) in needs for t in o.tensor_inputs()):
            continue
        via = next(path[id(t)] for t, g in zip(o.outputs, gs) if g is not None) + (o,)
        for i, (t, g) in enumerate(zip(o.outputs, gs)):
            if g is not None and t.vjp is not None:     # a composite's own rule replaces its inside
                _custom(t.vjp, g, o, needs, cot, path, via)
                gs[i] = None
        if all(g is None for g in gs):
            continue
        if o.spec.grad is None:
            raise GradientError(f"no gradient rule for op '{o.type}' (path from the loss: {_describe(via)}); "
                                f"declare one with @{o.type}.defgrad in anekit.ir.ops")
        result = o.spec.grad(o, gs) or {}
        for pname, v in o.inputs.items():
            if pname not in result:
                ins = v if isinstance(v, tuple) else (v,)
                if any(id(t) in needs and t.dtype in FLOAT for t in ins):   # None = "no flow"; absent = a gap
                    raise GradientError(f"the gradient rule of '{o.type}' gives nothing for its input '{pname}' "
                                        f"(path from the loss: {_describe(via)})")
                continue
            if result[pname] is None:
                continue
            ins = v if isinstance(v, tuple) else (v,)
            outs = result[pname] if isinstance(v, tuple) else (result[pname],)
            for t, g in zip(ins, outs):
                if g is None or id(t) not in needs or t.dtype not in FLOAT:
                    continue
                g = _fit(g, t, o)
                prev = cot.get(id(t))
                cot[id(t)] = g if prev is None else prev + g
                path.setdefault(id(t), via)
    out: list[Tensor] = []
    for t in wrt:
        g = cot.get(id(t))
        if g is None:
            g = make_const(np.zeros(t.shape), t.dtype if t.dtype in FLOAT else loss.dtype)
        elif g.op is None or any(g is h for h in out):
            # Distinct tensors, so every gradient can be a program output of its own (add's two
            # inputs share one cotangent; d loss / d loss is the seed, maybe a graph input).
            g = F.identity(g)
        out.append(g)
    return out


def _custom(vjp, g: Tensor, o, needs: set, cot: dict, path: dict, via: tuple) -> None:
    """Send the cotangent g of a tensor marked by `custom_vjp` to the composite's inputs."""
    result = vjp.rule(g) or {}
    for pname, t in vjp.inputs.items():
        if id(t) not in needs or t.dtype not in FLOAT:
            continue
        if pname not in result:
            raise GradientError(f"the custom VJP of '{vjp.name}' gives nothing for its input '{pname}' "
                                f"(path from the loss: {_describe(via)})")
        if result[pname] is None:
            continue
        g_in = _fit(result[pname], t, o)
        prev = cot.get(id(t))
        cot[id(t)] = g_in if prev is None else prev + g_in
        path.setdefault(id(t), via)


def _seed(loss: Tensor, seed) -> Tensor:
    if seed is None:
        return make_const(np.ones(loss.shape), loss.dtype)
    if isinstance(seed, Tensor):
        if seed.shape != loss.shape:
            raise GradientError(f"grad: seed shape {list(seed.shape)} must equal the loss shape {list(loss.shape)}")
        return seed
    arr = np.asarray(seed, dtype=np.float64)
    if arr.size != 1 or not np.isfinite(arr).all():
        raise GradientError(f"grad: seed must be one finite number (or a tensor of the loss shape), got {seed!r}")
    return make_const(np.full(loss.shape, arr.item()), loss.dtype)


def _fit(g: Tensor, t: Tensor, o) -> Tensor:
    """A rule's cotangent brought to its input's shape (broadcast axes summed) and dtype."""
    if g.shape != t.shape:
        try:
            g = unbroadcast(g, t.shape)
        except ShapeError as e:
            raise GradientError(f"gradient rule of '{o.type}' gave shape {list(g.shape)} for an input of shape "
                                f"{list(t.shape)}: {e}") from None
        if g.shape != t.shape:
            raise GradientError(f"gradient rule of '{o.type}' gave shape {list(g.shape)} for an input of shape "
                                f"{list(t.shape)}")
    if g.dtype != t.dtype:
        g = g.cast(t.dtype)
    return g


def _describe(ops) -> str:
    parts = ["loss"] + [f"{o.type}" + (f" '{o.name}'" if o.name else "") for o in ops]
    return " <- ".join(parts)
