"""The accumulation model: fp16 lanes, four-lane tiles, a float32 accumulator, the 2**15 port.

Guide ch. 3 "Wide accumulator" and ch. 20 "Radix-4 reduction and wide accumulator": the
first reduction stage groups lanes into tiles of four, fp16-rounded, which supply one wide
(fp32-class) running accumulator that rounds to fp16 only at the output port. The model
that reproduces every published probe (5116 for [4096] + 1024 ones; the 16-ones
cancellation sweep of tbl:c3-cancel-sweep at every fp16 magnitude, in either lane order):
inside a tile the lanes add in order, each add rounding half to even onto a grid one bit
finer than the fp16 grid of its larger operand; tiles then add into a float32 accumulator.

Exact emulation costs a few passes per product, so matmuls and convs with more than
`tile_emulation_max_products` products take the fast route: float32 BLAS on the fp16
operands. That keeps the wide accumulator and the fp16 input and output rounding but drops
the product and in-tile roundings (docs/numerics.md quantifies the difference); outputs
whose running partial could reach the 2**15 ceiling, or whose row or column holds an
infinity, are still computed through the lane model.
"""
from __future__ import annotations

import math

import numpy as np

from .fp16 import F32, flush_subnormals, nan_to_zero, round_fp16, saturate
from .profiles import NumericsProfile

_CHUNK = 1 << 21        # products per emulation chunk (bounds the working memory)


def _quantize(v: np.ndarray, m: np.ndarray, guard: int) -> np.ndarray:
    """Round v half to even onto the fp16 grid of magnitude m refined by `guard` bits."""
    _, e = np.frexp(m)                              # m = f * 2**e, f in [0.5, 1)
    qexp = np.maximum(e - 1, -14) - 10 - guard      # log2 of the grid step
    return np.ldexp(np.rint(np.ldexp(v, -qexp)), qexp).astype(F32, copy=False)


def tile_sums(lanes: np.ndarray, p: NumericsProfile, ceiling: float | None = None) -> np.ndarray:
    """lanes [..., K] -> per-tile values [..., ceil(K / L)] after the in-tile stage. With a
    ceiling, an in-tile partial reaching it saturates too (an interior partial, ch. 3)."""
    n = p.mac_tile_lanes
    k = lanes.shape[-1]
    if k % n:
        pad = [(0, 0)] * (lanes.ndim - 1) + [(0, n - k % n)]
        lanes = np.pad(lanes, pad)
    t = lanes.reshape(lanes.shape[:-1] + (-1, n))
    s = t[..., 0]
    s = _quantize(s, np.abs(s), p.mac_tile_guard_bits)
    for i in range(1, n):
        lane = t[..., i]
        s = _quantize(s + lane, np.maximum(np.abs(s), np.abs(lane)), p.mac_tile_guard_bits)
        if p.indeterminate_to_zero:
            s = nan_to_zero(s)
        if ceiling is not None:
            s = saturate(s, ceiling)
    return s


def accumulate(tiles: np.ndarray, p: NumericsProfile, ceiling: float | None) -> np.ndarray:
    """Sum tile values [..., T] in order in a float32 accumulator; with a ceiling, a running
    partial reaching it becomes an infinity that later finite tiles cannot bring back."""
    if np.isfinite(tiles).all():
        partial = np.cumsum(tiles, axis=-1, dtype=F32)
        total = partial[..., -1]
        if ceiling is not None:
            over = np.abs(partial) >= ceiling
            if over.any():
                hit = over.any(axis=-1)
                first = np.take_along_axis(partial, over.argmax(axis=-1)[..., None], -1)[..., 0]
                total = np.where(hit, np.copysign(F32(np.inf), first), total)
        return total.astype(F32, copy=False)
    acc = np.zeros(tiles.shape[:-1], F32)
    for i in range(tiles.shape[-1]):       # infinities present: apply inf - inf = +0 per step
        acc = acc + tiles[..., i]
        if p.indeterminate_to_zero:
            acc = nan_to_zero(acc)
        if ceiling is not None:
            acc = saturate(acc, ceiling)
    return acc


