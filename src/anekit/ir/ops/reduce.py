"""Softmax, normalizations and reductions (vector engine; a norm or softmax reads its input
twice, statistics then normalize)."""
from __future__ import annotations

import math

import numpy as np

from .. import intervals as iv
from ..spec import const, declare, op, tensor
from ._rules import axes, axis

# Core ML (iOS 17+) may ask argmax/argmin for a narrow index type; anekit widens it to int32.
INDEX_DTYPES = ("int32", "int8", "uint8", "int16", "uint16")


@op(kind="reduction", x=tensor(), axis=const("int32", 0, default=-1), vector_passes=2,
    fp16_range=lambda op, res: (0.0, 1.0))
def softmax(a):
    """Softmax along `axis` (the ANE subtracts the max internally)."""
    axis(a, "axis", a.axis, a.x.rank)
    return [(a.T, a.x.shape)]


def _norm_range(n_of):
    """Range of a normalization over n_of(op) values, then the affine gamma / beta."""
    return lambda op, res: iv.affine(iv.norm_bound(n_of(op)), op, res)


def _batch_norm_range(op, res):
    x = iv.x_of(op, res)
    mean, var = res.of(op.inputs["mean"]), res.of(op.inputs["variance"])
    eps = float(op.attr("epsilon"))
    if var[0] + eps <= 0:
        return None
    z = iv.mul(iv.fix(x[0] - mean[1], x[1] - mean[0]), (0.0, 1.0 / math.sqrt(var[0] + eps)))
    z = iv.union(z, iv.fix(-iv.mag(z), iv.mag(z)))
    return iv.affine(z, op, res)


def _param_shape(a, name, want):
    t = getattr(a, name)
    if t is not None and t.shape != tuple(want):
        raise a.fail(name, f"shape {list(t.shape)} must be {list(want)}")


@op(kind="norm", x=tensor(), axes=const("int32", 1), gamma=tensor(optional=True),
    beta=tensor(optional=True), epsilon=const("T", 0, default=1e-5),
    fp16_range=_norm_range(lambda op: int(np.prod([op.inputs["x"].shape[a % op.inputs["x"].rank]
                                                   for a in op.attr("axes")]))))
def layer_norm(a):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over `axes`; gamma/beta have those axes' shape."""
    ax = sorted(axes(a, "axes", a.axes, a.x.rank))
    want = [a.x.shape[i] for i in ax]
    _param_shape(a, "gamma", want)
    _param_shape(a, "beta", want)
    return [(a.T, a.x.shape)]


@op(kind="norm", x=tensor(), mean=tensor(), variance=tensor(), gamma=tensor(optional=True),
    beta=tensor(optional=True), epsilon=const("T", 0, default=1e-5), fp16_range=_batch_norm_range)
def batch_norm(a):
    """Inference batch norm over channel axis 1 with per-channel statistics."""
    if a.x.rank < 2:
        raise a.fail("x", f"needs rank >= 2 ([N, C, ...]), got shape {list(a.x.shape)}")
    for n in ("mean", "variance", "gamma", "beta"):
        _param_shape(a, n, [a.x.shape[1]])
    return [(a.T, a.x.shape)]


@op(kind="norm", x=tensor(), gamma=tensor(optional=True), beta=tensor(optional=True),
    epsilon=const("T", 0, default=1e-5), fp16_range=_norm_range(lambda op: int(np.prod(op.inputs["x"].shape[2:]))))
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


def _reduced_count(op) -> int:
    x = op.inputs["x"].shape
    ax = op.attr("axes")
    if ax is None:
        return int(np.prod(x)) if x else 1
    return int(np.prod([x[a % len(x)] for a in ax])) if x else 1


def _counted(f):
    """A range rule from x's interval and the number of values reduced."""
    return lambda op, res: f(iv.x_of(op, res), _reduced_count(op))


