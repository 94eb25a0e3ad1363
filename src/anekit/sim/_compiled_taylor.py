"""The guarded Taylor expansion of taylor32.py fused into one pass per element (numba, the
optional `fast` extra), for exact-numerics gelu and erf.

The same float64 operations in the same order as Taylor32.__call__'s numpy passes (the
table key from the float32 bits, d = x - x0, Horner's rule, the error bound, the two
float32 roundings compared), so the bits are the same: numba does not contract a * d + t
into a fused multiply-add without fastmath. Elements the bound cannot settle are flagged
and the caller evaluates the float64 reference on them, as the numpy route does. Used only
while sim/compiled.py's kernels are on (the same switch: ANEKIT_NO_JIT=1 at start-up,
compiled.set_enabled); tests/test_sim_compiled_kernels.py checks both routes bit for bit.
"""
from __future__ import annotations

import numpy as np

from . import compiled

PREFETCH = 64           # elements ahead whose table row the expansion requests


def _compile():
    import numba
    from llvmlite import ir
    from numba.core import types as t
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, addr):
        # A hint to load the cache line at addr (llvm.prefetch): no effect on any value.
        def codegen(context, builder, sig, args):
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(
                ir.VoidType(), [i8p, i32, i32, i32]))
            builder.call(fn, [builder.inttoptr(args[0], i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return t.none(t.int64), codegen

    @intrinsic
    def as_float(typingctx, u):
        def codegen(context, builder, sig, args):
            return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
        return t.float32(t.int64), codegen

    def expand(u, tab, lo_key, per_sign, c4, rel, lowest, out, ok):
        """out[i] = float32(A(x[i])) for the float32 bits u[i]; ok[i]: the bound settles it.
        tab[key] holds f, f', f''/2, f'''/6 at the key's point: one cache line per lookup.
        The row of the element PREFETCH places ahead is requested early: within a training
        step the table (2 MB) is mostly out of cache, and the misses set the pace there."""
        base = tab.ctypes.data
        n = u.size
        for i in range(n):
            if i + PREFETCH < n:
                b2 = np.int64(u[i + PREFETCH])
                k2 = min(max(((b2 & 0x7FFFFFFF) >> 13) - lo_key, 0), per_sign - 1) + (b2 >> 31) * per_sign
                prefetch(base + k2 * 32)
            b = np.int64(u[i])
            key = ((b & 0x7FFFFFFF) >> 13) - lo_key
            inside = key >= 0 and key < per_sign
            if key < 0:
                key = 0
            elif key >= per_sign:
                key = per_sign - 1
            key += (b >> 31) * per_sign
            xf = as_float(b)
            d = np.float64(xf) - np.float64(as_float(b & 0xFFFFE000))
            a = tab[key, 3] * d
            a += tab[key, 2]
            a *= d
            a += tab[key, 1]
            a *= d
            a += tab[key, 0]
            e = d * d
            e *= e
            e *= c4
            e += rel * abs(a)
            hi = np.float32(a + e)
            out[i] = hi
            ok[i] = np.float32(a - e) == hi and inside and xf >= lowest

    ro = lambda dt: t.Array(dt, 1, "C", readonly=True)          # noqa: E731
    sig = t.void(ro(t.uint32), t.Array(t.float64, 2, "C", readonly=True), t.int64, t.int64,
                 t.float64, t.float64, t.float32, t.Array(t.float32, 1, "C"), t.Array(t.boolean, 1, "C"))
    return numba.njit(sig, cache=True, nogil=True)(expand)


kernel = compiled.LazyKernel("Taylor kernel", _compile)
