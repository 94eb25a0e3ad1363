"""The MAC lane model for four-lane tiles on plain operands, one register-resident pass per
tile (numba, the optional `fast` extra): mac.py's lane route for the attention-shaped
matmuls of a transformer (the products of Q K^T and of the probabilities with V).

The same arithmetic as compiled.lane_products on its `plain` path (finite operands, every
product within 65504, every in-tile partial below the ceiling: mac._plain decides), written
so that it runs in vector registers:
- a tile's four lanes are one loop body over the W outputs of a block (the general kernel
  stores each partial between lanes), and the first tile writes the accumulator directly;
- the fp16 rounding of a product is the hardware conversion float32 -> fp16 -> float32 (one
  instruction pair with F16C or on arm64, round half to even with overflow to infinity:
  compiled._round16's result for every finite float32 within the plain bound; the M1 flush
  of a product whose 11-bit rounding is nonzero and below 2**-14 to +0 is a select on the
  product's magnitude);
- the in-tile grid constant 1.5 * 2**(q + 23) comes from the larger operand's exponent bits
  (float and/max/multiply instead of 64-bit integer shifts and clamps: the same value, as
  the clamp at the fp16 subnormal floor is a max with 2**-14 and the upper clamp cannot be
  reached under the plain bound).
Used only while sim/compiled.py's kernels are on (the same switch), and only where the host
converts to fp16 in hardware (x86-64 with F16C, arm64); elsewhere the general kernel runs.
tests/test_sim_compiled_mac.py checks it against the numpy route and compiled._round16.

Also here: one pass for a MAC operand's max, min and subnormal check (mac.Operand).
"""
from __future__ import annotations

import struct
import sys

import numpy as np

from . import compiled

F32 = np.float32

_TINY_BITS = 0x1000              # |bits| at or below which the 11-bit rounding of a float32 is 0
_FLUSH_BITS = 0x387FF000         # |bits| from which that rounding reaches 2**-14 (the smallest normal fp16)
_TINY = np.array([_TINY_BITS], np.uint32).view(F32)[0]
_FLUSH_LIM = np.array([_FLUSH_BITS], np.uint32).view(F32)[0]
_FLOOR = F32(2.0 ** -14)
_ZERO, _INF = F32(0.0), F32(np.inf)
_SUB_BITS, _INF_BITS = np.uint32(0x387FFFFF), np.uint32(0x7F800000)     # |bits| below 2**-14; of inf
HARDWARE_FP16 = False            # set when compiled: whether products4 may run on this host


def available() -> bool:
    """Whether the host converts float32 to fp16 in hardware (compiled.hardware_fp16)."""
    return compiled.hardware_fp16()


# --- kernels (plain Python here; _compile() swaps in the numba versions) ------------------

def _half(x):                     # float32 -> fp16 -> float32 (a conversion instruction pair once compiled)
    return F32(np.float16(x))


def _value(x):                    # an operand lane: float32 as it is, fp16 bits (uint16) widened exactly
    if isinstance(x, (np.uint16, int)) and not isinstance(x, (float, np.floating)):
        return F32(np.array([x], np.uint16).view(np.float16)[0])
    return x


def _copysign(r, v):
    return F32(np.copysign(r, v))


def _product(a, b, round_products, flush):
    """compiled._plain_product: with round_products the hardware fp16 rounding, which equals
    compiled._round16 on the finite products within 65504 that plain operands give; the M1
    flush zeroes a product whose 11-bit rounding is nonzero and below 2**-14."""
    p = a * b
    m = abs(p)
    if round_products:
        return _ZERO if (flush and m > _TINY and m < _FLUSH_LIM) else _half(p)
    return _ZERO if (flush and m > _ZERO and m < _FLOOR) else p


def _exp_bits(x):                 # x's exponent field in place (sign and mantissa cleared), as uint32
    return np.uint32(np.array([x], F32).view(np.uint32)[0] & 0x7F800000)