# name: fp16 range rule
_REDUCTIONS = {
    "reduce_sum": _counted(lambda x, n: iv.fix(x[0] * n, x[1] * n)),
    "reduce_mean": iv.same, "reduce_max": iv.same, "reduce_min": iv.same,
    "reduce_prod": iv.unbounded,
    "reduce_l2_norm": _counted(lambda x, n: (0.0, math.sqrt(n) * iv.mag(x))),
    "reduce_l1_norm": _counted(lambda x, n: (0.0, n * iv.mag(x))),
    "reduce_sum_square": _counted(lambda x, n: (0.0, n * iv.mag(x) ** 2)),
    "reduce_log_sum_exp": _counted(lambda x, n: iv.fix(x[0], x[1] + math.log(n))),
}
for _name, _range in _REDUCTIONS.items():
    declare(_name, kind="reduction", infer=_reduce(), T=("fp16", "fp32", "int32"), x=tensor(),
            axes=const("int32", 1, default=None), keep_dims=const("bool", 0, default=False),
            fp16_range=_range, doc=f"{_name} over `axes` (all axes when omitted).")


def _arg_reduce(a):
    ax = axis(a, "axis", a.axis, a.x.rank)
    shape = tuple(1 if i == ax else s for i, s in enumerate(a.x.shape)) if a.keep_dims else \
        tuple(s for i, s in enumerate(a.x.shape) if i != ax)
    return [("int32", shape)]


def _index_range(op, res):
    x = op.inputs["x"]
    return (0.0, float(x.shape[op.attr("axis") % x.rank] - 1))


for _name in ("reduce_argmax", "reduce_argmin"):
    declare(_name, kind="reduction", infer=_arg_reduce, T=("fp16", "fp32", "int32"), x=tensor(),
            fp16_range=_index_range, coreml_ignored={"output_dtype": INDEX_DTYPES},
            axis=const("int32", 0, default=-1), keep_dims=const("bool", 0, default=False),
            doc=f"Index of the {_name[7:]} along `axis` (int32).")


# --- gradient rules (vector-Jacobian products written with forward ops; guide ch. 15) ---------

from ..spec import lookup as _lookup  # noqa: E402
from ..declared import F  # noqa: E402
from ._gradlib import expand_to, numel, reduced_keep_shape  # noqa: E402


@softmax.defgrad
def _softmax_grad(op, gs):
    y, g, ax = op.outputs[0], gs[0], op.attr("axis")
    return {"x": y * (g - F.reduce_sum(g * y, axes=[ax], keep_dims=True))}


def _reduction_parts(op, g):
    """x, output and cotangent, the latter two re-broadcast to x's shape."""
    x, y = op.inputs["x"], op.outputs[0]
    keep = reduced_keep_shape(x.shape, op.attr("axes"), op.attr("keep_dims"))
    count = numel(x.shape) // numel(keep)
    return x, expand_to(F.reshape(y, shape=list(keep)), x.shape), \
        expand_to(F.reshape(g, shape=list(keep)), x.shape), count


def _reduction_grad(local):
    def rule(op, gs):
        x, y, g, count = _reduction_parts(op, gs[0])
        return {"x": local(x, y, g, count)}
    return rule


_REDUCTION_VJP = {
    "reduce_sum": lambda x, y, g, n: g,
    "reduce_mean": lambda x, y, g, n: g * (1.0 / n),
    "reduce_sum_square": lambda x, y, g, n: g * x * 2.0,
    "reduce_l2_norm": lambda x, y, g, n: g * x / y,
    "reduce_l1_norm": lambda x, y, g, n: g * F.sign(x),
    "reduce_log_sum_exp": lambda x, y, g, n: g * F.exp(x - y),
    # The max and min route the cotangent to every position that attains them.
    "reduce_max": lambda x, y, g, n: F.select(F.equal(x, y), g, 0.0),
    "reduce_min": lambda x, y, g, n: F.select(F.equal(x, y), g, 0.0),
}
for _name, _local in _REDUCTION_VJP.items():
    _lookup(_name).defgrad(_reduction_grad(_local))


