"""Compiled kernels for the fp16 and MAC models (the optional `fast` extra: numba).

The same arithmetic as fp16.py and mac.py, fused per element or per output so that an array
takes one pass instead of ten: fp16 rounding with its options, the subnormal flush, and the
lane/tile model of the MAC (fp16-rounded products, the in-tile adds onto the guard-bit grid,
the float32 accumulator, the 2**15 ceiling, the NaN rules). Results are bit-identical to the
numpy code (tests/test_sim_compiled.py runs both on hostile data for every profile), so the
route never shows in a result; `kernels()` is None when numba is missing, when ANEKIT_NO_JIT=1
was set at start-up or after set_enabled(False), and callers then take the numpy code.

numba is imported on first use only (it takes a noticeable fraction of a second). The kernel
functions below are plain Python until then; `kernels()` compiles them with cache=True (one
signature each: float32 C-contiguous arrays, scalar options), so a process after the first
loads machine code from numba's cache (about 2 s with the numba import) instead of compiling
(about 15 s for all of them on the shared 2-core development machine).
Single-threaded on purpose: the benchmarks compare one thread with one thread.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

F32 = np.float32
_SIGN = 0x80000000
_ABS = 0x7FFFFFFF
_F16_MAX_BITS = 0x477FE000       # |bits| of 65504
_SUB_BITS = 0x387FFFFF           # |bits| just below 2**-14, the smallest normal fp16
_INF_BITS = 0x7F800000
_THREE_QUARTERS = F32(0.75)      # float32 steps by 2**-24 (the fp16 subnormal step) in [0.5, 1)
_ZERO = F32(0.0)
_NEG_ZERO = F32(-0.0)             # the additive identity that keeps every sign: -0 + x == x
_INF = F32(np.inf)
BLOCK = 256                      # outputs per vector block (mac.py lays operands out in blocks of this)

_state = {"kernels": None, "tried": False, "enabled": os.environ.get("ANEKIT_NO_JIT", "") in ("", "0")}


def set_enabled(flag: bool) -> bool:
    """Switch the compiled route on or off for this process (ANEKIT_NO_JIT=1 at start-up sets
    it off); returns the previous setting. Results do not change, only speed."""
    previous = _state["enabled"]
    _state["enabled"] = bool(flag)
    return previous


def kernels():
    """The compiled kernel namespace (this module, compiled), or None when numba is missing or
    the route is switched off. numba is imported and the kernels set up on the first call."""
    if not _state["enabled"]:
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _compile()
            _state["kernels"] = sys.modules[__name__]
        except ImportError:
            _state["kernels"] = None
        except Exception as e:          # a numba that cannot build them: same results, slower
            warnings.warn(f"anekit: the compiled simulator kernels are unavailable ({type(e).__name__}: {e}); "
                          "using the numpy code", RuntimeWarning, stacklevel=2)
            _state["kernels"] = None
    return _state["kernels"]


class LazyKernel:
    """A kernel of another module built on first use, only while this module's kernels are on:
    calling it gives the built kernel, or None (numba missing, the route switched off, or a
    build that failed: warned once, and the numpy code runs with the same results)."""

    def __init__(self, what: str, build):
        self.what, self.build, self.tried, self.kernel = what, build, False, None
        _LAZY.append(self)

    def __call__(self):
        if kernels() is None:
            return None
        if not self.tried:
            self.tried = True
            try:
                self.kernel = self.build()
            except Exception as e:
                warnings.warn(f"anekit: the compiled {self.what} is unavailable ({type(e).__name__}: {e}); "
                              "using the numpy code", RuntimeWarning, stacklevel=2)
        return self.kernel


_LAZY: list[LazyKernel] = []      # every LazyKernel made so far, for warm_up


def warm_up() -> None:
    """Build every compiled kernel now (or load it from numba's cache): this module's and each
    LazyKernel made so far, which is all of them, since importing this module runs the
    `anekit.sim` package first and that imports every kernel module (a test counts them). A
    cold build takes seconds; a caller that times its work (a benchmark, a test with a time
    limit) calls this first. Nothing happens when the route is off or numba is missing."""
    if kernels() is None:
        return
    for lazy in _LAZY:
        lazy()


def hardware_fp16() -> bool:
    """Whether the host converts float32 to fp16 in hardware (x86-64 with F16C, arm64); else
    LLVM would call a soft-float routine that numba's JIT may not link."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return True
    if machine not in ("x86_64", "amd64"):
        return False
    from llvmlite import binding
    try:
        return bool(binding.get_host_cpu_features().get("f16c"))
    except RuntimeError:
        return False


def route() -> str:
    """Which route the fp16 and MAC models take in this process: "numba" or "numpy"."""
    return "numpy" if kernels() is None else "numba"


# --- kernels (plain Python here; _compile() swaps in the numba versions) ------------------

def _bits(x):                     # float32 -> its bits as a non-negative int64 (an intrinsic once compiled)
    return int(np.asarray(x, F32).view(np.uint32))


def _float(u):                    # low 32 bits -> float32 (an intrinsic once compiled)
    return np.asarray(u & 0xFFFFFFFF, np.uint32).view(F32)[()]


def _copysign(r, v):
    return _float((_bits(r) & _ABS) | (_bits(v) & _SIGN))


def _round16(v, top, flush, keep_nan, nan_val):
    """fp16.round_fp16 of one float32 value: `top` is the largest kept |bits| (65504 or just
    below the saturation limit); NaN stays (keep_nan) or becomes nan_val. Written as selects
    (no early return) so that loops over it vectorise."""
    u = _bits(v)
    r = (u + 0xFFF + ((u >> 13) & 1)) & 0xFFFFE000        # the 32-bit wrap-around of the numpy route
    mag = r & _ABS
    sub = _ZERO if flush else _copysign((v + _THREE_QUARTERS) - _THREE_QUARTERS, v)
    res = sub if ((mag - 1) & 0xFFFFFFFF) < _SUB_BITS else _float(r)   # nonzero, below the smallest normal
    nan_out = v if keep_nan else nan_val
    big = nan_out if v != v else _float((u & _SIGN) | _INF_BITS)
    return big if mag > top else res


def _flush1(v):
    mag = _bits(v) & _ABS
    return _ZERO if ((mag - 1) & 0xFFFFFFFF) < _SUB_BITS else v


def _quantize1(v, e, guard):
    """mac._quantize of one value: v onto the fp16 grid of exponent field e, refined by guard."""
    ce = min(max(e, 113), 200) + 13 - guard
    c = _float((ce << 23) | 0x400000)
    r = (v + c) - c
    return _copysign(r, v)


def _product(a, b, round_products, flush, itz, top):
    """mac._products of one lane."""
    p = a * b
    if round_products:
        p = _round16(p, top, flush, True, _ZERO)
    elif flush:
        p = _flush1(p)
    return _ZERO if (itz and p != p) else p


def _plain_product(a, b, round_products, flush):
    """_product of finite operands whose product is at most 65504 in magnitude (the caller's
    bound): the overflow, infinity and NaN selects of _round16 cannot fire there, and a * b
    equals b * a bit for bit when no NaN is involved, so neither the swap nor the NaN rule
    matters."""
    p = a * b
    if round_products:
        u = _bits(p)
        r = (u + 0xFFF + ((u >> 13) & 1)) & 0xFFFFE000
        sub = _ZERO if flush else _copysign((p + _THREE_QUARTERS) - _THREE_QUARTERS, p)
        return sub if (((r & _ABS) - 1) & 0xFFFFFFFF) < _SUB_BITS else _float(r)
    return _flush1(p) if flush else p


def _plain_tile_add(s, lane, guard):
    """_tile_add of finite values whose partial stays below the ceiling (the caller's bound):
    no NaN can arise and no saturation fires."""
    e = max(_bits(s) & _ABS, _bits(lane) & _ABS) >> 23
    return _quantize1(s + lane, e, guard)


def _lane(a, b, swap, round_products, flush, itz):
    """_product of a * b, or of b * a with swap (the same value; only a NaN payload can tell),
    as one multiply of selected operands so that the loop body is not duplicated."""
    return _product(b if swap else a, a if swap else b, round_products, flush, itz, _F16_MAX_BITS)


def _saturate(s, itz, ceil):
    """The NaN rule, then the ceiling, on a running partial."""
    s = _ZERO if (itz and s != s) else s
    return _copysign(_INF, s) if abs(s) >= ceil else s


def _tile_add(s, lane, guard, itz, ceil):
    """One in-tile add (mac.tile_sums): round onto the grid of the larger operand, then the
    NaN rule and the ceiling on the partial."""
    e = max(_bits(s) & _ABS, _bits(lane) & _ABS) >> 23
    return _saturate(_quantize1(s + lane, e, guard), itz, ceil)


def _first_tile_lane(lane, guard):
    return _quantize1(lane, (_bits(lane) & _ABS) >> 23, guard)


# On a host that converts float32 to fp16 in hardware (F16C, arm64: _compile sets
# _HARDWARE_FP16), round_fp16 and elementwise_round round with that conversion pair: round half
# to even, subnormals kept, overflow to infinity, which is _round16's value for every float32
# that is not a NaN when the kept magnitude `top` is between 2**-14 and 65504 (the two round
# alike at and above 2**-14, and below it neither reaches `top`); the M1 flush is a select on
# the unrounded magnitude (as in _compiled_mac._port). _round16's NaN results (nan_val, the NaN,
# or a zero where its 32-bit arithmetic wraps) come from redoing the array the general way, so
# only an array holding a NaN pays a second pass. The tests compare both with the numpy route.
_HARDWARE_FP16 = False
_MIN_NORMAL_BITS = 0x38800000    # |bits| of 2**-14
_TINY_BITS = 0x1000              # |bits| at or below which the 11-bit rounding of a float32 is 0
_FLUSH_BITS = 0x387FF000         # |bits| from which that rounding reaches 2**-14


def _half(x):                     # float32 -> fp16 -> float32 (a conversion instruction pair once compiled)
    return F32(np.float16(x))


def _identity(x):               # _half's stand-in on hosts without the conversion (never called there)
    return x


def _hardware_ok(top) -> bool:
    return _HARDWARE_FP16 and _MIN_NORMAL_BITS <= top <= _F16_MAX_BITS


def _hardware_round16(v, top_value, flush, tiny, flush_lim):
    """_round16(v, top, flush, ...) for a v that is not a NaN (see above); top_value is the
    float32 with the bits `top`."""
    h = _half(v)
    h = _copysign(_INF, v) if abs(h) > top_value else h
    m = abs(v)
    return _ZERO if (flush and m > tiny and m < flush_lim) else h


def round_fp16(src, out, top, flush, keep_nan, nan_val):
    """out[i] = round_fp16(src[i]) over flat float32 arrays."""
    if _hardware_ok(top):
        nan = False
        top_value, tiny, flush_lim = _float(top), _float(_TINY_BITS), _float(_FLUSH_BITS)
        for i in range(src.shape[0]):
            v = src[i]
            nan |= v != v
            out[i] = _hardware_round16(v, top_value, flush, tiny, flush_lim)
        if not nan:
            return
    for i in range(src.shape[0]):
        out[i] = _round16(src[i], top, flush, keep_nan, nan_val)


def all_finite(a):
    """Whether no element of a flat float32 array has its exponent bits all ones (inf, NaN):
    one vectorised pass, no mask array (the loss scaler's check of every gradient, each step)."""
    bad = False
    for i in range(a.shape[0]):
        bad |= (_bits(a[i]) & _INF_BITS) == _INF_BITS
    return not bad


ADD, SUB, MUL, DIV, SQRT = 0, 1, 2, 3, 4      # elementwise_round's op codes
MAX, MIN, ABS, RECIP, RSQRT = 6, 7, 8, 9, 10   # the elementwise tape's further codes (5: its copy row;
                                              # sim/_compiled_tape.py), not elementwise_round's


def _arith(code, a, b, unsigned_zero):
    """The float32 result of one elementwise op, as the numpy kernels compute it (sqrt: b unused;
    +0 added as the engine returns +0 for -0; a divisor's zero loses its sign first)."""
    if code == ADD:
        return a + b
    if code == SUB:
        return a - b
    if code == MUL:
        return a * b
    if code == DIV:
        return a / ((b + _ZERO) if unsigned_zero else b)
    return np.sqrt(a) + _ZERO


def elementwise_round(code, x, y, out, unsigned_zero, top, keep_nan, nan_val):
    """out[i] = round_fp16(x[i] op y[i]) in one pass (a kernel's op and the executor's storage
    rounding, fused); an operand of one element broadcasts (x and y are not both of one
    element unless out is). Compiled with numpy's error model: x / 0 is inf, not an error.
    out shares no memory with x or y (a NaN redoes the pass from them)."""
    n = out.shape[0]
    if _hardware_ok(top):
        nan = False
        top_value, tiny = _float(top), _float(_TINY_BITS)
        if x.shape[0] == 1 and n != 1:
            a = x[0]
            for i in range(n):
                v = _arith(code, a, y[i], unsigned_zero)
                nan |= v != v
                out[i] = _hardware_round16(v, top_value, False, tiny, tiny)
        elif y.shape[0] == 1 and n != 1:
            b = y[0]
            for i in range(n):
                v = _arith(code, x[i], b, unsigned_zero)
                nan |= v != v
                out[i] = _hardware_round16(v, top_value, False, tiny, tiny)
        else:
            for i in range(n):
                v = _arith(code, x[i], y[i], unsigned_zero)
                nan |= v != v
                out[i] = _hardware_round16(v, top_value, False, tiny, tiny)
        if not nan:
            return
    if x.shape[0] == 1 and n != 1:
        a = x[0]
        for i in range(n):
            out[i] = _round16(_arith(code, a, y[i], unsigned_zero), top, False, keep_nan, nan_val)
    elif y.shape[0] == 1 and n != 1:
        b = y[0]
        for i in range(n):
            out[i] = _round16(_arith(code, x[i], b, unsigned_zero), top, False, keep_nan, nan_val)
    else:
        for i in range(n):
            out[i] = _round16(_arith(code, x[i], y[i], unsigned_zero), top, False, keep_nan, nan_val)


def flush_subnormals(src, out):
    for i in range(src.shape[0]):
        out[i] = _flush1(src[i])


def lane_products(scal, vec, sidx, vidx, out, swap, lanes, guard, round_products, flush, itz, ceil, plain):
    """out[b, s, i * W + v] = the lane model of sum_k scal[sidx[b], s, k] * vec[vidx[b], i, k, v]
    in the wide accumulator, before the output port: the outputs of one block i of W share
    the operand row scal[., s], and vec[., i] holds their other operands as K contiguous rows
    of W (a block streams through memory once). sidx and vidx map the broadcast batch to each
    operand's own. The product is scal * vec, or vec * scal with swap (the numpy route's
    operand order). One branch-free loop body over v serves every lane (it vectorises, and
    compiles once rather than once per case). `plain`: the caller guarantees finite operands
    whose products stay within 65504 and whose in-tile partials stay below the ceiling; the
    tile loop then leaves out the selects that cannot fire (the same bits)."""
    nb = sidx.shape[0]
    ns, k = scal.shape[1], scal.shape[2]
    nblk, width = vec.shape[1], vec.shape[3]
    st = np.empty(width, np.float32)
    acc = np.empty(width, np.float32)
    for b in range(nb):
        for si in range(ns):
            srow = scal[sidx[b], si]
            for i in range(nblk):
                blk = vec[vidx[b], i]
                for t0 in range(0, k, lanes):
                    for j in range(lanes):
                        kk = min(t0 + j, k - 1)
                        pad = t0 + j >= k                           # the zero padding of the last tile
                        a, row = srow[kk], blk[kk]
                        # The first lane of a tile is -0 + lane (exactly the lane), with no NaN rule
                        # and no ceiling (itz False, ceil inf): mac.tile_sums quantizes it alone.
                        first, tile_itz, tile_ceil = j == 0, itz and j > 0, ceil if j > 0 else _INF
                        if plain:
                            for v in range(width):
                                p = _ZERO if pad else _plain_product(a, row[v], round_products, flush)
                                st[v] = _plain_tile_add(_NEG_ZERO if first else st[v], p, guard)
                            continue
                        for v in range(width):
                            p = _ZERO if pad else _lane(a, row[v], swap, round_products, flush, itz)
                            st[v] = _tile_add(_NEG_ZERO if first else st[v], p, guard, tile_itz, tile_ceil)
                    _accumulate(acc, st, width, t0 == 0, itz, ceil)
                out[b, si, i * width:(i + 1) * width] = acc


def _accumulate(acc, st, width, first, itz, ceil):
    """acc += st in float32 with the NaN rule and the ceiling; the first tile is -0 + st."""
    for v in range(width):
        acc[v] = _saturate((_NEG_ZERO if first else acc[v]) + st[v], itz, ceil)


def lane_sums(lanes_t, out, lanes, guard, flush, itz, ceil):
    """out[i * W + v] = the lane model of sum_k lanes_t[i, k, v] (mac.reduce_lanes on given
    lanes, laid out by rows in blocks of W: row i * W + v's lanes are lanes_t[i, :, v]),
    vectorised across rows like lane_products."""
    nblk, k, width = lanes_t.shape
    st = np.empty(width, np.float32)
    acc = np.empty(width, np.float32)
    for i in range(nblk):
        blk = lanes_t[i]
        for t0 in range(0, k, lanes):
            for j in range(lanes):
                kk = min(t0 + j, k - 1)
                pad = t0 + j >= k
                row = blk[kk]
                first, tile_itz, tile_ceil = j == 0, itz and j > 0, ceil if j > 0 else _INF
                for v in range(width):
                    lane = _ZERO if pad else (_flush1(row[v]) if flush else row[v])
                    st[v] = _tile_add(_NEG_ZERO if first else st[v], lane, guard, tile_itz, tile_ceil)
            _accumulate(acc, st, width, t0 == 0, itz, ceil)
        out[i * width:(i + 1) * width] = acc


def lane_pairs(x, w, out, lanes, guard, round_products, flush, itz, ceil):
    """out[i] = the lane model of sum_k x[i, k] * w[i, k] (the outputs mac.py recomputes on
    its fast route: near the ceiling, or with an infinity in their row or column)."""
    n, k = x.shape
    top = _F16_MAX_BITS
    for i in range(n):
        acc = _ZERO
        for t0 in range(0, k, lanes):
            s = _ZERO
            for j in range(lanes):
                kk = t0 + j
                lane = _product(x[i, kk], w[i, kk], round_products, flush, itz, top) if kk < k else _ZERO
                s = _first_tile_lane(lane, guard) if j == 0 else _tile_add(s, lane, guard, itz, ceil)
            acc = _saturate(s if t0 == 0 else acc + s, itz, ceil)
        out[i] = acc


_HELPERS = ("_arith", "_copysign", "_round16", "_hardware_ok", "_hardware_round16", "_flush1", "_quantize1", "_product", "_plain_product", "_lane",
            "_saturate", "_tile_add", "_plain_tile_add", "_first_tile_lane", "_accumulate")


def _compile() -> None:
    """Swap the plain functions above for numba ones: one signature per kernel (read-only
    float32 C-contiguous inputs, which writable arrays also match), compiled now or loaded
    from numba's on-disk cache, so no later call stops to compile."""
    import numba
    from llvmlite import binding, ir
    from numba.core import config
    from numba.core import types as t
    from numba.extending import intrinsic

    _wide_vectors(config, binding)
    _source_keyed_cache(config)

    @intrinsic
    def bits(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))
        return t.int64(t.float32), codegen

    @intrinsic
    def as_float(typingctx, u):
        def codegen(context, builder, sig, args):
            return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
        return t.float32(t.int64), codegen

    def ro(ndim, dtype=t.float32):
        return t.Array(dtype, ndim, "C", readonly=True)

    def rw(ndim):
        return t.Array(t.float32, ndim, "C")

    f32, i64, flag = t.float32, t.int64, t.boolean
    signatures = {
        "round_fp16": (ro(1), rw(1), i64, flag, flag, f32),
        "flush_subnormals": (ro(1), rw(1)),
        "lane_products": (ro(3), ro(4), ro(1, i64), ro(1, i64), rw(3), flag, i64, i64, flag, flag, flag, f32, flag),
        "lane_sums": (ro(3), rw(1), i64, i64, flag, flag, f32),
        "lane_pairs": (ro(2), ro(2), rw(1), i64, i64, flag, flag, flag, f32),
        "elementwise_round": (i64, ro(1), ro(1), rw(1), flag, i64, flag, f32),
    }
    @intrinsic
    def half(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
        return t.float32(t.float32), codegen

    g = globals()
    g["_bits"], g["_float"] = bits, as_float
    # Without the conversion instructions LLVM would call a soft-float routine numba's JIT
    # may not link: the identity stands in, behind a flag that is False there.
    g["_HARDWARE_FP16"] = hardware_fp16()
    g["_half"] = half if _HARDWARE_FP16 else numba.njit(cache=True)(_identity)
    numpy_errors = {"_arith", "elementwise_round"}      # x / 0 is inf there, not ZeroDivisionError
    for name in _HELPERS:
        g[name] = numba.njit(cache=True, **({"error_model": "numpy"} if name in numpy_errors else {}))(g[name])
    for name, sig in signatures.items():
        g[name] = numba.njit(t.void(*sig), cache=True, nogil=True,
                             **({"error_model": "numpy"} if name in numpy_errors else {}))(g[name])
    g["all_finite"] = numba.njit(t.boolean(ro(1)), cache=True, nogil=True)(g["all_finite"])


def _source_keyed_cache(config) -> None:
    """Keep numba's on-disk cache in a folder named by a hash of every kernel module's source.
    numba keys a cached function on its own file and bytecode only, not on the helpers it
    inlines from this module: after an edit here, the kernels of _compiled_mac.py and the
    others (files unchanged) would load machine code built with the old helpers, and the
    compiled route would silently differ from the numpy code. A new hash starts a fresh cache;
    folders of earlier hashes are removed. Left alone when the user chose NUMBA_CACHE_DIR."""
    if config.CACHE_DIR:
        return
    here = Path(__file__).resolve().parent
    sources = sorted([here / "compiled.py", *here.glob("_compiled*.py"), *here.glob("kernels/_compiled*.py")])
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    root = here / "__pycache__"
    for old in root.glob("numba-*"):
        if old.name != f"numba-{digest}":
            shutil.rmtree(old, ignore_errors=True)
    config.CACHE_DIR = str(root / f"numba-{digest}")


def _wide_vectors(config, binding) -> None:
    """Let LLVM use 512-bit vectors where the host has AVX-512 (its default tuning prefers 256):
    the lane model's loops run about 1.3-2x faster (measured on the development machine's
    Xeon). Only when nobody chose CPU features for numba and numba has compiled nothing yet
    in this process (the setting is read when its code generator starts); the arithmetic, and
    so every result bit, is the same at any vector width."""
    from numba.core.registry import cpu_target
    if config.CPU_FEATURES is not None or config.CPU_NAME is not None or "_toplevel_target_context" in vars(cpu_target):
        return
    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:             # a host LLVM cannot describe: keep numba's defaults
        return
    if features.get("avx512f"):
        config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"