def reduce_lanes(lanes: np.ndarray, p: NumericsProfile, ceiling: float | None = None) -> np.ndarray:
    """Wide (unrounded) sum over the last axis: exact float32 sum, or the lane/tile model."""
    lanes = np.asarray(lanes, F32)
    if p.exact or not p.mac_tile_lanes:
        return np.sum(lanes, axis=-1, dtype=F32)
    if p.mac_flush_subnormals:
        lanes = flush_subnormals(lanes)
    if lanes.shape[-1] == 0:
        return np.zeros(lanes.shape[:-1], F32)
    return accumulate(tile_sums(lanes, p, ceiling), p, ceiling)


def _products(x: np.ndarray, w: np.ndarray, p: NumericsProfile) -> np.ndarray:
    """Lane values x * w (fp16 operands; exact in float32), rounded as the fp16 multiplier does."""
    prod = x * w
    if p.mac_round_products:
        prod = round_fp16(prod, flush=p.mac_flush_subnormals)
    elif p.mac_flush_subnormals:
        prod = flush_subnormals(prod)
    if p.indeterminate_to_zero:
        prod = nan_to_zero(prod)            # 0 * inf
    return prod


class Operand:
    """A MAC operand with what the profile needs from it, computed once: the M1 flush,
    finiteness, its peak magnitude, and per-row/column magnitude bounds along the reduction
    axis. Kernels cache one for a constant weight (const=True) so runs skip those passes."""

    __slots__ = ("array", "finite", "peak", "k_axis", "const", "_absmax", "_abssum")

    def __init__(self, a: np.ndarray, p: NumericsProfile, k_axis: int, const: bool = False):
        a = np.asarray(a, dtype=F32)
        self.array = flush_subnormals(a) if p.mac_flush_subnormals and not p.exact else a
        hi, lo = (float(self.array.max()), float(self.array.min())) if a.size else (0.0, 0.0)
        self.finite = math.isfinite(hi) and math.isfinite(lo)
        self.peak = max(abs(hi), abs(lo))
        self.k_axis, self.const = k_axis, const
        self._absmax = self._abssum = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(max |a|, sum |a|) along the reduction axis."""
        if self._absmax is None:
            mag = np.abs(self.array)
            self._absmax, self._abssum = mag.max(self.k_axis), mag.sum(self.k_axis, dtype=F32)
        return self._absmax, self._abssum


def operand(a, p: NumericsProfile, k_axis: int) -> Operand:
    return a if isinstance(a, Operand) else Operand(a, p, k_axis)


def matmul(x, w, p: NumericsProfile, ceiling: bool = True) -> np.ndarray:
    """x [..., M, K] @ w [..., K, N] through the MAC; float32 (fp16 values unless exact).
    Either operand may be an Operand (a cached, prepared constant)."""
    if p.exact:
        return np.matmul(getattr(x, "array", x), getattr(w, "array", w), dtype=F32)
    limit = p.mac_output_ceiling if ceiling else None
    xo, wo = operand(x, p, -1), operand(w, p, -2)
    x, w = xo.array, wo.array
    batch = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    m, k, n = x.shape[-2], x.shape[-1], w.shape[-1]
    if p.mac_tile_lanes and k and math.prod(batch) * m * n * k <= p.tile_emulation_max_products:
        return port_output(_emulated(x, w, batch, p, limit), p, limit)
    hot = None
    if xo.finite and wo.finite:
        y = np.matmul(x, w, dtype=F32)
    else:
        # Only outputs whose row or column holds an infinity need the lane model's inf rules;
        # the rest come from BLAS on the operands with the infinities zeroed.
        bad_x, bad_w = ~np.isfinite(x), ~np.isfinite(w)
        xo, wo = Operand(np.where(bad_x, F32(0.0), x), p, -1), Operand(np.where(bad_w, F32(0.0), w), p, -2)
        y = np.matmul(xo.array, wo.array, dtype=F32)
        hot = np.broadcast_to(bad_x.any(-1)[..., :, None] | bad_w.any(-2)[..., None, :], y.shape)
    if limit is not None and k and p.mac_tile_lanes:
        near = _ceiling_risk(xo, wo, y.shape, limit)
        hot = near if hot is None else (hot if near is None else hot | near)
    if hot is not None and p.mac_tile_lanes:
        y = _emulate_entries(x, w, y, batch, np.nonzero(hot), p, limit)
    return port_output(y, p, limit)


def port_output(acc: np.ndarray, p: NumericsProfile, limit: float | None) -> np.ndarray:
    """The accumulator leaving through the output port: fp16, the ceiling, the M1 flush."""
    return round_fp16(acc, nan=0.0 if p.indeterminate_to_zero else None, limit=limit,
                      flush=p.mac_flush_subnormals)


def _emulated(x, w, batch, p, limit) -> np.ndarray:
    m, k, n = x.shape[-2], x.shape[-1], w.shape[-1]
    xb = np.broadcast_to(x, batch + (m, k)).reshape(-1, m, k)
    wt = np.swapaxes(np.broadcast_to(w, batch + (k, n)).reshape(-1, k, n), 1, 2)   # [B, N, K]
    if xb.shape[0] * m * n * k <= _CHUNK:      # small batched products: one pass, not one per matrix
        lanes = _products(xb[:, :, None, :], wt[:, None, :, :], p)
        return accumulate(tile_sums(lanes, p, limit), p, limit).reshape(batch + (m, n))
    out = np.empty((xb.shape[0], m, n), F32)
    rows = max(1, _CHUNK // max(1, n * k))
    for b in range(xb.shape[0]):
        for r in range(0, m, rows):
            lanes = _products(xb[b, r:r + rows, None, :], wt[b, None, :, :], p)
            out[b, r:r + rows] = accumulate(tile_sums(lanes, p, limit), p, limit)
    return out.reshape(batch + (m, n))


def _ceiling_risk(xo: Operand, wo: Operand, shape, limit):
    """Outputs whose running partial might reach the ceiling (a bool mask), or None. Every
    partial of (m, n) is at most sum_k |x_mk| |w_kn|, which is bounded by
    max_k |x_mk| * sum_k |w_kn| and by sum_k |x_mk| * max_k |w_kn|."""
    # Cheap scalar bounds first (peak of one operand times the largest line sum of the
    # other), starting with the line sums a constant operand already has cached.
    for a, b in sorted(((xo, wo), (wo, xo)), key=lambda pair: not pair[1].const):
        if a.peak * float(b.bounds()[1].max()) < limit:
            return None
    xmax, xsum = xo.bounds()                             # [..., M]
    wmax, wsum = wo.bounds()                             # [..., N]
    bound = np.minimum(xmax[..., :, None] * wsum[..., None, :], xsum[..., :, None] * wmax[..., None, :])
    risk = np.broadcast_to(bound, shape) >= limit
    return risk if risk.any() else None


def _emulate_entries(x, w, y, batch, hot, p, limit) -> np.ndarray:
    """y with the entries at the indices `hot` recomputed through the exact lane model."""
    if not hot[0].size:
        return y
    m, k, n = x.shape[-2], x.shape[-1], w.shape[-1]
    xb = np.broadcast_to(x, batch + (m, k))
    wt = np.moveaxis(np.broadcast_to(w, batch + (k, n)), -1, -2)
    lead = hot[:-2]
    y = y.copy()
    step = max(1, _CHUNK // max(1, k))
    for s in range(0, hot[0].size, step):
        part = tuple(i[s:s + step] for i in lead)
        rows, cols = hot[-2][s:s + step], hot[-1][s:s + step]
        lanes = _products(xb[part + (rows,)], wt[part + (cols,)], p)     # [F, K]
        y[part + (rows, cols)] = accumulate(tile_sums(lanes, p, limit), p, limit)
    return y