def _from_bits(u):                # the float32 with these bits
    return np.array([u], np.uint32).view(F32)[0]


_FLOOR_BITS = np.uint32(0x38800000)      # 2**-14's bits: the fp16 subnormal grid's floor
_ONE_BITS = np.uint32(0x3F800000)


def _quantize(v, a, b, scale):
    """compiled._quantize1(v, exponent field of max(|a|, |b|), guard) with scale = 1.5 *
    2**(13 - guard): the constant 1.5 * 2**(q + 23) built in integer registers from the larger
    exponent field of a and b (the field is monotone in magnitude, and 2**E * scale only adds
    scale's exponent: no abs, float max or multiply), floored at the fp16 subnormal grid (the
    upper clamp at exponent 200 - 127 cannot be reached under the plain bound)."""
    e = max(max(_exp_bits(a), _exp_bits(b)), _FLOOR_BITS)
    c = _from_bits(np.uint32(e + (_abs_bits(scale) - _ONE_BITS)))
    return _copysign((v + c) - c, v)


def _tile(p0, p1, p2, p3, scale, grid_lanes):
    """The in-tile stage of four lanes (compiled._plain_tile_add from -0). The first lane alone
    is already on its grid when it is an fp16-rounded product (grid_lanes)."""
    s = p0 if grid_lanes else _quantize(p0, p0, p0, scale)
    s = _quantize(s + p1, s, p1, scale)
    s = _quantize(s + p2, s, p2, scale)
    return _quantize(s + p3, s, p3, scale)


def _saturate(s, ceil):
    return _copysign(_INF, s) if abs(s) >= ceil else s


def _port(v, top, flush):
    """mac.port_output of one accumulator value that is finite or an infinity (no NaN on plain
    operands): compiled._round16 with the largest kept magnitude `top` (as a float32), by the
    hardware conversion as in _product."""
    m = abs(v)
    if flush and m > _TINY and m < _FLUSH_LIM:
        return _ZERO
    h = _half(v)
    return _copysign(_INF, v) if abs(h) > top else h


def _prefetch(vec, vb, i, r, c):  # a hint to fetch vec[vb, i, r, c]'s cache line (an intrinsic once compiled)
    return None


# Layout rows fetched ahead of the tile being computed. A decode step streams every weight
# matrix once from L3 or DRAM, and the hardware prefetcher alone left the kernel waiting: in a
# Stories15M decode the 288x768 products took 115 us, 77 us with hints 32 rows ahead (about
# 20 KB at W = 144), the 32000-row classifier 4.6 -> 2.8 ms (16 rows: nearly as fast; 64: slower).
PREFETCH_ROWS = 32


def _prefetch_tile(vec, vb, i, r, width):
    """Hint the four layout rows r .. r + 3 of block i into the cache, one hint per 64-byte
    line (none past the block's last row). Hints change no value."""
    if r + 3 < vec.shape[2]:
        step = 64 // vec.itemsize
        for q in range(4):
            for c in range(0, width, step):
                _prefetch(vec, vb, i, r + q, c)


def _tile_of(a0, a1, a2, a3, vec, vb, i, t0, v, scale, rp, fl):
    """The tile value of lanes t0 .. t0 + 3 for output v of block i (operand row a0 .. a3); vec
    holds float32 lanes or their exact fp16 bits (half the bytes to stream)."""
    return _tile(_product(a0, _value(vec[vb, i, t0, v]), rp, fl), _product(a1, _value(vec[vb, i, t0 + 1, v]), rp, fl),
                 _product(a2, _value(vec[vb, i, t0 + 2, v]), rp, fl),
                 _product(a3, _value(vec[vb, i, t0 + 3, v]), rp, fl), scale, rp)


