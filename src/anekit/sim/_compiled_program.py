"""The compiled block program (numba): a while_loop's cond and body run as rows of one tape,
trip after trip, in one call (sim/program.py plans it; see there for what each row means).

Rows are int64 [code, dst, a, b, c, n, p0, p1, p2, p3, p4, p5, p6] over buffers given by their
data addresses (`addrs`: float32 or int32 arrays the caller keeps alive); `fpar` holds a
row's float parameters. Every row computes what the op's kernel and the executor's storage
step compute, in a chip profile whose NaN rule leaves no NaN (the same helpers as
sim/compiled.py and sim/_compiled_mac.py), or in exact numerics (p6 set: float32 without
rounding; a NaN result bails, as numba need not keep numpy's NaN payload). A row that meets a case it does not model (an
index out of range, a MAC operand past the plain bound, a value off the fp16 grid) stops the
run with BAIL: the caller then runs the loop the ordinary way, from its start, and gets the
same bits or the kernel's error.

Imported only through program.py's LazyKernel, once compiled.kernels() and the four-lane MAC
kernel are built (their numba helpers are what the functions here call).
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types as t
from numba.extending import intrinsic

from . import _compiled_mac as cmac
from . import compiled
from ._compiled_tape import _fptr      # an address as a float32 pointer

# row codes (program.py builds them)
ADD, SUB, MUL, DIV, SQRT = compiled.ADD, compiled.SUB, compiled.MUL, compiled.DIV, compiled.SQRT
TABLE, LINEAR, GATHER, SCATTER, ROUND, COPY, INT_BINARY, COMPARE, SELECT, INGEST32, INGEST16, \
    OUT16, STOP_UNLESS, NUMPY = range(5, 19)      # NUMPY: run by the caller (program.py), between segments
DONE, BAIL, GO = 0, 1, 2
_TOP = compiled._F16_MAX_BITS
_ZERO = np.float32(0.0)
_INF = np.float32(np.inf)
_jit = numba.njit(cache=True, error_model="numpy")


@intrinsic
def _iptr(typingctx, addr):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.IntType(32)))
    return t.CPointer(t.int32)(t.int64), codegen


@_jit
def _f(addrs, i, n):
    return numba.carray(_fptr(addrs[i]), n)


@_jit
def _i(addrs, i, n):
    return numba.carray(_iptr(addrs[i]), n)


@_jit
def _index(v, size):
    """A gather/scatter index wrapped as the kernels wrap it; -1 when out of range."""
    if v < -size or v >= size:
        return -1
    return v + size if v < 0 else v


@_jit
def _linear(row, fp, addrs):
    """mac.matmul's four-lane lane route (products4) of x [M, K] with a prepared weight, the
    output port, + bias, and the storage rounding; False when x is past the plain bound."""
    m, k, n, nblk, width, flags = row[6], row[7], row[8], row[9], row[10], row[11]
    x = _f(addrs, row[2], m * k)
    top = np.int64(0)
    for i in range(m * k):                           # _compiled_mac.operand_stats
        top = max(top, np.int64(compiled._bits(x[i]) & 0x7FFFFFFF))
    if top >= 0x7F800000:
        return False                                 # an infinity or NaN: not plain
    peak = np.float64(compiled._float(top)) * fp[0]  # x's peak times w's (float64, as mac._plain)
    if not (peak <= 65504.0 and 4.0 * peak * 1.02 < fp[1]):
        return False
    scal = numba.carray(_fptr(addrs[row[2]]), (1, m, k))
    vec = numba.carray(_fptr(addrs[row[3]]), (1, nblk, k, width))
    idx = np.zeros(1, np.int64)
    out = numba.carray(_fptr(addrs[row[12]]), (1, m, nblk * width))
    ceil, ptop, scale = np.float32(fp[2]), np.float32(fp[3]), np.float32(fp[4])
    if flags == 3:
        cmac._rounded_flushed(scal, vec, idx, idx, out, scale, ceil, ptop)
    elif flags == 1:
        cmac._rounded(scal, vec, idx, idx, out, scale, ceil, ptop)
    elif flags == 2:
        cmac._raw_flushed(scal, vec, idx, idx, out, scale, ceil, ptop)
    else:
        cmac._raw(scal, vec, idx, idx, out, scale, ceil, ptop)
    d = _f(addrs, row[1], m * n)
    flat = _f(addrs, row[12], m * nblk * width)
    for r in range(m):
        for j in range(n):
            v = flat[r * nblk * width + j]
            if row[4] >= 0:
                v = v + _f(addrs, row[4], n)[j]
            d[r * n + j] = compiled._round16(v, _TOP, False, False, _ZERO)
    return True


@_jit
def _step(row, fp, addrs):
    """Run one row; False to bail."""
    code, dst, n = row[0], row[1], row[5]
    exact = row[12] != 0 and code != LINEAR      # exact numerics: no storage rounding, and a NaN
    if code <= SQRT:                              # bails (numba need not keep numpy's NaN payload)
        d, a, b = _f(addrs, dst, n), _f(addrs, row[2], row[6]), _f(addrs, row[3], row[7])
        ia, ib, uz = row[6] != 1, row[7] != 1, row[8] != 0
        if exact:
            for i in range(n):
                v = compiled._arith(code, a[i if ia else 0], b[i if ib else 0], False)
                if v != v:
                    return False
                d[i] = v
        else:
            for i in range(n):
                d[i] = compiled._round16(compiled._arith(code, a[i if ia else 0], b[i if ib else 0], uz),
                                         _TOP, False, False, _ZERO)
    elif code == TABLE:
        d, a, tab = _f(addrs, dst, n), _f(addrs, row[2], n), _f(addrs, row[3], 1 << 19)
        for i in range(n):
            u = compiled._bits(a[i])
            if u & 0x1FFF:
                return False                          # off the grid: fp16_grid.lookup declines
            d[i] = compiled._round16(tab[u >> 13], _TOP, False, False, _ZERO)
    elif code == LINEAR:
        return _linear(row, fp, addrs)
    elif code == GATHER:
        outer, size, inner, nidx = row[6], row[7], row[8], row[9]
        d, a, ix = _i(addrs, dst, n), _i(addrs, row[2], outer * size * inner), _i(addrs, row[3], nidx)
        for j in range(nidx):
            if _index(ix[j], size) < 0:
                return False
        for o in range(outer):
            for j in range(nidx):
                src = (o * size + _index(ix[j], size)) * inner
                base = (o * nidx + j) * inner
                for e in range(inner):
                    d[base + e] = a[src + e]
    elif code == SCATTER:
        outer, size, inner = row[6], row[7], row[8]
        d, a = _i(addrs, dst, n), _i(addrs, row[2], n)
        k = _index(_i(addrs, row[3], 1)[0], size)
        if k < 0:
            return False
        for i in range(n):
            d[i] = a[i]
        mode = row[10]
        if mode == 0:
            upd = _i(addrs, row[4], outer * inner)
            for o in range(outer):
                for e in range(inner):
                    d[(o * size + k) * inner + e] = upd[o * inner + e]
        else:                                         # one index: np.ufunc.at is one float32 op
            fd, fu = _f(addrs, dst, n), _f(addrs, row[4], outer * inner)
            for o in range(outer):
                for e in range(inner):
                    j = (o * size + k) * inner + e
                    fd[j] = fd[j] + fu[o * inner + e] if mode == 1 else \
                        fd[j] - fu[o * inner + e] if mode == 2 else fd[j] * fu[o * inner + e]
                    if exact and fd[j] != fd[j]:
                        return False
        if row[9]:                                    # float data in a chip profile: the storage rounding
            f = _f(addrs, dst, n)
            for i in range(n):
                f[i] = compiled._round16(f[i], _TOP, False, False, _ZERO)
    elif code == ROUND or code == INGEST32 or code == OUT16:
        d, a = _f(addrs, dst, n), _f(addrs, row[2], n)
        keep = code == OUT16 or exact                 # exact ROUND: the float16 round trip of a cast
        nan = _INF if code == INGEST32 else _ZERO
        for i in range(n):
            if exact and a[i] != a[i]:
                return False
            d[i] = compiled._round16(a[i], _TOP, False, keep, nan)
    elif code == INGEST16:
        d, a = _f(addrs, dst, n), _f(addrs, row[2], n)
        for i in range(n):
            v = a[i]
            d[i] = _INF if v != v else v
    elif code == COPY:
        d, a = _i(addrs, dst, n), _i(addrs, row[2], n)
        for i in range(n):
            d[i] = a[i]
    elif code == INT_BINARY:
        d, a, b = _i(addrs, dst, n), _i(addrs, row[2], row[6]), _i(addrs, row[3], row[7])
        ia, ib, op = row[6] != 1, row[7] != 1, row[8]
        for i in range(n):
            x, y = np.int64(a[i if ia else 0]), np.int64(b[i if ib else 0])
            r = x + y if op == ADD else x - y if op == SUB else x * y
            d[i] = np.int32(r & 0xFFFFFFFF) if (r & 0xFFFFFFFF) < 0x80000000 else np.int32((r & 0xFFFFFFFF) - (1 << 32))
    elif code == COMPARE:
        d, a, b = _i(addrs, dst, n), _i(addrs, row[2], row[6]), _i(addrs, row[3], row[7])
        ia, ib, op = row[6] != 1, row[7] != 1, row[8]
        for i in range(n):
            x, y = a[i if ia else 0], b[i if ib else 0]
            r = (x == y if op == 0 else x != y if op == 1 else x > y if op == 2 else
                 x >= y if op == 3 else x < y if op == 4 else x <= y)
            d[i] = 1 if r else 0
    elif code == SELECT:
        d, cnd = _i(addrs, dst, n), _i(addrs, row[2], row[6])
        a, b = _i(addrs, row[3], row[7]), _i(addrs, row[4], row[8])
        ic, ia, ib = row[6] != 1, row[7] != 1, row[8] != 1
        for i in range(n):
            d[i] = a[i if ia else 0] if cnd[i if ic else 0] != 0 else b[i if ib else 0]
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_rows(rows, fpar, addrs, r0, r1):
    """Rows r0 .. r1 - 1 once (a segment between two numpy rows): DONE when a STOP_UNLESS row
    stops the loop, BAIL when a row bails, GO otherwise."""
    for r in range(r0, r1):
        row = rows[r]
        if row[0] == STOP_UNLESS:
            if _i(addrs, row[2], 1)[0] == 0:
                return DONE
        elif not _step(row, fpar[r], addrs):
            return BAIL
    return GO


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run(rows, fpar, addrs, max_trips):
    """Rows in order, again and again: a STOP_UNLESS row ends the run (DONE) when its int32
    operand is 0; a pass past max_trips, or a row that bails, gives BAIL."""
    for _ in range(max_trips):
        status = run_rows(rows, fpar, addrs, 0, rows.shape[0])
        if status != GO:
            return status
    return BAIL


def warm_up() -> None:
    """Compile `run` (or load it from numba's cache) now, on a program that stops at once."""
    flag = np.zeros(1, np.int32)
    rows = np.zeros((1, 13), np.int64)
    rows[0, 0], rows[0, 2] = STOP_UNLESS, 0
    run(rows, np.zeros((1, 5)), np.array([flag.ctypes.data], np.int64), 1)
    run_rows(rows, np.zeros((1, 5)), np.array([flag.ctypes.data], np.int64), 0, 1)