def _norm_grad(x, g, ax, epsilon, gamma_b):
    """Normalization over axes `ax`: xhat and dL/dx for y = xhat * gamma_b (+ beta)."""
    mean = F.reduce_mean(x, axes=ax, keep_dims=True)
    d = x - mean
    rstd = F.rsqrt(F.reduce_mean(d * d, axes=ax, keep_dims=True) + epsilon)
    xhat = d * rstd
    dxhat = g if gamma_b is None else g * gamma_b
    m1 = F.reduce_mean(dxhat, axes=ax, keep_dims=True)
    m2 = F.reduce_mean(dxhat * xhat, axes=ax, keep_dims=True)
    return xhat, rstd * (dxhat - m1 - xhat * m2)


def _affine_grads(g, xhat, other_axes, gamma, beta, shape):
    """Cotangents of the scale and shift: summed over the axes they broadcast along."""
    def total(t):
        t = F.reduce_sum(t, axes=other_axes) if other_axes else t
        return F.reshape(t, shape=list(shape))
    out = {}
    if gamma is not None:
        out["gamma"] = total(g * xhat)
    if beta is not None:
        out["beta"] = total(g)
    return out


@layer_norm.defgrad
def _layer_norm_grad(op, gs):
    x, g, gamma, beta = op.inputs["x"], gs[0], op.inputs.get("gamma"), op.inputs.get("beta")
    ax = sorted(a % x.rank for a in op.attr("axes"))
    bshape = [s if i in ax else 1 for i, s in enumerate(x.shape)]
    gamma_b = None if gamma is None else F.reshape(gamma, shape=bshape)
    xhat, dx = _norm_grad(x, g, ax, op.attr("epsilon"), gamma_b)
    other = [i for i in range(x.rank) if i not in ax]
    pshape = [x.shape[i] for i in ax]
    return {"x": dx, **_affine_grads(g, xhat, other, gamma, beta, pshape)}


@instance_norm.defgrad
def _instance_norm_grad(op, gs):
    x, g, gamma, beta = op.inputs["x"], gs[0], op.inputs.get("gamma"), op.inputs.get("beta")
    ax = list(range(2, x.rank))
    bshape = [1, x.shape[1]] + [1] * len(ax)
    gamma_b = None if gamma is None else F.reshape(gamma, shape=bshape)
    xhat, dx = _norm_grad(x, g, ax, op.attr("epsilon"), gamma_b)
    return {"x": dx, **_affine_grads(g, xhat, [0] + ax, gamma, beta, [x.shape[1]])}


@batch_norm.defgrad
def _batch_norm_grad(op, gs):
    """Inference batch norm: y = (x - mean) * rsqrt(var + eps) * gamma + beta, statistics given."""
    x, g = op.inputs["x"], gs[0]
    gamma, beta = op.inputs.get("gamma"), op.inputs.get("beta")
    bshape = [1, x.shape[1]] + [1] * (x.rank - 2)
    mean = F.reshape(op.inputs["mean"], shape=bshape)
    rstd = F.rsqrt(F.reshape(op.inputs["variance"], shape=bshape) + op.attr("epsilon"))
    scale = rstd if gamma is None else rstd * F.reshape(gamma, shape=bshape)
    xhat = (x - mean) * rstd
    other = [0] + list(range(2, x.rank))
    c = [x.shape[1]]
    dxhat_sum = F.reduce_sum(g * scale, axes=other, keep_dims=True)          # d/dmean = -sum(g*scale)
    dvar = F.reduce_sum(g * xhat * scale, axes=other, keep_dims=True) * rstd * -0.5   # d rstd/dvar = -rstd^3/2
    out = {"x": g * scale, "mean": F.reshape(-dxhat_sum, shape=c),
           "variance": F.reshape(dvar, shape=c)}
    out.update(_affine_grads(g, xhat, other, gamma, beta, c))
    return out
