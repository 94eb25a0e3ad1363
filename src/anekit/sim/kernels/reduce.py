"""Reductions and softmax. Sums go through the accumulator model (mac.reduce_lanes): the
4-lane tile stage and float32 accumulator, without the MAC port's 2**15 ceiling (guide
ch. 3: reduce-sum keeps the full fp16 range)."""
from __future__ import annotations

import numpy as np

from .. import _compiled_mac
from ..fp16 import F32
from ..registry import kernel
from . import _compiled_reduce

_SUMS = ("reduce_sum", "reduce_mean", "reduce_sum_square", "reduce_l1_norm", "reduce_l2_norm",
         "reduce_log_sum_exp")
# The ufuncs' own reductions: what np.max, np.min and np.prod run, without their wrappers' cost.
_OTHERS = {"reduce_max": np.maximum.reduce, "reduce_min": np.minimum.reduce, "reduce_prod": np.multiply.reduce}


def lanes_last(x: np.ndarray, axes) -> np.ndarray:
    """x with the reduced axes moved last and flattened: [kept..., K]. (np.moveaxis's view,
    as one transpose: moveaxis's argument handling cost more than the small sums it fed.)"""
    if axes is None:
        return x.reshape(-1)
    nd = x.ndim
    ax = sorted({a % nd for a in axes})
    keep = [i for i in range(nd) if i not in ax]
    if keep != list(range(len(keep))):      # a reduced axis before a kept one
        x = x.transpose(keep + ax)
    return x.reshape(x.shape[:len(keep)] + (-1,))


