"""Softmax, normalizations and reductions."""
from __future__ import annotations

from ..spec import const, declare, op, tensor
from ._rules import axes, axis


@op(kind="reduction", x=tensor(), axis=const("int32", 0, default=-1))
def softmax(a):
    """Softmax along `axis` (the ANE subtracts the max internally)."""
    axis(a, "axis", a.axis, a.x.rank)
    return [(a.T, a.x.shape)]


def _param_shape(a, name, want):
    t = getattr(a, name)
    if t is not None and t.shape != tuple(want):
        raise a.fail(name, f"shape {list(t.shape)} must be {list(want)}")


@op(kind="norm", x=tensor(), axes=const("int32", 1), gamma=tensor(optional=True),
    beta=tensor(optional=True), epsilon=const("T", 0, default=1e-5))
def layer_norm(a):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over `axes`; gamma/beta have those axes' shape."""
    ax = sorted(axes(a, "axes", a.axes, a.x.rank))
    want = [a.x.shape[i] for i in ax]
    _param_shape(a, "gamma", want)
    _param_shape(a, "beta", want)
    return [(a.T, a.x.shape)]


@op(kind="norm", x=tensor(), mean=tensor(), variance=tensor(), gamma=tensor(optional=True),
    beta=tensor(optional=True), epsilon=const("T", 0, default=1e-5))
def batch_norm(a):
    """Inference batch norm over channel axis 1 with per-channel statistics."""
    if a.x.rank < 2:
        raise a.fail("x", f"needs rank >= 2 ([N, C, ...]), got shape {list(a.x.shape)}")
    for n in ("mean", "variance", "gamma", "beta"):
        _param_shape(a, n, [a.x.shape[1]])
    return [(a.T, a.x.shape)]


@op(kind="norm", x=tensor(), gamma=tensor(optional=True), beta=tensor(optional=True),
    epsilon=const("T", 0, default=1e-5))
def instance_norm(a):
    """Per-sample, per-channel normalization over the spatial axes of [N, C, *S]."""
    if a.x.rank < 3:
        raise a.fail("x", f"needs rank >= 3 ([N, C, *S]), got shape {list(a.x.shape)}")
    for n in ("gamma", "beta"):
        _param_shape(a, n, [a.x.shape[1]])
    return [(a.T, a.x.shape)]


def _reduce(out_dtype=None):
    def rule(a):
        rank = a.x.rank
        ax = set(range(rank)) if a.axes is None else set(axes(a, "axes", a.axes, rank))
        if a.keep_dims:
            shape = tuple(1 if i in ax else s for i, s in enumerate(a.x.shape))
        else:
            shape = tuple(s for i, s in enumerate(a.x.shape) if i not in ax)
        return [(out_dtype or a.T, shape)]
    return rule


for _name in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod",
              "reduce_l2_norm", "reduce_l1_norm", "reduce_sum_square", "reduce_log_sum_exp"):
    declare(_name, kind="reduction", infer=_reduce(), T=("fp16", "fp32", "int32"), x=tensor(),
            axes=const("int32", 1, default=None), keep_dims=const("bool", 0, default=False),
            doc=f"{_name} over `axes` (all axes when omitted).")


def _arg_reduce(a):
    ax = axis(a, "axis", a.axis, a.x.rank)
    shape = tuple(1 if i == ax else s for i, s in enumerate(a.x.shape)) if a.keep_dims else \
        tuple(s for i, s in enumerate(a.x.shape) if i != ax)
    return [("int32", shape)]


for _name in ("reduce_argmax", "reduce_argmin"):
    declare(_name, kind="reduction", infer=_arg_reduce, T=("fp16", "fp32", "int32"), x=tensor(),
            axis=const("int32", 0, default=-1), keep_dims=const("bool", 0, default=False),
            doc=f"Index of the {_name[7:]} along `axis` (int32).")
