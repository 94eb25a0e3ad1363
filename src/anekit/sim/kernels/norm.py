"""layer_norm, batch_norm, instance_norm.

Chip profile: a normalization is its stages in fp16 with the sums in the accumulator model
(mean, centred values, variance, rsqrt, scale, shift, each stored as fp16); batch_norm folds
to a per-channel fp16 scale and bias as the compiler does (guide ch. 20: the scale and bias
fold into the post-scale and bias streams). Exact mode is the float32 formula.
"""
from __future__ import annotations

import numpy as np

from .. import _compiled_mac
from ..fp16 import F32
from ..registry import kernel
from . import _compiled_norm


def _normalize_last(nx, lanes: np.ndarray, epsilon, gamma=None, beta=None) -> np.ndarray:
    """(lanes - mean) / sqrt(var + eps) over the last axis, then * gamma + beta (vectors along
    the last axis, or None)."""
    k = lanes.shape[-1]
    if not nx.fp16:
        y = _exact_compiled(lanes, epsilon, gamma, beta)
        if y is not None:
            return y
        mean = lanes.mean(axis=-1, keepdims=True, dtype=F32)
        d = lanes - mean
        var = (d * d).mean(axis=-1, keepdims=True, dtype=F32)
        return _affine(nx, d / np.sqrt(var + F32(epsilon)), gamma, beta)
    inv_k = F32(1.0 / k)
    # The compiled route where every stage stores NaN as 0 (all chip profiles): a NaN kept
    # through the stages could carry another payload there (operand order in a product).
    jit = _compiled_norm.kernels() if nx.profile.indeterminate_to_zero else None
    if jit is not None and lanes.size and all(v is None or v.size == k for v in (gamma, beta)):
        return _normalize_compiled(jit, nx, lanes, inv_k, nx.const(epsilon), gamma, beta)
    mean = nx.store(nx.wide_sum(lanes)[..., None] * inv_k)
    d = nx.store(lanes - mean)
    var = nx.store(nx.wide_sum(nx.products(d, d))[..., None] * inv_k)
    inv = nx.store(F32(1.0) / np.sqrt(nx.store(var + nx.const(epsilon))))
    return _affine(nx, nx.store(d * inv), gamma, beta)


def _exact_compiled(lanes, epsilon, gamma, beta) -> np.ndarray | None:
    """The exact formula below as one compiled call (_compiled_norm.normalize_exact: numpy's
    operations in numpy's order) on C-contiguous float32 rows of finite values, or None (the
    numpy code runs: another layout could change numpy's summation order)."""
    jit = _compiled_norm.kernels()
    k = lanes.shape[-1]
    if jit is None or jit[3] is None or lanes.dtype != F32 or not lanes.flags.c_contiguous or not lanes.size \
            or k > _EXACT_MAX_K or not all(v is None or (v.size == k and v.dtype == F32) for v in (gamma, beta)):
        return None
    rows = lanes.reshape(-1, k)
    d, out = np.empty_like(rows), np.empty_like(rows)
    g = _NONE if gamma is None else np.ascontiguousarray(gamma).reshape(-1)
    b = _NONE if beta is None else np.ascontiguousarray(beta).reshape(-1)
    if not jit[3](rows, F32(epsilon), g, b, d, out):
        return None
    return out.reshape(lanes.shape)


_EXACT_MAX_K = 8192      # rows the compiled sum was checked against numpy's on (tests)


def _normalize_compiled(jit, nx, lanes, inv_k, eps, gamma, beta) -> np.ndarray:
    """The fp16 stages of _normalize_last in two compiled passes around the two wide sums
    (sim/kernels/_compiled_norm.py): the same operations, so the same bits."""
    centre, scale, four, _ = jit
    p = nx.profile
    keep_nan, nan_val = False, F32(0.0)
    rows = np.ascontiguousarray(lanes, dtype=F32).reshape(-1, lanes.shape[-1])
    d, dd = np.empty_like(rows), np.empty_like(rows)
    none = _NONE
    g = none if gamma is None else np.ascontiguousarray(gamma, dtype=F32).reshape(-1)
    b = none if beta is None else np.ascontiguousarray(beta, dtype=F32).reshape(-1)
    out = np.empty_like(rows)
    scale4 = _compiled_mac.tile_scale(p)
    if four is not None and scale4 is not None and \
            four(rows, inv_k, eps, g, b, bool(p.mac_round_products), scale4, bool(p.mac_flush_subnormals), d, dd, out):
        return out.reshape(lanes.shape)      # plain lanes: both sums inside (_compiled_norm.normalize4)
    centre(rows, nx.wide_sum(rows), inv_k, bool(p.mac_round_products), keep_nan, nan_val, d, dd)
    scale(d, nx.wide_sum(dd), inv_k, eps, g, b, keep_nan, nan_val, out)
    return out.reshape(lanes.shape)


_NONE = np.zeros(0, F32)      # no gamma or beta, for the compiled kernel
_NONE.flags.writeable = False


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
    moved = x if ax == tail else np.moveaxis(x, ax, tail)      # the usual case: trailing axes, no move
    lanes = moved.reshape(moved.shape[:x.ndim - len(ax)] + (-1,))
    y = _normalize_last(c.nx, lanes, epsilon, None if gamma is None else gamma.reshape(-1),
                        None if beta is None else beta.reshape(-1))
    y = y.reshape(moved.shape)
    return y if ax == tail else np.moveaxis(y, tail, ax)


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