def softmax_along(nx, x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax with the max subtracted first, as the engine does (it never overflows); stored
    (Numerics.store)."""
    if axis % x.ndim == x.ndim - 1 and 0 < x.shape[-1] <= _SOFTMAX_MAX_K and x.size and x.dtype == F32:
        y = _compiled_softmax(nx, x)
        if y is not None:
            return y
    return nx.store(_softmax_numpy(nx, x, axis))


_SOFTMAX_MAX_K = 8192       # rows the compiled sum was checked against numpy's on (tests)


def _compiled_softmax(nx, x: np.ndarray) -> np.ndarray | None:
    """_softmax_numpy over the last axis, stored, in two compiled passes around numpy's exp
    (_compiled_reduce.softmax_shift and softmax_scale: the max, the shift and its store; the
    store of the exponentials, numpy's pairwise sum, the quotient and its store), or None
    without the compiled kernels or on a NaN (exact numerics: an infinity too). Chip profiles
    that keep NaN stay with numpy (an inf - inf NaN there would keep numba's payload)."""
    jit = _compiled_reduce.kernels()
    if jit is None or (nx.fp16 and not nx.profile.indeterminate_to_zero):
        return None
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    d = np.empty_like(rows)
    if not jit.softmax_shift(rows, d, nx.fp16, not nx.fp16):
        return None
    np.exp(d, out=d)
    out = np.empty_like(d)
    jit.softmax_scale(d, out, nx.fp16)
    return out.reshape(x.shape)


def _softmax_numpy(nx, x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)      # (the methods: np.max's and np.sum's reductions, called directly)
    if nx.fp16:
        e = nx.store(np.exp(nx.store(x - m)))      # inf - inf -> +0 puts the mass on an inf lane
    else:
        e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True, dtype=F32)


@kernel("softmax", finish="stored")        # softmax_along stores with the NaN rule on every route
def softmax(c, x, axis):
    return softmax_along(c.nx, x, axis)


def stored_sums(nx, lanes: np.ndarray, mult: float, store: bool = True) -> np.ndarray | None:
    """nx.store(nx.wide_sum(lanes) * F32(mult)) (without the store when store is False) as one
    compiled call (_compiled_reduce), or None where that route does not apply: the numpy
    route, a profile other than four-lane tiles, or lanes that are not plain (an infinity, a
    NaN, or beyond 65504), which the caller sums through mac.reduce_lanes."""
    args = _sum_args(nx)
    if args is None or lanes.dtype != F32 or not lanes.size:
        return None
    jit = _compiled_reduce.kernels()
    if jit is None:
        return None
    if lanes.flags.c_contiguous:
        x, run = (lanes if lanes.ndim == 2 else lanes.reshape(-1, lanes.shape[-1])), jit.sums_by_lanes
        rows = x.shape[0]
    elif lanes.ndim == 2 and lanes.T.flags.c_contiguous:
        x, run, rows = lanes.T, jit.sums_by_rows, lanes.shape[0]      # a sum over a matrix's first axis
    else:
        x, run = np.ascontiguousarray(lanes).reshape(-1, lanes.shape[-1]), jit.sums_by_lanes
        rows = x.shape[0]
    out = np.empty(rows, F32)
    if not run(x, out, args[0], args[1], F32(mult), store, args[2], _ZERO):
        return None
    return out if lanes.ndim == 2 else out.reshape(lanes.shape[:-1])


_ZERO = F32(0.0)
_SUM_ARGS: dict = {}        # id(profile) -> (profile, the kernels' profile arguments or None)


def _sum_args(nx):
    """(scale, flush, keep_nan) for _compiled_reduce's sums under nx's profile, or None where
    they do not apply (exact numerics, tiles other than four lanes, guard bits beyond 10);
    looked up once per profile (the checks cost more than a small sum)."""
    p = nx.profile
    entry = _SUM_ARGS.get(id(p))
    if entry is None or entry[0] is not p:
        args = None
        scale = _compiled_mac.tile_scale(p)
        if nx.fp16 and scale is not None:
            args = (scale, bool(p.mac_flush_subnormals), not p.indeterminate_to_zero)
        entry = _SUM_ARGS[id(p)] = (p, args)
    return entry[1]


# Stored here (finish="stored"): the compiled sums store as they go (plain lanes: no NaN can
# arise), the rest calls nx.store, which applies the NaN rule; integer sums are not floats.
@kernel(*_SUMS, finish="stored")
def reduce_sum_family(c, x, axes, keep_dims):
    lanes = lanes_last(x, axes)
    shape = c.out_shape()
    if lanes.dtype.kind in "iu":
        return _integer(c.type, lanes).reshape(shape)
    nx, t = c.nx, c.type
    if t == "reduce_sum" or t == "reduce_mean":
        k = lanes.shape[-1]
        if nx.fp16:
            r = stored_sums(nx, lanes, 1.0 if t == "reduce_sum" else 1.0 / k)
            if r is not None:
                return r.reshape(shape)
        elif lanes.dtype == F32:     # exact: np.sum's reduction, called directly
            r = np.add.reduce(lanes, axis=-1, dtype=F32)
            return (r if t == "reduce_sum" else r * F32(1.0 / k)).reshape(shape)
    if t == "reduce_sum":
        r = nx.wide_sum(lanes)
    elif t == "reduce_mean":
        r = nx.wide_sum(lanes) * F32(1.0 / lanes.shape[-1])
    elif t == "reduce_sum_square":
        r = nx.wide_sum(nx.products(lanes, lanes))
    elif t == "reduce_l1_norm":
        r = nx.wide_sum(np.abs(lanes))
    elif t == "reduce_l2_norm":
        r = np.sqrt(nx.store(nx.wide_sum(nx.products(lanes, lanes))))
    else:   # reduce_log_sum_exp, max-subtracted like softmax
        m = np.max(lanes, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, F32(0.0))
        e = nx.store(np.exp(nx.store(lanes - m)))
        r = nx.store(np.log(nx.store(nx.wide_sum(e)))) + m[..., 0]
    return nx.store(r.reshape(shape))


def _integer(t: str, lanes: np.ndarray) -> np.ndarray:
    s = np.sum(lanes, axis=-1, dtype=np.int64)
    if t == "reduce_sum":
        return s
    if t == "reduce_mean":
        return np.trunc(s / lanes.shape[-1])
    if t == "reduce_l1_norm":
        return np.sum(np.abs(lanes), axis=-1, dtype=np.int64)
    sq = np.sum(lanes.astype(np.int64) ** 2, axis=-1)
    if t == "reduce_sum_square":
        return sq
    if t == "reduce_l2_norm":
        return np.trunc(np.sqrt(sq))
    return np.trunc(np.log(np.sum(np.exp(lanes.astype(np.float64)), axis=-1)))


@kernel(*_OTHERS)
def reduce_other(c, x, axes, keep_dims):
    return _OTHERS[c.type](lanes_last(x, axes), axis=-1).reshape(c.out_shape())


@kernel("reduce_argmax", "reduce_argmin")
def reduce_arg(c, x, axis, keep_dims):
    f = np.argmax if c.type == "reduce_argmax" else np.argmin
    return f(x, axis=axis).reshape(c.out_shape())


@kernel("cumsum")
def cumsum(c, x, axis, exclusive, reverse):
    ax = axis % x.ndim
    v = np.flip(x, ax) if reverse else x
    run = np.cumsum(v, axis=ax, dtype=np.int64 if x.dtype.kind in "iu" else F32)
    if exclusive:
        run = np.concatenate([np.zeros_like(np.take(run, [0], axis=ax)),
                              np.take(run, np.arange(x.shape[ax] - 1), axis=ax)], axis=ax)
    return np.flip(run, ax) if reverse else run


@kernel("topk", finish="keep")
def topk(c, x, k, axis, ascending, sort, return_indices, output_indices_dtype):
    ax = axis % x.ndim
    k = x.shape[ax] if k == -1 else k
    key = x if ascending else (-x.astype(np.float64) if x.dtype.kind in "iu" else -x)
    order = np.take(np.argsort(key, axis=ax, kind="stable"), np.arange(k), axis=ax)   # ties: lower index first
    values = np.take_along_axis(x, order, axis=ax)
    return (values, order.astype(np.int32)) if return_indices else values
