"""Compressed weights: `ak.quantize(prog, "int8" | "lut4" | "lut6")` rewrites a program's large
weights into the MIL constexpr ops the engine reconstructs at the multiplier input (guide ch. 7,
25), so weight-bound programs (LLM decode) stream fewer bytes where the chip streams the form.

Formats
- "int8": per-output-channel symmetric affine, w = scale * q with q = round(w / scale) in
  [-127, 127] and an fp16 scale per channel (max |w| / 127). Symmetric because the M1 generation
  forces the zero point to 0 (guide ch. 25, "The M1 forces the zero point to zero"), so the same
  weights are legal everywhere. Emitted as iOS 16 `constexpr_affine_dequantize` (default) or
  iOS 18 `constexpr_blockwise_shift_scale` with one block per channel (`int8_op="blockwise"`).
- "lut4" / "lut6": palettized, `constexpr_lut_to_dense` (iOS 18) with 16 / 64 fp16 entries; a
  palette per group of `group_size` consecutive output channels (default 16; the gcd with the
  channel count when it does not divide it; `group_size=None`: one palette per tensor, the only
  granularity of the iOS 16 form, which the ios16 dialect (M1, M2) writes). Palettes by 1-D k-means (`palette="kmeans"`,
  16 Lloyd iterations from density^(1/3) quantile seeds) or the uniform quantiles of the group's values
  (`palette="quantile"`). Indices are the nearest fp16 palette entry.

Which weights: const (fp16 / fp32) operands of conv, conv_transpose, linear and matmul with at
least `min_size` elements (default 4096, a 64 x 64 matrix): small tensors (biases, norm scales,
tiny projections) stream in negligible time and their tables would eat the saving. `ops`
narrows the consumer op types. The channel axis is the consumer's output-channel axis (conv:
0, conv_transpose: 1, linear: 0, matmul: the non-contracted axis of the const operand).

The simulator reconstructs each form once, in fp32, and stores the result in the chip's fp16
format: scale * q is exact in fp32 (11 x 8 significant bits), so that is one rounding of the
exact product, as the engine's fp16 reconstruction (guide ch. 7: "a compressed weight is turned
back into fp16 before it reaches the multiply array"); palette entries are fp16 already.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import DTypeError, ShapeError, UsageError
from .ir.graph import Function, Op, Program, Tensor
from .ir.builder import make_const
from .ir.declared import F
from .ir.spec import REGISTRY

FORMATS = ("int8", "lut4", "lut6")
PALETTES = ("kmeans", "quantile")
INT8_OPS = ("affine", "blockwise")
WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")
DEFAULT_MIN_SIZE = 4096
DEFAULT_GROUP_SIZE = 16
KMEANS_ITERS = 16
QMAX = 127                     # symmetric int8: -128 is left out so the range is symmetric
_FP16_TINY = np.float16(2.0 ** -24)


# --- one array ------------------------------------------------------------------------------

def int8_symmetric(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(q int8, scale fp16 [C]) with w ~ scale * q per channel along `axis`."""
    wf = np.asarray(w, dtype=np.float64)
    ax = axis % wf.ndim
    red = tuple(i for i in range(wf.ndim) if i != ax)
    amax = np.abs(wf).max(axis=red) if red else np.abs(wf)
    scale = (amax / QMAX).astype(np.float16)
    # A channel of zeros takes scale 1 (q = 0); one below fp16's range takes the smallest step.
    scale = np.where(amax == 0, np.float16(1), np.maximum(scale, _FP16_TINY)).astype(np.float16)
    shape = [1] * wf.ndim
    shape[ax] = -1
    q = np.clip(np.rint(wf / scale.astype(np.float64).reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def _groups(channels: int, group_size: int | None) -> int:
    """Palette groups along the channel axis: consecutive runs of gcd(channels, group_size);
    one for the whole tensor when group_size is None (the iOS 16 form's only granularity)."""
    if group_size is None:
        return 1
    return channels // math.gcd(channels, max(1, int(group_size)))


def _nearest(values: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of each row's sorted palette: values [G, n], palette [G, K].
    One searchsorted over all rows: each row is shifted by its own offset so the rows' midpoints
    form one sorted list (offsets are spaced wider than any row's span)."""
    g, k = palette.shape
    mid = (palette[:, 1:] + palette[:, :-1]) / 2                         # [G, K-1]
    lo = min(values.min(), palette.min())
    span = 2.0 * (max(values.max(), palette.max()) - lo) + 1.0
    shift = (np.arange(g, dtype=np.float64) * span)[:, None] - lo
    pos = np.searchsorted((mid + shift).reshape(-1), (values + shift).reshape(-1), side="left")
    return (pos.reshape(values.shape) - (np.arange(g) * (k - 1))[:, None]).astype(np.uint8)


def _seed(values: np.ndarray, k: int) -> np.ndarray:
    """Starting centroids per row: quantiles of the density^(1/3) (the point density of an
    optimal fine quantizer), from a histogram, so tails get entries as k-means would give them."""
    out = np.empty((values.shape[0], k))
    targets = (np.arange(k) + 0.5) / k
    for i, row in enumerate(values):
        h, edges = np.histogram(row, bins=max(64, 8 * k))
        c = np.concatenate([[0.0], np.cumsum(np.cbrt(h.astype(np.float64)))])
        out[i] = np.interp(targets, c / c[-1], edges)
    return out


def _row_counts(sorted_rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per row, how many of its sorted values are <= each edge: sorted_rows [G, n], edges [G, m]."""
    g, n = sorted_rows.shape
    lo = min(sorted_rows.min(), edges.min())
    span = 2.0 * (max(sorted_rows.max(), edges.max()) - lo) + 1.0
    shift = (np.arange(g, dtype=np.float64) * span)[:, None] - lo
    pos = np.searchsorted((sorted_rows + shift).reshape(-1), (edges + shift).reshape(-1), side="right")
    return pos.reshape(edges.shape) - (np.arange(g) * n)[:, None]


def _kmeans(values: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Sorted 1-D k-means centroids per row (Lloyd), values [G, n]. In one dimension each
    cluster is a run of the sorted values, so an iteration needs only the run boundaries and
    prefix sums (no per-value pass). An emptied entry splits the run with the largest error."""
    g, n = values.shape
    sv = np.sort(values, axis=1)
    zero = np.zeros((g, 1))
    s1 = np.concatenate([zero, np.cumsum(sv, axis=1)], axis=1)
    s2 = np.concatenate([zero, np.cumsum(sv * sv, axis=1)], axis=1)
    rows = np.arange(g)
    cent = np.sort(_seed(values, k), axis=1)
    for _ in range(iters):
        mid = (cent[:, 1:] + cent[:, :-1]) / 2
        bounds = np.concatenate([np.zeros((g, 1), np.int64), _row_counts(sv, mid), np.full((g, 1), n)], axis=1)
        counts = np.diff(bounds, axis=1)
        sums = np.diff(np.take_along_axis(s1, bounds, 1), axis=1)
        sq = np.diff(np.take_along_axis(s2, bounds, 1), axis=1)
        cent = np.where(counts > 0, sums / np.maximum(counts, 1), cent)
        empty = counts == 0
        while empty.any():
            err = np.where(counts > 0, sq - sums * sums / np.maximum(counts, 1), -1.0)
            worst = err.argmax(axis=1)
            hit = empty.any(axis=1)
            spread = np.sqrt(np.maximum(err[rows, worst], 0) / np.maximum(counts[rows, worst], 1))
            first = empty.argmax(axis=1)
            cent[rows[hit], first[hit]] = (cent[rows, worst] + 0.5 * spread + 1e-12)[hit]
            empty[rows[hit], first[hit]] = False
            err[rows[hit], worst[hit]] = -1.0
        cent.sort(axis=1)
    return cent


def palettize(w: np.ndarray, bits: int, axis: int, group_size: int | None = DEFAULT_GROUP_SIZE,
              palette: str = "kmeans", iters: int = KMEANS_ITERS) -> tuple[np.ndarray, np.ndarray]:
    """(indices uint8 [w.shape], lut fp16 [rank+2]) for `constexpr_lut_to_dense`: a palette of
    2**bits entries per group of consecutive channels along `axis`."""
    if palette not in PALETTES:
        raise UsageError(f"palette must be one of {', '.join(PALETTES)}, got {palette!r}")
    wf = np.asarray(w, dtype=np.float64)
    ax = axis % wf.ndim
    k = 1 << bits
    groups = _groups(wf.shape[ax], group_size)
    rows = np.moveaxis(wf, ax, 0).reshape(groups, -1)        # each group's values, channel-major
    if palette == "kmeans":
        cent = _kmeans(rows, k, iters)
    else:
        cent = np.quantile(rows, (np.arange(k) + 0.5) / k, axis=1).T
    lut = np.sort(cent.astype(np.float16), axis=1)           # stored entries, then assign to them
    idx = _nearest(rows, lut.astype(np.float64))
    moved = [wf.shape[ax]] + [n for i, n in enumerate(wf.shape) if i != ax]
    indices = np.moveaxis(idx.reshape(moved), 0, ax)
    lut_shape = [1] * wf.ndim + [k, 1]
    lut_shape[ax] = groups
    # lut [.., groups along ax, .., K, 1]: entry [g, j] of group g sits at index g on axis ax.
    lut = np.moveaxis(lut.reshape([groups] + [1] * (wf.ndim - 1) + [k, 1]), 0, ax).reshape(lut_shape)
    return np.ascontiguousarray(indices), np.ascontiguousarray(lut)


def dequantize_reference(kind: str, arrays: tuple) -> np.ndarray:
    """float64 reconstruction from the arrays of int8_symmetric ("int8": q, scale, axis) or
    palettize ("lut": indices, lut, axis)."""
    if kind == "int8":
        q, scale, axis = arrays
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        return q.astype(np.float64) * scale.astype(np.float64).reshape(shape)
    indices, lut, axis = arrays
    ax = axis % indices.ndim
    groups = lut.shape[ax]
    per = indices.shape[ax] // groups
    g = np.arange(indices.shape[ax]) // per
    table = np.moveaxis(lut, ax, 0).reshape(groups, -1)        # [groups, K]
    idx = np.moveaxis(indices, ax, 0)
    gsh = [-1] + [1] * (idx.ndim - 1)
    return np.moveaxis(table[g.reshape(gsh), idx].astype(np.float64), 0, ax)


# --- the graph rewrite -----------------------------------------------------------------------

def _channel_axis(op: Op, param: str, rank: int) -> int | None:
    """Output-channel axis of a weight operand, None when the operand is not a weight slot."""
    if op.type in ("conv", "linear") and param == "weight":
        return 0
    if op.type == "conv_transpose" and param == "weight":
        return 1
    if op.type == "matmul" and param in ("x", "y") and rank >= 2:
        flag = bool(op.attr("transpose_" + param))
        if param == "x":
            return rank - 1 if flag else rank - 2
        return rank - 2 if flag else rank - 1
    return None


def _check_format(fmt: str) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"quantization format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return 8 if fmt == "int8" else int(fmt[3:])


def _compressed_op(fmt: str, value: np.ndarray, dtype: str, axis: int, opts: dict, cache):
    """The constexpr op's output tensor reconstructing `value` (built with the op builders)."""
    key = None
    if cache is not None:
        digest = hashlib.blake2b(np.ascontiguousarray(value).view(np.uint8), digest_size=16).hexdigest()
        key = (fmt, tuple(sorted(opts.items())), axis, str(value.dtype), value.shape, digest)
    arrays = cache.get(key) if key is not None else None
    if arrays is None:
        if fmt == "int8":
            arrays = int8_symmetric(value, axis)
        else:
            arrays = palettize(value, int(fmt[3:]), axis, opts["group_size"], opts["palette"])
        if key is not None:
            cache[key] = arrays
    np_float = np.float16 if dtype == "fp16" else np.float32
    if fmt == "int8":
        q, scale = arrays
        if opts["int8_op"] == "affine":
            return F.constexpr_affine_dequantize(quantized_data=q, zero_point=np.int8(0),
                         scale=scale.astype(np_float), axis=axis)
        shape = [1] * q.ndim
        shape[axis] = -1
        return F.constexpr_blockwise_shift_scale(make_const(q, "int8"),
                     make_const(scale.astype(np_float).reshape(shape), dtype))
    indices, lut = arrays
    return F.constexpr_lut_to_dense(make_const(indices, f"uint{fmt[3:]}"), make_const(lut.astype(np_float), dtype))


def quantize(prog: Program, fmt: str, *, min_size: int = DEFAULT_MIN_SIZE, ops=WEIGHT_OPS,
             palette: str = "kmeans", group_size: int | None = DEFAULT_GROUP_SIZE, int8_op: str = "affine",
             cache: dict | None = None) -> Program:
    """A copy of `prog` whose large conv / linear / matmul const weights are stored compressed
    (`fmt` "int8", "lut4" or "lut6"; see the module doc). `cache` (a dict kept by the caller)
    reuses the compressed arrays of identical weights across calls, e.g. the prefill and
    decode programs of one model."""
    _check_format(fmt)
    if not isinstance(prog, Program):
        raise UsageError(f"quantize needs an anekit Program, got {type(prog).__name__}")
    if palette not in PALETTES:
        raise UsageError(f"palette must be one of {', '.join(PALETTES)}, got {palette!r}")
    if int8_op not in INT8_OPS:
        raise UsageError(f"int8_op must be one of {', '.join(INT8_OPS)}, got {int8_op!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise UsageError(f"min_size must be a positive integer, got {min_size!r}")
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer))
                                   or group_size < 1):
        raise UsageError(f"group_size must be a positive integer or None (one palette per tensor), got {group_size!r}")
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = [o for o in ops if o not in WEIGHT_OPS]
    if unknown:
        raise UsageError(f"ops: {unknown[0]!r} has no weight operand to quantize (choose from {', '.join(WEIGHT_OPS)})")
    opts = {"palette": palette, "group_size": None if group_size is None else int(group_size), "int8_op": int8_op}
    fns = {name: _quantize_function(fn, fmt, int(min_size), ops, opts, cache) for name, fn in prog.functions.items()}
    return Program(fns, prog.version, dict(prog.attributes), prog.dialect)


def _plan(fn: Function, min_size: int, ops) -> dict[int, int]:
    """id(const op) -> channel axis, for the consts to compress (first weight use decides)."""
    plan: dict[int, int] = {}
    for op in fn.ops:
        if op.type not in ops:
            continue
        for pname, t in op.inputs.items():
            if isinstance(t, tuple) or t.op is None or t.op.type != "const" or id(t.op) in plan:
                continue
            if t.dtype not in ("fp16", "fp32") or t.size < min_size:
                continue
            axis = _channel_axis(op, pname, t.rank)
            if axis is not None:
                plan[id(t.op)] = axis
    return plan


def _quantize_function(fn: Function, fmt: str, min_size: int, ops, opts: dict, cache) -> Function:
    plan = _plan(fn, min_size, ops)
    names = {o.name for o in fn.ops} | {t.name for t in fn.inputs}
    new: dict[int, Tensor] = {}
    inputs = []
    for t in fn.inputs:
        nt = Tensor(t.dtype, t.shape, name=t.name, range=t.range, state=t.state)
        nt._seq = t._seq
        new[id(t)] = nt
        inputs.append(nt)
    out_ops: list[Op] = []
    for o in fn.ops:
        if id(o) in plan:
            old = o.outputs[0]
            value = np.asarray(old.const)
            if not np.isfinite(value).all():
                raise UsageError(f"quantize: weight '{old.name}' holds NaN or infinite values")
            t = _compressed_op(fmt, value, old.dtype, plan[id(o)], opts, cache)
            cop = t.op
            for pname, src in cop.inputs.items():      # the constexpr's own consts, named after it
                base, n, i = f"{o.name}_{pname}", f"{o.name}_{pname}", 0
                while n in names:
                    i += 1
                    n = f"{base}_{i}"
                names.add(n)
                src.op.name, src.name = n, n
                out_ops.append(src.op)
            cop.name, t.name = o.name, old.name
            new[id(old)] = t
            out_ops.append(cop)
            continue
        no = Op(o.spec, {}, dict(o.attrs), o.name)
        for pname, v in o.inputs.items():
            no.inputs[pname] = tuple(new[id(x)] for x in v) if isinstance(v, tuple) else new[id(v)]
        for i, t in enumerate(o.outputs):
            nt = Tensor(t.dtype, t.shape, no, i, t.name, t.const)
            new[id(t)] = nt
            no.outputs.append(nt)
        out_ops.append(no)
    return Function(fn.name, inputs, out_ops, [new[id(t)] for t in fn.outputs], fn.opset,
                    dict(fn.attributes), fn.states)


# --- shape-only weights (cost estimates of models too large to hold) -------------------------

def placeholder_weight(shape, fmt: str = "fp16", axis: int = 0, dtype: str = "fp16",
                       group_size: int = DEFAULT_GROUP_SIZE) -> Tensor:
    """A weight tensor of `shape` stored as `fmt` ("fp16", "int8", "lut4", "lut6") whose data are
    zero-stride views (np.broadcast_to): it costs no memory, prices like the real weight in
    `ak.estimate` (which reads only shapes and dtypes), and must not be simulated or saved. The
    ops are assembled directly because the builders copy const values into dense arrays."""
    shape = tuple(int(s) for s in shape)
    if not shape or any(s <= 0 for s in shape):
        raise ShapeError(f"placeholder_weight: shape {shape} must be positive integers")
    if dtype not in ("fp16", "fp32"):
        raise DTypeError(f"placeholder_weight: dtype {dtype!r} must be fp16 or fp32")
    np_float = np.float16 if dtype == "fp16" else np.float32

    def const(value_shape, np_dtype, ir_dtype):
        val = np.broadcast_to(np_dtype(0), tuple(value_shape))
        op = Op(REGISTRY["const"], {}, {"val": val})
        op.outputs.append(Tensor(ir_dtype, val.shape, op, 0, None, val))
        return op.outputs[0]

    if fmt == "fp16":
        return const(shape, np_float, dtype)
    ax = axis % len(shape)
    if fmt == "int8":
        attrs = {"quantized_data": np.broadcast_to(np.int8(0), shape), "zero_point": np.int8(0),
                 "scale": np.broadcast_to(np_float(1), (shape[ax],)), "axis": np.int32(ax)}
        op = Op(REGISTRY["constexpr_affine_dequantize"], {}, attrs)
    else:
        bits = _check_format(fmt)
        lut_shape = [1] * len(shape) + [1 << bits, 1]
        lut_shape[ax] = _groups(shape[ax], group_size)
        op = Op(REGISTRY["constexpr_lut_to_dense"],
                {"indices": const(shape, np.uint8, f"uint{bits}"), "lut": const(lut_shape, np_float, dtype)})
    op.outputs.append(Tensor(dtype, shape, op, 0))
    return op.outputs[0]
