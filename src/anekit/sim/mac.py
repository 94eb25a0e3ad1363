"""The accumulation model: fp16 lanes, four-lane tiles, a float32 accumulator, the 2**15 port.

Guide ch. 3 "Wide accumulator" and ch. 20 "Radix-4 reduction and wide accumulator": the
first reduction stage groups lanes into tiles of four, fp16-rounded, which supply one wide
(fp32-class) running accumulator that rounds to fp16 only at the output port. The model
that reproduces every published probe (5116 for [4096] + 1024 ones; the 16-ones
cancellation sweep of tbl:c3-cancel-sweep at every fp16 magnitude, in either lane order):
inside a tile the lanes add in order, each add rounding half to even onto a grid one bit
finer than the fp16 grid of its larger operand; tiles then add into a float32 accumulator.

Exact emulation costs a few passes per product, so the route is chosen per output row by
that row's own work: a row of N outputs over K lanes runs the lane model when N * K is at
most `tile_emulation_max_products`, and the fast route otherwise. The choice never looks at
the batch or at the number of rows, so a row's bits do not depend on what it is batched
with (the engine's measured batch invariance, guide ch. 3 "Determinism"), and a dot product
(N = 1) takes the same route as `mul` + `reduce_sum`, which always use the lane model.

The fast route runs float32 BLAS on the fp16 operands (the products are exact in float32,
the sum is float32: the wide accumulator), then rounds to fp16 at the port. It drops the
product and in-tile roundings (docs/numerics.md quantifies the difference); outputs whose
running partial could reach the 2**15 ceiling, or whose row or column holds an infinity,
are still computed through the lane model. BLAS picks its kernels and summation order by
the matrix sizes, so a row's float32 bits change with the number of rows around it; the
fast route therefore feeds BLAS data rows in blocks of one fixed shape (`ROW_BLOCK` rows,
zero-padded), so every row goes through the same call whatever the batch. A one-time check
confirms that this BLAS computes every row of such a block alike; if it does not, the fast
route sums in float64 instead (order-independent to about K * 2**-53, and about twice the
cost).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import _compiled_mac, compiled, fp16
from .fp16 import F32, flush_subnormals, nan_to_zero, round_fp16, saturate
from .profiles import NumericsProfile

_U32 = np.uint32
_CHUNK = 1 << 18        # products per emulation chunk: bounds the working memory and keeps each
                        # chunk's ~20 passes in cache (1 MiB of float32: 1.8x faster than 1 << 21)
ROW_BLOCK = 64          # data rows per BLAS call on the fast route (a multiple of OpenBLAS's sgemm row unrolls; checked at first use)


def _quantize(v: np.ndarray, m: np.ndarray, guard: int) -> np.ndarray:
    """Round v half to even onto the fp16 grid of magnitude m refined by `guard` bits.

    The grid step is 2**q, q = max(E, -14) - 10 - guard for m = 1.x * 2**E; adding and then
    subtracting C = 1.5 * 2**(q + 23), whose float32 spacing is exactly 2**q, rounds v there
    half to even (|v| <= 2m stays far below 2**(q + 22)). C is built from m's exponent bits,
    three times faster than frexp/ldexp and bit-identical to them (tested on 2M random fp16
    sums, zeros, subnormals and infinities included); the sign restores -0."""
    c = np.right_shift(np.ascontiguousarray(m, dtype=F32).view(_U32), _U32(23))
    np.clip(c, _U32(113), _U32(200), out=c)       # the fp16 subnormal floor; inf/NaN keep a finite C
    c += _U32(13 - guard)                         # biased exponent of C: q + 23 + 127
    c <<= _U32(23)
    c |= _U32(0x400000)
    c = c.view(F32)
    r = v + c
    r -= c
    return np.copysign(r, v, out=r)


def tile_sums(lanes: np.ndarray, p: NumericsProfile, ceiling: float | None = None,
              fp16_lanes: bool = False) -> np.ndarray:
    """lanes [..., K] -> per-tile values [..., ceil(K / L)] after the in-tile stage. With a
    ceiling, an in-tile partial reaching it saturates too (an interior partial, ch. 3).
    `fp16_lanes`: the caller guarantees every lane is on the fp16 grid (rounded products)."""
    n = p.mac_tile_lanes
    k = lanes.shape[-1]
    if k % n:
        pad = [(0, 0)] * (lanes.ndim - 1) + [(0, n - k % n)]
        lanes = np.pad(lanes, pad)
    t = lanes.reshape(lanes.shape[:-1] + (-1, n))
    # Checks each partial needs only when some lane could trigger them, decided once: finite
    # lanes never make an in-tile NaN, and tiles whose lanes are all below ceiling / L (with
    # a margin for the in-tile rounding) never saturate.
    hi, lo = (float(lanes.max()), float(lanes.min())) if lanes.size else (0.0, 0.0)
    check_nan = p.indeterminate_to_zero and not (math.isfinite(hi) and math.isfinite(lo))
    if ceiling is not None and n * max(hi, -lo) * 1.01 < ceiling:
        ceiling = None
    s = t[..., 0]
    if not (fp16_lanes and p.mac_tile_guard_bits >= 0 and math.isfinite(hi) and math.isfinite(lo)):
        # A finite fp16 value already lies on its own grid refined by guard bits: quantizing
        # the first lane is the identity there (v + C and v + C - C are exact), so skip it.
        s = _quantize(s, np.abs(s), p.mac_tile_guard_bits)
    for i in range(1, n):
        lane = t[..., i]
        s = _quantize(s + lane, np.maximum(np.abs(s), np.abs(lane)), p.mac_tile_guard_bits)
        if check_nan:
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
    acc = None
    for i in range(tiles.shape[-1]):       # infinities present: apply inf - inf = +0 per step
        # From the first tile as the cumsum above does (not +0 + tile: a row of -0 tiles keeps -0),
        # so that a row's bits do not depend on an infinity elsewhere in the chunk.
        acc = tiles[..., 0] if acc is None else acc + tiles[..., i]
        if p.indeterminate_to_zero:
            acc = nan_to_zero(acc)
        if ceiling is not None:
            acc = saturate(acc, ceiling)
    return np.zeros(tiles.shape[:-1], F32) if acc is None else acc


def reduce_lanes(lanes: np.ndarray, p: NumericsProfile, ceiling: float | None = None) -> np.ndarray:
    """Wide (unrounded) sum over the last axis: exact float32 sum, or the lane/tile model."""
    lanes = np.asarray(lanes, F32)
    if p.exact or not p.mac_tile_lanes:
        return np.sum(lanes, axis=-1, dtype=F32)
    if lanes.size == 0:                    # no lanes (a zero sum) or no rows
        return np.zeros(lanes.shape[:-1], F32)
    jit = _jit(p)
    if jit is not None:
        rows = lanes.reshape(-1, lanes.shape[-1])
        cols = np.ascontiguousarray(rows.T)                              # vectorised across rows
        # (up to one block of rows, _blocks's layout is the transpose itself)
        blocks = cols[None] if rows.shape[0] <= compiled.BLOCK else _blocks(cols[None])[0]
        out = np.empty(blocks.shape[0] * blocks.shape[2], F32)
        four = _compiled_mac.kernel() if p.mac_tile_lanes == 4 and ceiling is None else None
        if four is not None and _plain_lanes(four, cols):
            # The same bits with the tile in registers (_compiled_mac._sums): finite lanes
            # within 65504, where no NaN, ceiling or exponent clamp can act.
            four.lane_sums4(blocks, out, p.mac_tile_guard_bits, p.mac_flush_subnormals)
        else:
            jit.lane_sums(blocks, out, p.mac_tile_lanes, p.mac_tile_guard_bits, p.mac_flush_subnormals,
                          p.indeterminate_to_zero, _ceil(ceiling))
        return out[:rows.shape[0]].reshape(lanes.shape[:-1])
    if p.mac_flush_subnormals:
        lanes = flush_subnormals(lanes)
    return accumulate(tile_sums(lanes, p, ceiling), p, ceiling)


def _plain_lanes(four, a: np.ndarray) -> bool:
    """Whether every lane is finite and at most 65504 in magnitude (one pass)."""
    finite, peak, _ = four.operand_stats(a)
    return finite and peak <= 65504.0


def _jit(p: NumericsProfile):
    """The compiled kernels when they are wanted and model this profile's MAC exactly as the
    numpy code does (tile shapes and guard bits the numpy route's shortcuts are proven for)."""
    if not (1 <= p.mac_tile_lanes <= 16 and 0 <= p.mac_tile_guard_bits <= 10):
        return None
    return compiled.kernels()


def _ceil(limit: float | None) -> np.float32:
    """The ceiling as the kernels compare it: float32, as numpy casts a Python float against a
    float32 array; infinity when there is none (|x| >= inf only holds for infinities, which
    it leaves as they are)."""
    return _NO_CEILING if limit is None else F32(limit)


_NO_CEILING = F32(np.inf)


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
    """A MAC operand with what the profile needs from it, computed once: finiteness, its peak
    magnitude, per-row/column magnitude bounds along the reduction axis, and the array the
    fast route multiplies (M1-flushed). Kernels cache one for a constant weight (const=True)
    so runs skip those passes."""

    __slots__ = ("array", "finite", "peak", "k_axis", "const", "flush", "_absmax", "_abssum", "_fast", "_t", "_b",
                 "_copy", "_h")

    def __init__(self, a: np.ndarray, p: NumericsProfile, k_axis: int, const: bool = False):
        self.array = np.asarray(a, dtype=F32)
        self.flush = p.mac_flush_subnormals and not p.exact
        self._absmax = self._abssum = self._fast = self._t = self._b = None
        self._copy = self._h = None
        a = _dense(self.array, self.flush)
        jit = _compiled_mac.kernel() if a is not None else None
        if jit is not None:
            # The C-contiguous copy _dense made (of a transposed operand, say), for fast()'s
            # flush, which the compiled route makes C-contiguous too: the same values and
            # layout, without a second strided copy of the array.
            if a is not self.array and a.shape == self.array.shape:
                self._copy = a
            # One pass instead of max, min and the M1 flush's own; without fp16 subnormals the
            # flush is a C-contiguous copy (what compiled.flush_subnormals returns: the same
            # layout for BLAS), or the array itself when it already is one.
            self.finite, self.peak, sub = jit.operand_stats(a)
            if self.flush and not sub:
                self._fast = a               # with the flush, _dense made it a C-contiguous copy of the array
        else:
            hi, lo = (float(self.array.max()), float(self.array.min())) if self.array.size else (0.0, 0.0)
            self.finite = math.isfinite(hi) and math.isfinite(lo)
            self.peak = max(abs(hi), abs(lo))
        self.k_axis, self.const = k_axis, const

    def transposed_blocks(self, layout) -> np.ndarray:
        """layout(the array with its last two axes swapped), kept for a constant operand: the
        compiled lane model reads a weight matrix by columns in matrix-vector products."""
        t = self._t if self._t is not None else layout(np.swapaxes(self.array, -1, -2))
        if self.const:
            self._t = t
        return t

    def blocks(self, layout) -> np.ndarray:
        """layout(the array), kept for a constant operand: a weight matrix in the compiled lane
        model's block layout (re-laying a large one out per call, e.g. the logits matrix of a
        decode step, cost as much as the products themselves)."""
        b = self._b if self._b is not None else layout(self.array)
        if self.const:
            self._b = b
        return b

    def lane_layout(self, layout, transposed: bool, half: bool) -> np.ndarray:
        """The compiled kernel's lane layout of this operand (`layout` of the array, or of its
        transpose): transposed_blocks / blocks. With `half`, for a constant operand whose values
        are all fp16 values, its exact fp16 bits instead (uint16, half the bytes to stream), kept
        in place of the float32 layout, which is rebuilt only if a call needs it again."""
        if half and self.const:
            if self._h is None or self._h[0] != transposed:
                cached = self._t if transposed else self._b
                f32 = cached if cached is not None else layout(np.swapaxes(self.array, -1, -2) if transposed
                                                               else self.array)
                bits = _compiled_mac.half_bits(f32)
                self._h = (transposed, bits)
                kept = f32 if bits is None else None       # the bits stand for the float32 copy
                if transposed:
                    self._t = kept
                else:
                    self._b = kept
            if self._h[1] is not None:
                return self._h[1]
        return self.transposed_blocks(layout) if transposed else self.blocks(layout)

    def fast(self) -> np.ndarray:
        """The operand as the fast route multiplies it (kept for a constant operand). With the
        M1 flush it is flushed here, which stands in for flushing the subnormal products the
        fast route cannot see (the lane model flushes the products themselves)."""
        if self._fast is None:
            source = self.array if self._copy is None else self._copy
            self._fast = flush_subnormals(source) if self.flush else self.array
        return self._fast

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(max |a|, sum |a|) along the reduction axis."""
        if self._absmax is None:
            mag = np.abs(self.array)
            self._absmax, self._abssum = mag.max(self.k_axis), mag.sum(self.k_axis, dtype=F32)
        return self._absmax, self._abssum


def _dense(a: np.ndarray, copy: bool) -> np.ndarray | None:
    """a's elements as a C-contiguous array for order-blind statistics, or None (empty, or
    strided otherwise and not worth a copy): a itself, a transposed matrix as it lies in
    memory, or (copy) a C-contiguous copy."""
    if not a.size:
        return None
    if a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    if copy:
        return _contiguous(a)
    t = np.swapaxes(a, -1, -2) if a.ndim >= 2 else a
    return t if t.flags.c_contiguous else None


_TRANSPOSE_ELEMENTS = 8192   # a transposed copy's block: rows x columns (measured: 2-3x faster from 16k elements)


def _transpose_columns(rows: int) -> int:
    """Columns per block of a transposed copy: about _TRANSPOSE_ELEMENTS per block, a power of
    two within 16 .. 128 (measured on [64 .. 512, 64 .. 512] matrices: 64 columns for 128
    rows, 16 for 512, 128 for 64; one fixed 32 was up to 1.5x slower on the wide shapes)."""
    cols = 1 << max(0, round(math.log2(_TRANSPOSE_ELEMENTS / max(1, rows))))
    return min(128, max(16, cols))


def _contiguous(a: np.ndarray) -> np.ndarray:
    """np.ascontiguousarray(a). A large transposed matrix (a weight read as w.T in a
    backward pass) is copied in blocks of columns: numpy's one-call copy writes a whole
    destination column per source row and leaves the cache behind (2-3x slower); the values
    are copied either way."""
    if a.ndim == 2 and a.size >= 16384 and a.T.flags.c_contiguous:
        cols = _transpose_columns(a.shape[0])
        if a.shape[1] > cols:
            out = np.empty(a.shape, a.dtype)
            for c in range(0, a.shape[1], cols):
                out[:, c:c + cols] = a[:, c:c + cols]
            return out
    return np.ascontiguousarray(a)


def operand(a, p: NumericsProfile, k_axis: int) -> Operand:
    return a if isinstance(a, Operand) else Operand(a, p, k_axis)


def lane_route(k: int, n: int, p: NumericsProfile) -> bool:
    """Whether a row of n outputs over k lanes runs the lane model (by its own size only)."""
    return bool(p.mac_tile_lanes) and k > 0 and n * k <= p.tile_emulation_max_products


def matmul(x, w, p: NumericsProfile, ceiling: bool = True) -> np.ndarray:
    """x [..., M, K] @ w [..., K, N] through the MAC; float32 (fp16 values unless exact).
    Either operand may be an Operand (a cached, prepared constant)."""
    if p.exact:
        return np.matmul(getattr(x, "array", x), getattr(w, "array", w), dtype=F32)
    limit = p.mac_output_ceiling if ceiling else None
    xo, wo = operand(x, p, -1), operand(w, p, -2)
    x, w = xo.array, wo.array
    batch = _batch_shape(x.shape[:-2], w.shape[:-2])
    k, n = x.shape[-1], w.shape[-1]
    if not (x.shape[-2] and n and math.prod(batch)):      # an empty result: nothing to route
        return np.zeros(batch + (x.shape[-2], n), F32)
    if lane_route(k, n, p):
        jit = _jit(p)
        if jit is None:
            return port_output(_emulated(x, w, batch, p, limit), p, limit)
        return _compiled_lanes(jit, xo, wo, batch, p, limit)
    hot = None
    if not (xo.finite and wo.finite):
        # Only outputs whose row or column holds an infinity need the lane model's inf rules;
        # the rest come from the operands with the infinities zeroed.
        bad_x, bad_w = ~np.isfinite(x), ~np.isfinite(w)
        xo, wo = Operand(np.where(bad_x, F32(0.0), x), p, -1), Operand(np.where(bad_w, F32(0.0), w), p, -2)
        hot = bad_x.any(-1)[..., :, None] | bad_w.any(-2)[..., None, :]
    y = wide_matmul(xo, wo)
    if hot is not None:
        hot = np.broadcast_to(hot, y.shape)
    if limit is not None and k and p.mac_tile_lanes:
        near = _ceiling_risk(xo, wo, y.shape, limit)
        hot = near if hot is None else (hot if near is None else hot | near)
    if hot is not None and p.mac_tile_lanes:
        y = _emulate_entries(x, w, y, batch, np.nonzero(hot), p, limit)
    return port_output(y, p, limit)


def _batch_shape(bx: tuple, bw: tuple) -> tuple:
    """np.broadcast_shapes(bx, bw) without its cost (a few microseconds, per matmul) in the
    usual cases: equal batch axes, or one operand without any."""
    if bx == bw or not bw:
        return bx
    return bw if not bx else np.broadcast_shapes(bx, bw)


def wide_matmul(xo: Operand, wo: Operand) -> np.ndarray:
    """The fast route's accumulator, float32, with each row's bits independent of the other
    rows: data rows go through BLAS in blocks of one fixed shape; a constant left operand
    (a conv weight: its rows are fixed by the model, the batch is a leading axis that BLAS
    sees call by call) goes through whole."""
    x, w = xo.fast(), wo.fast()
    if not _blocks_are_row_stable():
        return np.matmul(x.astype(np.float64), w.astype(np.float64)).astype(F32)
    if xo.const:
        return np.matmul(x, w)
    return _row_blocked(x, w)


def _row_blocked(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [..., M, K] @ w [..., K, N] as BLAS calls of the one shape [ROW_BLOCK, K] @ [K, N].
    A few rows (a decode step's query against the cache) take the compiled fused
    multiply-add chain instead where it gives this BLAS's bits for the shape (_chain_is_blas):
    padded to ROW_BLOCK, one row cost BLAS 64 rows of work."""
    m, k = x.shape[-2:]
    # (empty operands stay on BLAS; so does a w of another layout, which the check did not see)
    if 0 < m <= _CHAIN_ROWS and k and w.shape[-1] and w.flags.c_contiguous:
        four = _compiled_mac.kernel()          # (None while the compiled kernels are off)
        if four is not None and _chain_is_blas(k, w.shape[-1]):
            return _chained(four, x, w)
    if m == ROW_BLOCK and x.ndim == 2 and w.ndim == 2:
        return np.matmul(x, w)          # one block: numpy's matmul loop makes the same one BLAS call
    blocks = -(-m // ROW_BLOCK)
    if blocks * ROW_BLOCK != m:
        pad = np.zeros(x.shape[:-2] + (blocks * ROW_BLOCK - m, k), F32)
        x = np.concatenate([x, pad], axis=-2)
    y = np.matmul(x.reshape(x.shape[:-2] + (blocks, ROW_BLOCK, k)), w[..., None, :, :])
    return y.reshape(y.shape[:-3] + (blocks * ROW_BLOCK, y.shape[-1]))[..., :m, :]


_CHAIN_ROWS = 8        # rows up to which the chain beats a padded BLAS block (measured: 1 row, K 48, N 256: 10 vs 60 us)


def _chained(four, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    batch = _batch_shape(x.shape[:-2], w.shape[:-2])
    out = np.empty((math.prod(batch),) + (x.shape[-2], w.shape[-1]), F32)
    four.chain_rows(_stacked(x), _stacked(w), _batch_index(x, batch), _batch_index(w, batch), out)
    return out.reshape(batch + out.shape[1:])


@lru_cache(maxsize=None)
def _chain_is_blas(k: int, n: int) -> bool:
    """Whether the compiled chain gives every bit _row_blocked's BLAS block gives for [K, N]
    (checked once per shape): float32 operands that are not fp16 values (a plain multiply
    and add would round twice where BLAS fuses), a row of -0 products (BLAS starting from +0
    or from the first product differ in the sign of such a zero), on a full ROW_BLOCK block.
    A BLAS that splits K into blocks (past a few hundred lanes here) or sums in another order
    fails it, and keeps the padded block."""
    four = _compiled_mac.kernel()
    if four is None or not _blocks_are_row_stable():
        return False
    rng = np.random.default_rng(k * 7919 + n)
    x = rng.standard_normal((ROW_BLOCK, k)).astype(F32)
    w = rng.standard_normal((k, n)).astype(F32)
    x[0] = -np.abs(x[0]) - F32(1.0)
    w[:, 0] = 0.0                                   # row 0, column 0: every product is -0
    want = np.matmul(x.reshape(1, ROW_BLOCK, k), w[None])[0]
    got = np.empty((1, ROW_BLOCK, n), F32)
    zero = np.zeros(1, np.int64)
    four.chain_rows(x[None], w[None], zero, zero, got)
    return bool(np.array_equal(want.view(np.uint32), got[0].view(np.uint32)))


@lru_cache(maxsize=None)
def _blocks_are_row_stable() -> bool:
    """Whether this BLAS gives a row the same float32 bits at every position of a ROW_BLOCK
    block (true of OpenBLAS on x86: its row unroll divides ROW_BLOCK), checked once on
    awkward shapes (odd K and N, K past one cache block)."""
    rng = np.random.default_rng(0)
    for k, n in ((37, 7), (513, 33)):
        w = rng.standard_normal((k, n)).astype(np.float16).astype(F32)
        row = rng.standard_normal(k).astype(np.float16).astype(F32)
        x = rng.standard_normal((ROW_BLOCK, ROW_BLOCK, k)).astype(np.float16).astype(F32)
        x[np.arange(ROW_BLOCK), np.arange(ROW_BLOCK)] = row      # block i holds the row at i
        y = np.matmul(x, w)[np.arange(ROW_BLOCK), np.arange(ROW_BLOCK)]
        if not (y == y[0]).all():
            return False
    return True


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
        return accumulate(tile_sums(lanes, p, limit, p.mac_round_products), p, limit).reshape(batch + (m, n))
    out = np.empty((xb.shape[0], m, n), F32)
    rows = max(1, _CHUNK // max(1, n * k))
    for b in range(xb.shape[0]):
        for r in range(0, m, rows):
            lanes = _products(xb[b, r:r + rows, None, :], wt[b, None, :, :], p)
            out[b, r:r + rows] = accumulate(tile_sums(lanes, p, limit, p.mac_round_products), p, limit)
    return out.reshape(batch + (m, n))


def _port_top(limit: float | None) -> int:
    """The largest |bits| the output port keeps (fp16.round_fp16's, for the four-lane kernel)."""
    return fp16._MAX_INT if limit is None else fp16._top(limit)


def _compiled_lanes(jit, xo: Operand, wo: Operand, batch, p, limit) -> np.ndarray:
    """_emulated, then the output port, through the compiled kernel, which runs each tile
    stage across a block of outputs that share one operand row: across the columns of w, or,
    when w has few columns (a matrix-vector product), across the rows of x through its cached
    transpose. Plain operands in four-lane tiles take _compiled_mac.py's kernel (the same
    bits, about 2.5x faster), which also applies the port."""
    x, w = xo.array, wo.array
    m, n = x.shape[-2], w.shape[-1]
    plain = _plain(xo, wo, p, limit)
    four = _compiled_mac.kernel() if plain and p.mac_tile_lanes == 4 else None
    fast = four is not None and four.HARDWARE_FP16
    # the four-lane kernel reads a large constant's layout as exact fp16 bits where it can: half the
    # bytes streamed (a weight matrix per decode product), the same values
    if n >= _VECTOR_MIN or n >= m:
        vec = wo.lane_layout(lambda a: _blocks(_stacked(a)), False, fast and w.size >= _HALF_MIN)
        scal, swap, rows, cols = _stacked(x), False, m, n
        sidx, vidx = _batch_index(x, batch), _batch_index(w, batch)
    else:
        scal = _stacked(np.swapaxes(w, -1, -2))                          # [Bw, N, K]
        vec = xo.lane_layout(lambda t: _blocks(_stacked(t)), True, fast and x.size >= _HALF_MIN)   # [Bx, blocks, K, W]
        swap, rows, cols = True, n, m                                   # the products stay x * w
        sidx, vidx = _batch_index(w, batch), _batch_index(x, batch)
    out = np.empty((sidx.shape[0], rows, vec.shape[1] * vec.shape[3]), F32)
    if fast:                                            # the same bits in vector registers, ported there
        four.products4(scal, vec, sidx, vidx, out, p.mac_tile_guard_bits, p.mac_round_products,
                       p.mac_flush_subnormals, _ceil(limit), _port_top(limit))
    else:
        jit.lane_products(scal, vec, sidx, vidx, out, swap, p.mac_tile_lanes, p.mac_tile_guard_bits,
                          p.mac_round_products, p.mac_flush_subnormals, p.indeterminate_to_zero, _ceil(limit), plain)
        out = port_output(out, p, limit)
    out = out[..., :cols]
    return (out if not swap else np.swapaxes(out, -1, -2)).reshape(batch + (m, n))


def _plain(xo: Operand, wo: Operand, p: NumericsProfile, limit: float | None) -> bool:
    """Whether the lane kernel may leave out its overflow, NaN and in-tile ceiling selects:
    finite operands, every product within 65504 (|x| * |w| <= peak * peak, exact in float64
    for float32 operands), and every in-tile partial below the ceiling. A partial of L lanes
    is at most L times the largest product, times (1 + 2**-11) per in-tile rounding and the
    product's own rounding (under 1.01 for L <= 16); 1.02 leaves room to spare."""
    if not (xo.finite and wo.finite):
        return False
    top = xo.peak * wo.peak
    return top <= 65504.0 and (limit is None or p.mac_tile_lanes * top * 1.02 < limit)


_VECTOR_MIN = 16        # columns of w worth vectorising across (else the rows of x, if more)
_HALF_MIN = 1 << 16     # lanes from which a constant layout is read as fp16 bits (below, it stays in cache)


def _stacked(a: np.ndarray) -> np.ndarray:
    """a [..., R, C] as a C-contiguous [B, R, C] over its own batch axes."""
    return np.ascontiguousarray(a).reshape((-1,) + a.shape[-2:])


def _batch_index(a: np.ndarray, batch) -> np.ndarray:
    """For each entry of the broadcast batch (flattened), the index into a's own flattened
    batch: broadcasting without copying the operand. Shared per shape pair (small loops call
    the same tiny matmul thousands of times); nothing writes into it."""
    return _batch_index_for(a.shape[:-2], tuple(batch))


@lru_cache(maxsize=256)
def _batch_index_for(own: tuple, batch: tuple) -> np.ndarray:
    idx = np.arange(math.prod(own), dtype=np.int64).reshape(own)
    return np.ascontiguousarray(np.broadcast_to(idx, batch)).reshape(-1)


_BLOCK_GRANULE = 16     # block widths are multiples of a 512-bit vector of float32


def _blocks(a: np.ndarray) -> np.ndarray:
    """[B, K, V] -> [B, N, K, W]: the compiled kernel's operand layout (a block of W outputs reads
    one contiguous stretch). N = ceil(V / compiled.BLOCK) blocks share the V outputs evenly, W
    rounded up to the vector granule, the last block zero-padded: 288 outputs are two blocks of
    144, not 256 + 32 in two of 256 (every output is computed on its own, so the split changes
    no bit, only the padding the kernel streams and computes)."""
    nb, k, v = a.shape
    if v <= compiled.BLOCK:
        return a.reshape(nb, 1, k, v)
    blocks = -(-v // compiled.BLOCK)
    width = min(compiled.BLOCK, -(-(-(-v // blocks)) // _BLOCK_GRANULE) * _BLOCK_GRANULE)
    padded = np.zeros((nb, k, blocks * width), F32)
    padded[..., :v] = a
    return np.ascontiguousarray(padded.reshape(nb, k, blocks, width).transpose(0, 2, 1, 3))


def _ceiling_risk(xo: Operand, wo: Operand, shape, limit):
    """Outputs whose running partial might reach the ceiling (a bool mask), or None. Every
    partial of (m, n) is at most sum_k |x_mk| |w_kn|, which is bounded by
    max_k |x_mk| * sum_k |w_kn| and by sum_k |x_mk| * max_k |w_kn|."""
    # Every partial is at most K * peak_x * peak_w; the float32 line sums below exceed their
    # exact values by under K * 2**-24 relatively, so under 1.01 times that bound (K <= 2**17)
    # the first check below passes too: skip the line sums.
    k = xo.array.shape[-1]
    if k <= 1 << 17 and xo.peak * wo.peak * k * 1.01 < limit:
        return None
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
    jit = _jit(p)
    step = max(1, _CHUNK // max(1, k))
    for s in range(0, hot[0].size, step):
        part = tuple(i[s:s + step] for i in lead)
        rows, cols = hot[-2][s:s + step], hot[-1][s:s + step]
        xr, wc = xb[part + (rows,)], wt[part + (cols,)]                  # [F, K] each
        if jit is not None:
            acc = np.empty(xr.shape[0], F32)
            jit.lane_pairs(np.ascontiguousarray(xr), np.ascontiguousarray(wc), acc, p.mac_tile_lanes,
                           p.mac_tile_guard_bits, p.mac_round_products, p.mac_flush_subnormals,
                           p.indeterminate_to_zero, _ceil(limit))
        else:
            acc = accumulate(tile_sums(_products(xr, wc, p), p, limit, p.mac_round_products), p, limit)
        y[part + (rows, cols)] = acc
    return y