def _run(scal, vec, sidx, vidx, out, scale, ceil, top, round_products, flush):
    """compiled.lane_products(scal, vec, sidx, vidx, out, swap, 4, guard, round_products, flush,
    itz, ceil, True) with scale = 1.5 * 2**(13 - guard), then the output port (mac.port_output
    with the largest kept magnitude top) on each block while it is in cache: the swap and the
    NaN rule cannot matter on plain operands. Inlined into one kernel per flag pair, so that
    the flags are constants in the loop body (as runtime flags they kept LLVM from
    streamlining it: 1.6x slower). Plain indexing, no row views (each would cost a
    reference-count call); the operand row's four values are read before each loop over
    the block (the loop writes `out`, so the compiler could not hoist them itself)."""
    nb = sidx.shape[0]
    ns, k = scal.shape[1], scal.shape[2]
    nblk, width = vec.shape[1], vec.shape[3]
    full = k - k % 4
    rp, fl = round_products, flush
    for b in range(nb):
        sb, vb = sidx[b], vidx[b]
        for si in range(ns):
            for i in range(nblk):
                o = i * width
                for t0 in range(0, full, 4):
                    _prefetch_tile(vec, vb, i, t0 + PREFETCH_ROWS, width)
                    a0, a1, a2, a3 = scal[sb, si, t0], scal[sb, si, t0 + 1], scal[sb, si, t0 + 2], scal[sb, si, t0 + 3]
                    if t0 == 0:
                        for v in range(width):
                            out[b, si, o + v] = _saturate(_tile_of(a0, a1, a2, a3, vec, vb, i, t0, v, scale, rp, fl),
                                                          ceil)
                    else:
                        for v in range(width):
                            s = _tile_of(a0, a1, a2, a3, vec, vb, i, t0, v, scale, rp, fl)
                            out[b, si, o + v] = _saturate(out[b, si, o + v] + s, ceil)
                if full < k:
                    # The last tile's missing lanes are +0 products (mac.tile_sums pads with zeros).
                    n = k - full
                    k1, k2 = min(full + 1, k - 1), min(full + 2, k - 1)
                    a0, a1, a2 = scal[sb, si, full], scal[sb, si, k1], scal[sb, si, k2]
                    for v in range(width):
                        p1 = _product(a1, _value(vec[vb, i, k1, v]), rp, fl) if n > 1 else _ZERO
                        p2 = _product(a2, _value(vec[vb, i, k2, v]), rp, fl) if n > 2 else _ZERO
                        s = _tile(_product(a0, _value(vec[vb, i, full, v]), rp, fl), p1, p2, _ZERO, scale, rp)
                        out[b, si, o + v] = _saturate(s if full == 0 else out[b, si, o + v] + s, ceil)
                for v in range(width):
                    out[b, si, o + v] = _port(out[b, si, o + v], top, fl)


def _rounded_flushed(scal, vec, sidx, vidx, out, scale, ceil, top):
    _run(scal, vec, sidx, vidx, out, scale, ceil, top, True, True)


def _rounded(scal, vec, sidx, vidx, out, scale, ceil, top):
    _run(scal, vec, sidx, vidx, out, scale, ceil, top, True, False)


def _raw_flushed(scal, vec, sidx, vidx, out, scale, ceil, top):
    _run(scal, vec, sidx, vidx, out, scale, ceil, top, False, True)


def _raw(scal, vec, sidx, vidx, out, scale, ceil, top):
    _run(scal, vec, sidx, vidx, out, scale, ceil, top, False, False)


def _variants() -> dict:
    """The kernel for each (round_products, flush); each takes vec as float32 lanes or as their
    fp16 bits (uint16), compiled for both."""
    return {(True, True): _rounded_flushed, (True, False): _rounded, (False, True): _raw_flushed,
            (False, False): _raw}


_KERNELS: dict = {}     # _variants() once compiled


def _lane(x, flush):
    """compiled.lane_sums's lane of a finite value: the M1 flush of a nonzero below 2**-14."""
    m = abs(x)
    return _ZERO if (flush and m > _ZERO and m < _FLOOR) else x


