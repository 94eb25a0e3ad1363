"""layer_norm, batch_norm, instance_norm.

Chip profile: a normalization is its stages in fp16 with the sums in the accumulator model
(mean, centred values, variance, rsqrt, scale, shift, each stored as fp16); batch_norm folds
to a per-channel fp16 scale and bias as the compiler does (guide ch. 20: the scale and bias
fold into the post-scale and bias streams). Exact mode is the float32 formula.
"""
from __future__ import annotations

import numpy as np

from ..fp16 import F32
from ..registry import kernel


def _normalize_last(nx, lanes: np.ndarray, epsilon) -> np.ndarray:
    """(lanes - mean) / sqrt(var + eps) over the last axis."""
    k = lanes.shape[-1]
    if not nx.fp16:
        mean = lanes.mean(axis=-1, keepdims=True, dtype=F32)
        d = lanes - mean
        var = (d * d).mean(axis=-1, keepdims=True, dtype=F32)
        return d / np.sqrt(var + F32(epsilon))
    mean = nx.store(nx.wide_sum(lanes)[..., None] * F32(1.0 / k))
    d = nx.store(lanes - mean)
    var = nx.store(nx.wide_sum(nx.products(d, d))[..., None] * F32(1.0 / k))
    inv = nx.store(F32(1.0) / np.sqrt(nx.store(var + nx.const(epsilon))))
    return nx.store(d * inv)


def _affine(nx, y, gamma, beta):
    if gamma is not None:
        y = nx.store(y * gamma)
    if beta is not None:
        y = nx.store(y + beta)
    return y


@kernel("layer_norm", finish="keep")
def layer_norm(c, x, axes, gamma, beta, epsilon):
    ax = sorted({a % x.ndim for a in axes})
    tail = list(range(x.ndim - len(ax), x.ndim))
    moved = np.moveaxis(x, ax, tail)
    lanes = moved.reshape(moved.shape[:x.ndim - len(ax)] + (-1,))
    y = _normalize_last(c.nx, lanes, epsilon)
    y = _affine(c.nx, y, None if gamma is None else gamma.reshape(-1), None if beta is None else beta.reshape(-1))
    return np.moveaxis(y.reshape(moved.shape), tail, ax)


@kernel("instance_norm", finish="keep")
def instance_norm(c, x, gamma, beta, epsilon):
    lanes = x.reshape(x.shape[:2] + (-1,))
    y = _normalize_last(c.nx, lanes, epsilon)
    per_channel = (1, -1, 1)
    y = _affine(c.nx, y, None if gamma is None else gamma.reshape(per_channel),
                None if beta is None else beta.reshape(per_channel))
    return y.reshape(x.shape)


@kernel("batch_norm")
def batch_norm(c, x, mean, variance, gamma, beta, epsilon):
    nx = c.nx
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g = F32(1.0) if gamma is None else gamma.astype(F32)
    b = F32(0.0) if beta is None else beta.astype(F32)
    if not nx.fp16:
        return (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + F32(epsilon)) \
            * np.reshape(g, shape if np.ndim(g) else ()) + np.reshape(b, shape if np.ndim(b) else ())

    def fold():
        scale = g / np.sqrt(variance.astype(np.float64) + float(epsilon))
        shift = b - mean * scale
        return nx.store(scale).reshape(shape), nx.store(shift).reshape(shape)
    scale, shift = c.cached("fold", fold, "mean", "variance", "gamma", "beta")
    return nx.store(x * scale) + shift
