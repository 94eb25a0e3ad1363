"""Graph rewrites over the tensors behind a set of outputs.

`rewrite` is the traversal every pass shares: ops are visited producers first, an op whose
inputs were rewritten is copied onto the new inputs, and ops that need nothing are shared
with the original graph. `pad_runtime_matmuls` is the pass for M1 (h13), where a matmul of two
runtime tensors over an inner dimension that is not a multiple of 32 returns zeros
(anekit.preflight.ane_route owns that rule and `runtime_matmul_multiple` says which targets
need it): both operands are zero-padded along the contraction axis, and zero lanes add
nothing to any output, so the result is the same matmul.

    outs = pad_runtime_matmuls({"loss": loss, "dw": dw}, multiple=32)   # then ak.program(outs)
"""
from __future__ import annotations

from typing import Callable

from ..errors import UsageError
from .declared import F
from .graph import Op, Tensor, topo_order
from .weights import is_weight


def rewrite(outputs, replace: Callable):
    """The graph behind `outputs` (a tensor, a list or a {name: tensor} dict) with each op for
    which `replace(op, inputs)` returns new output tensors swapped for them; returns the same
    structure. `inputs` are the op's inputs after earlier rewrites; `replace` returns None to
    keep the op (copied only when an input changed)."""
    if isinstance(outputs, Tensor):
        return rewrite([outputs], replace)[0]
    keys = list(outputs) if isinstance(outputs, dict) else None
    tensors = list(outputs.values()) if keys is not None else list(outputs)
    ops, _ = topo_order(tensors)
    new: dict[int, Tensor] = {}

    def m(t):
        return tuple(new.get(id(v), v) for v in t) if isinstance(t, tuple) else new.get(id(t), t)

    for o in ops:
        inputs = {k: m(v) for k, v in o.inputs.items()}
        out = replace(o, inputs)
        if out is None:
            if all(inputs[k] is o.inputs[k] for k in inputs):
                continue
            no = Op(o.spec, inputs, dict(o.attrs), o.name)
            no.outputs = [Tensor(t.dtype, t.shape, no, i, t.name, t.const) for i, t in enumerate(o.outputs)]
            out = no.outputs
        for t, r in zip(o.outputs, out if isinstance(out, (list, tuple)) else [out]):
            new[id(t)] = r
    result = [new.get(id(t), t) for t in tensors]
    return dict(zip(keys, result)) if keys is not None else result


def matmul_inner_axes(x: Tensor, y: Tensor, transpose_x: bool, transpose_y: bool) -> tuple[int, int] | None:
    """The contraction axis of x and of y (non-negative), or None where a rank-1 operand's
    implicit axis is the one contracted (nothing to pad there)."""
    if x.rank == 1 and transpose_x or y.rank == 1 and transpose_y:
        return None
    ax = x.rank - 2 if transpose_x and x.rank > 1 else x.rank - 1
    ay = y.rank - 1 if transpose_y or y.rank == 1 else y.rank - 2
    return ax, ay


def _zero_pad(t: Tensor, axis: int, extra: int, name: str | None) -> Tensor:
    """t with `extra` zeros after its end along `axis` (pad covers the last rank - axis axes)."""
    pads = [0, extra] + [0, 0] * (t.rank - 1 - axis)
    return F.pad(t, pad=pads, mode="constant", constant_val=0.0, name=name)


def pad_runtime_matmuls(outputs, multiple: int = 32):
    """The graph behind `outputs` with every matmul of two runtime operands whose inner
    dimension is not a multiple of `multiple` rewritten as the matmul of both operands
    zero-padded to the next multiple along the contraction axis (transpose_x / transpose_y
    respected). The rewritten matmul keeps its name and attributes; returns the structure
    given (a tensor, a list or a {name: tensor} dict)."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise UsageError(f"multiple must be a positive integer, got {multiple!r}")

    def pad(o, inputs):
        if o.type != "matmul":
            return None
        x, y = inputs["x"], inputs["y"]
        if is_weight(x) or is_weight(y):
            return None
        tx, ty = bool(o.attr("transpose_x")), bool(o.attr("transpose_y"))
        axes = matmul_inner_axes(x, y, tx, ty)
        if axes is None:
            return None
        inner = x.shape[axes[0]]
        extra = -inner % multiple
        if not extra:
            return None
        base = f"{o.name}__" if o.name else None
        xp = _zero_pad(x, axes[0], extra, base and base + "pad_x")
        yp = _zero_pad(y, axes[1], extra, base and base + "pad_y")
        return [F.matmul(xp, yp, transpose_x=tx, transpose_y=ty, name=o.name)]

    return rewrite(outputs, pad)