def _sums(blocks, out, scale, flush):
    """compiled.lane_sums(blocks, out, 4, guard, flush, itz, inf) with scale = 1.5 * 2**(13 -
    guard) on finite lanes of magnitude at most 65504 (mac.reduce_lanes checks): no NaN can
    arise and no tile partial nears the exponent clamp, so the ceiling and NaN selects drop
    out, and each tile is one register-resident loop body over the W rows of a block, as in
    _run (-0 + the first tile is the tile; -0 + the first lane is the lane)."""
    nblk, k, width = blocks.shape
    full = k - k % 4
    for i in range(nblk):
        o = i * width
        for t0 in range(0, full, 4):
            for v in range(width):
                s = _tile(_lane(blocks[i, t0, v], flush), _lane(blocks[i, t0 + 1, v], flush),
                          _lane(blocks[i, t0 + 2, v], flush), _lane(blocks[i, t0 + 3, v], flush), scale, False)
                out[o + v] = s if t0 == 0 else out[o + v] + s
        if full < k:
            n = k - full
            k1, k2 = min(full + 1, k - 1), min(full + 2, k - 1)
            for v in range(width):
                l1 = _lane(blocks[i, k1, v], flush) if n > 1 else _ZERO
                l2 = _lane(blocks[i, k2, v], flush) if n > 2 else _ZERO
                s = _tile(_lane(blocks[i, full, v], flush), l1, l2, _ZERO, scale, False)
                out[o + v] = s if full == 0 else out[o + v] + s


def _sums_flushed(blocks, out, scale):
    _sums(blocks, out, scale, True)


def _sums_kept(blocks, out, scale):
    _sums(blocks, out, scale, False)


def lane_sums4(blocks, out, guard, flush) -> None:
    """compiled.lane_sums for four-lane tiles on plain lanes (see _sums), 0 <= guard <= 10."""
    (_sums_flushed if flush else _sums_kept)(blocks, out, _SCALES[guard])


def _fma(a, b, c):                # a * b + c rounded once: llvm.fma once compiled (only the compiled
    return F32(np.float64(a) * np.float64(b) + np.float64(c))     # chain runs; this float64 sum can round twice)


def chain_rows(x, w, xi, wi, out) -> None:
    """out[b, m, n] = sum over k of x[xi[b], m, k] * w[wi[b], k, n] (x [Bx, M, K], w [Bw, K, N],
    float32, C-contiguous) as one float32 fused multiply-add chain from +0 in k order, each
    output on its own (vectorised across n): the order a BLAS micro-kernel accumulates a
    single K block in, which mac._row_blocked checks against this host's BLAS before using it."""
    nb, m_rows, n = out.shape
    k = x.shape[2]
    for b in range(nb):
        xb, wb = xi[b], wi[b]
        for m in range(m_rows):
            for v in range(n):
                out[b, m, v] = _ZERO
            for kk in range(k):
                a = x[xb, m, kk]
                for v in range(n):
                    out[b, m, v] = _fma(a, w[wb, kk, v], out[b, m, v])


def _abs_bits(x):                 # |x|'s bits as an integer (an intrinsic once compiled)
    return np.uint32(np.array([x], F32).view(np.uint32)[0] & 0x7FFFFFFF)


def _wrap_dec(m):                 # m - 1 in uint32 arithmetic (0 wraps to 0xFFFFFFFF)
    return np.uint32((int(m) - 1) & 0xFFFFFFFF)


def _dec_u32(m):                  # _wrap_dec once compiled: the cast truncates, as uint32 wraps
    return np.uint32(m - _U32_ONE)


_U32_ZERO, _U32_ONE, _U32_TOP = np.uint32(0), np.uint32(1), np.uint32(0xFFFFFFFF)


