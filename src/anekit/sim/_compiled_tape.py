"""A region of elementwise ops run as one compiled call (numba, the optional `fast` extra).

sim/regions.py plans, once per Simulator, runs of elementwise ops (add, sub, mul, real_div,
square, sqrt, maximum, minimum, abs, inverse, rsqrt on operands of the output's shape, of one
element, or broadcast along axes)
into a tape: one row per op, read by this one precompiled function, so a program never
triggers a numba compilation of its own. The tape is run block by block of elements; each
op computes exactly what its numpy kernel computes in float32 and, in a chip profile, rounds
it to fp16 storage with the NaN rule (compiled._round16, as the executor's `store` does; on a
host with hardware fp16 conversion that conversion, with a redo of any block holding a NaN),
so every value is the op-by-op value bit for bit. Values consumed only inside the region live
in scratch rows of one block and are never written out.

Tape rows (int64): code, then (kind, index, r, size) for operand a and operand b, (kind,
index) for the destination, the mode and the NaN check. Codes: ADD, SUB, MUL, DIV, SQRT
(b unused), COPY (d = a), ABS (b unused), MAX and MIN (np.maximum, np.minimum: a NaN operand
gives a NaN; a pair of zeros of opposite signs, whose result numpy takes from the host's max
instruction, is reported like an exact-mode NaN, in every mode, and the region runs op by op),
RECIP and RSQRT (kernels/elementwise.py's inverse and rsqrt: b is the epsilon, one value as
nx.const holds it; t = a + b with the storage rounding, its zero unsigned in mode 2, then
1 / t or 1 / sqrt(t) in float32 and one storage rounding; a NaN anywhere reaches the result,
so the chip modes' redo of a NaN block covers both roundings). Kinds: 0 a scratch row, 1 an array
of the group's element count at addrs[index], 2 a one-element array at addrs[index], 3 an
array of `size` elements at addrs[index] that output element j reads at (j // r) % size
(a bias along inner axes, a per-row scale, ...). Mode: 0 exact float32 (no
rounding; a NaN in an output is reported so the caller can redo the region op by op, whose
NaN payloads numba's operand order need not match), 1 chip rounding with signed zero
divisors, 2 chip rounding with unsigned zero divisors (profile.unsigned_zero_reciprocal), 3
exact float32 then rounded to the fp16 grid with NaN kept (fp16.round_fp16: the stored form
of an fp16 function output nothing else reads, which Simulator.run_stored then need not
round again; a NaN is reported as in mode 0).
Groups (int64 rows n, first op, end op) run in order; a group reads earlier groups' outputs
from memory. Addresses are the data pointers of float32 C-contiguous arrays the caller keeps
alive for the call.

This module imports numba: sim/regions.py imports it only through its LazyKernel, once
compiled.kernels() is on (its numba helpers, such as compiled._round16, are built then; the
functions here compile on their first call, or load from numba's cache).
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types as t
from numba.extending import intrinsic

from . import compiled

ADD, SUB, MUL, DIV, SQRT = compiled.ADD, compiled.SUB, compiled.MUL, compiled.DIV, compiled.SQRT
MAX, MIN, ABS, RECIP, RSQRT = compiled.MAX, compiled.MIN, compiled.ABS, compiled.RECIP, compiled.RSQRT
COPY = 5                    # d = a (then rounded: mode 3 only)
SCRATCH, ARRAY, SCALAR, BROADCAST = 0, 1, 2, 3
EXACT, CHIP, CHIP_UNSIGNED_ZERO, EXACT_STORED = 0, 1, 2, 3
_TOP = compiled._F16_MAX_BITS
_ZERO = np.float32(0.0)
_NEG_ZERO = np.float32(-0.0)    # x + -0 is x, zeros' signs kept (x + +0 unsigns a zero)
_ONE = np.float32(1.0)
_jit = numba.njit(cache=True, error_model="numpy")


@intrinsic
def _fptr(typingctx, addr):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.FloatType()))
    return t.CPointer(t.float32)(t.int64), codegen


@_jit
def _view(kind, idx, r, size, addrs, sbase, width, base, m, fill):
    """Operand or destination elements [base, base + m) as a float32 array."""
    if kind == SCRATCH:
        return numba.carray(_fptr(sbase + 4 * idx * width), m)
    if kind == ARRAY:
        return numba.carray(_fptr(addrs[idx] + 4 * base), m)
    row = numba.carray(_fptr(sbase + 4 * fill * width), m)     # a fill row
    if kind == SCALAR:
        v = numba.carray(_fptr(addrs[idx]), 1)[0]
        for i in range(m):
            row[i] = v
        return row
    # BROADCAST: element j reads src[(j // r) % size], in runs (no division per element), each
    # run a 0-based loop over slices: indexing row[i + j] kept LLVM from vectorising the copy
    # (5x slower: the KV-cache update of a decode step broadcasts along every row)
    src = numba.carray(_fptr(addrs[idx]), size)
    i = 0
    if r == 1:
        k = base % size
        while i < m:
            run = min(size - k, m - i)
            dst, part = row[i:i + run], src[k:k + run]
            for j in range(run):
                dst[j] = part[j]
            i += run
            k = 0
    else:
        q, rem = base // r, base % r
        while i < m:
            run = min(r - rem, m - i)
            v, dst = src[q % size], row[i:i + run]
            for j in range(run):
                dst[j] = v
            i += run
            rem = 0
            q += 1
    return row


@_jit
def _max(x, y):
    """np.maximum of two float32 values (x86's rule: a NaN x, else the larger, else y), but
    for a pair of zeros of opposite signs, which _mixed_zeros reports."""
    return x if (x > y) | (x != x) else y


@_jit
def _min(x, y):
    return x if (x < y) | (x != x) else y


@_jit
def _mixed_zeros(a, b, m):
    """Whether some a[i], b[i] are zeros of opposite signs: np.maximum and np.minimum return the
    operand the host's vector instruction picks (x86's maxps and minps the second; arm64's fmax
    orders -0 below +0), so a region holding such a pair runs op by op, where numpy decides."""
    odd = False
    for i in range(m):
        odd |= (a[i] == b[i]) & (compiled._bits(a[i]) != compiled._bits(b[i]))
    return odd


@_jit
def _apply_bits(code, mode, a, b, d, m):
    """Each op's float32 result, then (chip modes, EXACT_STORED) its storage rounding by
    compiled._round16 (the reference for _apply)."""
    if mode == EXACT or mode == EXACT_STORED:
        if code == ADD:
            for i in range(m):
                d[i] = a[i] + b[i]
        elif code == SUB:
            for i in range(m):
                d[i] = a[i] - b[i]
        elif code == MUL:
            for i in range(m):
                d[i] = a[i] * b[i]
        elif code == DIV:
            for i in range(m):
                d[i] = a[i] / b[i]
        elif code == COPY:
            for i in range(m):
                d[i] = a[i]
        elif code == SQRT:
            for i in range(m):
                d[i] = np.sqrt(a[i])
        elif code == MAX:
            for i in range(m):
                d[i] = _max(a[i], b[i])
        elif code == MIN:
            for i in range(m):
                d[i] = _min(a[i], b[i])
        elif code == ABS:
            for i in range(m):
                d[i] = abs(a[i])
        elif code == RECIP:
            for i in range(m):
                d[i] = _ONE / (a[i] + b[i])
        else:
            for i in range(m):
                d[i] = _ONE / np.sqrt(a[i] + b[i])
        if mode == EXACT_STORED:        # then fp16.round_fp16 (NaN kept), as run_stored would
            for i in range(m):
                d[i] = compiled._round16(d[i], _TOP, False, True, _ZERO)
    elif code == ADD:
        for i in range(m):
            d[i] = compiled._round16(a[i] + b[i], _TOP, False, False, _ZERO)
    elif code == SUB:
        for i in range(m):
            d[i] = compiled._round16(a[i] - b[i], _TOP, False, False, _ZERO)
    elif code == MUL:
        for i in range(m):
            d[i] = compiled._round16(a[i] * b[i], _TOP, False, False, _ZERO)
    elif code == DIV:
        if mode == CHIP_UNSIGNED_ZERO:
            for i in range(m):
                d[i] = compiled._round16(a[i] / (b[i] + _ZERO), _TOP, False, False, _ZERO)
        else:
            for i in range(m):
                d[i] = compiled._round16(a[i] / b[i], _TOP, False, False, _ZERO)
    elif code == SQRT:
        for i in range(m):
            d[i] = compiled._round16(np.sqrt(a[i]) + _ZERO, _TOP, False, False, _ZERO)
    elif code == MAX:
        for i in range(m):
            d[i] = compiled._round16(_max(a[i], b[i]), _TOP, False, False, _ZERO)
    elif code == MIN:
        for i in range(m):
            d[i] = compiled._round16(_min(a[i], b[i]), _TOP, False, False, _ZERO)
    elif code == ABS:
        for i in range(m):
            d[i] = compiled._round16(abs(a[i]), _TOP, False, False, _ZERO)
    else:
        z = _ZERO if mode == CHIP_UNSIGNED_ZERO else _NEG_ZERO       # nx.denominator
        for i in range(m):
            t = compiled._round16(a[i] + b[i], _TOP, False, False, _ZERO) + z     # nx.store
            v = _ONE / t if code == RECIP else _ONE / np.sqrt(t)
            d[i] = compiled._round16(v, _TOP, False, False, _ZERO)


@intrinsic
def _half(typingctx, x):
    """float32 -> fp16 -> float32: the conversion instruction pair (F16C, arm64)."""
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())
    return t.float32(t.float32), codegen


# The storage rounding on a host that converts to fp16 in hardware: round half to even,
# subnormals kept, overflow to infinity, which is compiled._round16(v, _TOP, False, ...) for
# every float32 that is not a NaN (the tests check ties, subnormal edges, 65504 and 65520).
# _round16's NaN results (nan_val, the NaN, or a zero where the bits wrap) come from a redo
# of the block through _apply_bits, so a NaN costs a second pass and nothing else does. The
# host's CPU features are part of numba's cache key: a cached `run` never crosses hosts.
HARDWARE = compiled.hardware_fp16()
if HARDWARE:
    _round = _half
else:
    @_jit
    def _round(v):
        return compiled._round16(v, _TOP, False, True, _ZERO)


@_jit
def _exact(code, a, b, d, m, stored):
    """_apply_bits(code, EXACT or EXACT_STORED, ...) in one pass with the NaN check, the
    storage rounding by _round; True when a float32 result is a NaN (EXACT_STORED: the block
    is then redone by _apply_bits, which keeps the NaN). Each result is the float32 value
    _apply_bits computes, so without a NaN, d holds its bits (EXACT) or their _round
    (EXACT_STORED), and a NaN is reported as _has_nan on d reported it."""
    nan = False
    if code == ADD:
        for i in range(m):
            v = a[i] + b[i]
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == SUB:
        for i in range(m):
            v = a[i] - b[i]
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == MUL:
        for i in range(m):
            v = a[i] * b[i]
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == DIV:
        for i in range(m):
            v = a[i] / b[i]
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == COPY:
        for i in range(m):
            v = a[i]
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == SQRT:
        for i in range(m):
            v = np.sqrt(a[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == MAX:
        for i in range(m):
            v = _max(a[i], b[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == MIN:
        for i in range(m):
            v = _min(a[i], b[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == ABS:
        for i in range(m):
            v = abs(a[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    elif code == RECIP:
        for i in range(m):
            v = _ONE / (a[i] + b[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    else:
        for i in range(m):
            v = _ONE / np.sqrt(a[i] + b[i])
            nan |= v != v
            d[i] = _round(v) if stored else v
    if nan and stored:
        _apply_bits(code, EXACT_STORED, a, b, d, m)
    return nan


@_jit
def _apply(code, mode, a, b, d, m, check):
    """_apply_bits, with the rounding of _round (about 3x fewer instructions than the bit
    arithmetic where it is the hardware conversion) and a redo when a result is a NaN.
    Returns whether an exact-mode result is a NaN where `check` asks (the caller then redoes
    the region op by op); False otherwise (chip modes: their NaN rule leaves none)."""
    if mode == EXACT:
        if check:
            return _exact(code, a, b, d, m, False)
        _apply_bits(code, mode, a, b, d, m)
        return False
    if mode == EXACT_STORED:
        return _exact(code, a, b, d, m, True) and check
    nan = False
    if code == ADD:
        for i in range(m):
            v = a[i] + b[i]
            nan |= v != v
            d[i] = _round(v)
    elif code == SUB:
        for i in range(m):
            v = a[i] - b[i]
            nan |= v != v
            d[i] = _round(v)
    elif code == MUL:
        for i in range(m):
            v = a[i] * b[i]
            nan |= v != v
            d[i] = _round(v)
    elif code == DIV:
        if mode == CHIP_UNSIGNED_ZERO:
            for i in range(m):
                v = a[i] / (b[i] + _ZERO)
                nan |= v != v
                d[i] = _round(v)
        else:
            for i in range(m):
                v = a[i] / b[i]
                nan |= v != v
                d[i] = _round(v)
    elif code == SQRT:
        for i in range(m):
            v = np.sqrt(a[i]) + _ZERO
            nan |= v != v
            d[i] = _round(v)
    elif code == MAX:
        for i in range(m):
            v = _max(a[i], b[i])
            nan |= v != v
            d[i] = _round(v)
    elif code == MIN:
        for i in range(m):
            v = _min(a[i], b[i])
            nan |= v != v
            d[i] = _round(v)
    elif code == ABS:
        for i in range(m):
            v = abs(a[i])
            nan |= v != v
            d[i] = _round(v)
    elif code == RECIP:
        z = _ZERO if mode == CHIP_UNSIGNED_ZERO else _NEG_ZERO
        for i in range(m):
            v = _ONE / (_round(a[i] + b[i]) + z)        # a NaN sum stays NaN here: redone below
            nan |= v != v
            d[i] = _round(v)
    else:
        z = _ZERO if mode == CHIP_UNSIGNED_ZERO else _NEG_ZERO
        for i in range(m):
            v = _ONE / np.sqrt(_round(a[i] + b[i]) + z)
            nan |= v != v
            d[i] = _round(v)
    if nan:             # d never shares memory with a or b (the tape gives each result a row)
        _apply_bits(code, mode, a, b, d, m)
    return False


@_jit
def _scalar_b(code, mode, a, bv, d, m, check, fill):
    """_apply(code, mode, a, b, d, m, check) for b one value bv, read in the loop instead of
    from a row filled with it per block (AdamW's region: most rows have a constant operand).
    The same float32 operations; a block where a result is a NaN (whose payload the
    compiler's operand order could change) is redone by _apply itself on `fill` filled with
    bv, so every result and report is _apply's."""
    c = bv + _ZERO if mode == CHIP_UNSIGNED_ZERO and code == DIV else bv
    raw = mode == EXACT
    nan = False
    if code == ADD:
        for i in range(m):
            v = a[i] + c
            nan |= v != v
            d[i] = v if raw else _round(v)
    elif code == SUB:
        for i in range(m):
            v = a[i] - c
            nan |= v != v
            d[i] = v if raw else _round(v)
    elif code == MUL:
        for i in range(m):
            v = a[i] * c
            nan |= v != v
            d[i] = v if raw else _round(v)
    else:
        for i in range(m):
            v = a[i] / c
            nan |= v != v
            d[i] = v if raw else _round(v)
    if not nan:
        return False
    for i in range(m):
        fill[i] = bv
    return _apply(code, mode, a, fill, d, m, check)


@numba.njit(cache=True, nogil=True, error_model="numpy")    # compiled on first call (one signature)
def run(groups, tape, addrs, rows, width):
    """Run the tape with `rows` scratch rows of `width` elements (the last two are the
    broadcast fill rows); True when an exact-mode output holds a NaN or a MAX or MIN row
    meets zeros of opposite signs (the caller then runs the region op by op)."""
    scratch = np.empty((rows, width), np.float32)
    sbase = scratch.ctypes.data
    fill_a, fill_b = scratch.shape[0] - 2, scratch.shape[0] - 1
    bad = False
    for g in range(groups.shape[0]):
        n, k0, k1 = groups[g, 0], groups[g, 1], groups[g, 2]
        for base in range(0, n, width):
            m = min(width, n - base)
            for k in range(k0, k1):
                code = tape[k, 0]
                a = _view(tape[k, 1], tape[k, 2], tape[k, 3], tape[k, 4], addrs, sbase, width, base, m, fill_a)
                d = _view(tape[k, 9], tape[k, 10], 0, 0, addrs, sbase, width, base, m, fill_a)
                if tape[k, 5] == SCALAR and code <= DIV and tape[k, 1] != SCALAR:
                    bv = numba.carray(_fptr(addrs[tape[k, 6]]), 1)[0]
                    fill = numba.carray(_fptr(sbase + 4 * fill_b * width), m)
                    bad |= _scalar_b(code, tape[k, 11], a, bv, d, m, tape[k, 12] != 0, fill)
                    continue
                b = _view(tape[k, 5], tape[k, 6], tape[k, 7], tape[k, 8], addrs, sbase, width, base, m, fill_b)
                if code == MAX or code == MIN:
                    bad |= _mixed_zeros(a, b, m)
                bad |= _apply(code, tape[k, 11], a, b, d, m, tape[k, 12] != 0)
    return bad


def warm_up() -> None:
    """Compile `run` (or load it from numba's cache) now, on a one-op tape: out = x * x."""
    x, out = np.ones(2, np.float32), np.empty(2, np.float32)
    tape = np.array([[MUL, ARRAY, 0, 0, 0, ARRAY, 0, 0, 0, ARRAY, 1, EXACT, 1]], np.int64)
    run(np.array([[2, 0, 1]], np.int64), tape, np.array([x.ctypes.data, out.ctypes.data], np.int64), 3, 2)