def _operand_stats(a):
    """(largest |bits|, whether some element is a nonzero below 2**-14) of a flat float32
    array: integer reductions, which vectorise (float max/min with NaN rules do not). Both
    are unsigned 32-bit min/max (2.4x faster than mixing in 64-bit integers): |bits| - 1
    wraps a zero to the top, so its minimum is below _SUB_BITS exactly when some |bits|
    is in 1 .. _SUB_BITS."""
    top, low = _U32_ZERO, _U32_TOP
    for i in range(a.shape[0]):
        m = _abs_bits(a[i])
        top = max(top, m)
        low = min(low, _wrap_dec(m))
    return top, _U32_ONE if low < _SUB_BITS else _U32_ZERO


def operand_stats(a: np.ndarray) -> tuple[bool, float, bool]:
    """mac.Operand's (finite, peak) and whether the M1 flush would change the array, in one
    pass over a C-contiguous float32 array with elements instead of three: the peak is the
    largest magnitude, NaN when there is a NaN (numpy's max and min are NaN then)."""
    top, sub = _operand_stats(a.reshape(-1))
    if top > _INF_INT:
        return False, float("nan"), bool(sub)
    return top < _INF_INT, _FLOAT32.unpack(_UINT32.pack(top))[0], bool(sub)


_INF_INT = int(_INF_BITS)       # compared as a Python int: cheaper than against a numpy scalar
_UINT32, _FLOAT32 = struct.Struct("=I"), struct.Struct("=f")     # bits to float32, as a Python float
_SCALES = tuple(F32(1.5 * 2.0 ** (13 - g)) for g in range(11))      # products4's per-guard constant


def tile_scale(p) -> F32 | None:
    """The in-tile grid constant of profile p for the four-lane kernels (here, and the sums,
    norms and loop programs built on them), or None where they do not model p: tiles other
    than four lanes, guard bits beyond 10."""
    return _SCALES[p.mac_tile_guard_bits] if p.mac_tile_lanes == 4 and 0 <= p.mac_tile_guard_bits <= 10 else None


def _as_float(bits: int) -> F32:
    """The float32 with these bits (cached: the port's few limits recur)."""
    v = _FLOATS.get(bits)
    if v is None:
        v = _FLOATS[bits] = np.array([bits], np.uint32).view(F32)[0]
    return v


_FLOATS: dict = {}


def products4(scal, vec, sidx, vidx, out, guard, round_products, flush, ceil, top_bits) -> None:
    """compiled.lane_products(scal, vec, sidx, vidx, out, swap, 4, guard, round_products, flush,
    itz, ceil, True) for 0 <= guard <= 10, then the output port with largest kept |bits|
    top_bits, through the compiled kernel for the flags."""
    fn = _KERNELS[bool(round_products), bool(flush)]
    fn(scal, vec, sidx, vidx, out, _SCALES[guard], F32(ceil), _as_float(top_bits))


def half_bits(blocks: np.ndarray) -> np.ndarray | None:
    """The fp16 bits of a float32 lane layout whose every value is an fp16 value (a weight the
    simulator ingested as fp16), for the kernels that read half the bytes; None when any value
    is not (exact numerics' operands, an operand flushed or computed in float32)."""
    with np.errstate(over="ignore", invalid="ignore"):    # out of fp16's range: not equal, so None
        h = blocks.astype(np.float16)
        if not np.array_equal(h.astype(F32), blocks):
            return None
    return h.view(np.uint16)


def _compile():
    """Swap the plain functions above for numba ones, compiled now or loaded from numba's
    on-disk cache (helpers at module level: a closure over a compiled function would miss
    the cache in every new process)."""
    import numba
    from llvmlite import ir
    from numba.core import types as t
    from numba.extending import intrinsic

    @intrinsic
    def half(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
        return t.float32(t.float32), codegen

    @intrinsic
    def value(typingctx, x):
        if x == t.uint16:          # fp16 bits: the exact widening (one vcvtph2ps with F16C)
            def codegen(context, builder, sig, args):
                return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
            return t.float32(t.uint16), codegen
        if x == t.float32:
            def codegen(context, builder, sig, args):
                return args[0]
            return t.float32(t.float32), codegen
        return None

    @intrinsic
    def prefetch(typingctx, arr, b, i, r, c):
        def codegen(context, builder, sig, args):
            from numba.core import cgutils
            aryty = sig.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            idx = [context.cast(builder, a, ty, t.intp) for a, ty in zip(args[1:], sig.args[1:])]
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p],
                                                  ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return t.void(arr, b, i, r, c), codegen

    def masked_bits(mask: int):
        """An intrinsic: a float32's bits and `mask`, as uint32 (one and on the register)."""
        @intrinsic
        def bits(typingctx, x):
            def codegen(context, builder, sig, args):
                i32 = ir.IntType(32)
                return builder.and_(builder.bitcast(args[0], i32), ir.Constant(i32, mask))
            return t.uint32(t.float32), codegen
        return bits

    @intrinsic
    def from_bits(typingctx, u):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.FloatType())
        return t.float32(t.uint32), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        def codegen(context, builder, sig, args):
            f = ir.FloatType()
            fn = builder.module.declare_intrinsic("llvm.fma", [f], ir.FunctionType(f, [f, f, f]))
            return builder.call(fn, args)
        return t.float32(t.float32, t.float32, t.float32), codegen

    @intrinsic
    def copysign(typingctx, r, v):
        def codegen(context, builder, sig, args):
            f = ir.FloatType()
            fn = builder.module.declare_intrinsic("llvm.copysign", [f], ir.FunctionType(f, [f, f]))
            return builder.call(fn, args)
        return t.float32(t.float32, t.float32), codegen

    g = globals()
    g["_half"], g["_copysign"], g["_value"], g["_prefetch"], g["_from_bits"] = half, copysign, value, prefetch, from_bits
    g["_exp_bits"], g["_abs_bits"] = masked_bits(0x7F800000), masked_bits(0x7FFFFFFF)
    for name in ("_prefetch_tile", "_product", "_quantize", "_tile", "_saturate", "_port", "_tile_of"):
        g[name] = numba.njit(cache=True)(g[name])
    g["_run"] = numba.njit(cache=True, inline="always")(g["_run"])
    ro = lambda nd, dt=t.float32: t.Array(dt, nd, "C", readonly=True)       # noqa: E731
    sig = t.void(ro(3), ro(4), ro(1, t.int64), ro(1, t.int64), t.Array(t.float32, 3, "C"),
                 t.float32, t.float32, t.float32)
    g["HARDWARE_FP16"] = available()        # else the general kernel runs (mac.py checks)
    sig16 = t.void(ro(3), ro(4, t.uint16), ro(1, t.int64), ro(1, t.int64), t.Array(t.float32, 3, "C"),
                   t.float32, t.float32, t.float32)
    if HARDWARE_FP16:
        for name in ("_rounded_flushed", "_rounded", "_raw_flushed", "_raw"):
            g[name] = numba.njit([sig, sig16], cache=True, nogil=True)(g[name])
        _KERNELS.update(_variants())
    g["_wrap_dec"] = numba.njit(cache=True)(_dec_u32)
    g["_lane"] = numba.njit(cache=True)(g["_lane"])
    g["_sums"] = numba.njit(cache=True, inline="always")(g["_sums"])
    sums = t.void(ro(3), t.Array(t.float32, 1, "C"), t.float32)
    for name in ("_sums_flushed", "_sums_kept"):
        g[name] = numba.njit(sums, cache=True, nogil=True)(g[name])
    g["_fma"] = fma
    g["chain_rows"] = numba.njit(t.void(ro(3), ro(3), ro(1, t.int64), ro(1, t.int64), t.Array(t.float32, 3, "C")),
                                 cache=True, nogil=True)(g["chain_rows"])
    stats = numba.njit(t.UniTuple(t.uint32, 2)(ro(1)), cache=True, nogil=True)
    g["_operand_stats"] = stats(g["_operand_stats"])
    return sys.modules[__name__]


kernel = compiled.LazyKernel("four-lane MAC kernel", _compile)
