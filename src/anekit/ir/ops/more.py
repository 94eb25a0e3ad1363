"""The rest of the Core ML op set the PyTorch converter emits (issue 15's audit,
docs/coreml.md "Op coverage audit"): scatters (torch.Tensor.scatter_, index_put, the GRU
loop's output writes), tensor construction (fill, shape, range_1d, one_hot, band_part for
tril/triu), argsort, prelu, softplus_parametric, threshold, pixel_unshuffle, the hyperbolic
and inverse trigonometric functions, and `rnn` (torch.nn.RNN). Semantics follow the MIL op
set as coremltools 9 defines it (coremltools.converters.mil.mil.ops.defs).
"""
from __future__ import annotations

import math

from .. import intervals as iv
from ..spec import MacWork, Param, const, declare, op, tensor
from ._rules import axis
from .core import _tensor_bytes
from .reduce import _reduce

ANY = ("fp16", "fp32", "int32", "bool")
NUMERIC = ("fp16", "fp32", "int32")
SCATTER_MODES = ("update", "add", "sub", "mul", "div", "max", "min")
_VALIDATE = {"validate_indices": (False, True)}   # iOS 17: a runtime bounds check (anekit always checks)


def _scatter_range(op, res):
    d, u = res.of(op.inputs["data"]), res.of(op.inputs["updates"])
    mode = op.attr("mode")
    if mode in ("update", "max", "min"):
        return iv.union(d, u)
    return None if mode in ("mul", "div") else iv.union(d, iv.fix(d[0] + u[0], d[1] + u[1]) if mode == "add"
                                                          else iv.fix(d[0] - u[1], d[1] - u[0]))


@op(kind="movement", T=NUMERIC, data=tensor(), indices=tensor("int32"), updates=tensor(),
    axis=const("int32", 0, default=0), mode=const("string", 0, default="update", choices=SCATTER_MODES),
    fp16_range=_scatter_range, coreml_ignored=_VALIDATE)
def scatter(a):
    """data with the slices at `indices` along `axis` combined with `updates` by `mode`
    (update: replaced; add/sub/mul/div/max/min: combined, repeated indices accumulate)."""
    ax = axis(a, "axis", a.axis, a.data.rank)
    if a.indices.rank != 1:
        raise a.fail("indices", f"must be 1-D, got shape {list(a.indices.shape)}")
    want = a.data.shape[:ax] + a.indices.shape + a.data.shape[ax + 1:]
    if a.updates.shape != want:
        raise a.fail("updates", f"shape {list(a.updates.shape)}, expected {list(want)}")
    return [(a.T, a.data.shape)]


@op(kind="movement", T=NUMERIC, data=tensor(), indices=tensor("int32"), updates=tensor(),
    axis=const("int32", 0, default=0), mode=const("string", 0, default="update", choices=SCATTER_MODES),
    fp16_range=_scatter_range, coreml_ignored=_VALIDATE)
def scatter_along_axis(a):
    """The inverse of gather_along_axis: updates[..., i, ...] goes to data[..., indices[..., i, ...], ...]
    (torch.Tensor.scatter_ / scatter_add_)."""
    ax = axis(a, "axis", a.axis, a.data.rank)
    if a.indices.shape != a.updates.shape or a.indices.rank != a.data.rank or any(
            s != t for i, (s, t) in enumerate(zip(a.indices.shape, a.data.shape)) if i != ax):
        raise a.fail("indices", f"shape {list(a.indices.shape)} must equal updates {list(a.updates.shape)} and "
                                f"data {list(a.data.shape)} off axis {ax}")
    return [(a.T, a.data.shape)]


@op(kind="movement", T=NUMERIC, data=tensor(), indices=tensor("int32"), updates=tensor(),
    mode=const("string", 0, default="add", choices=SCATTER_MODES), fp16_range=_scatter_range,
    coreml_ignored=_VALIDATE)
def scatter_nd(a):
    """The inverse of gather_nd: updates[i...] goes to data[*indices[i..., :]] (index_put_)."""
    k = a.indices.shape[-1] if a.indices.rank else 0
    if a.indices.rank < 1 or not 1 <= k <= a.data.rank:
        raise a.fail("indices", f"last axis {k} must address 1..{a.data.rank} axes of data {list(a.data.shape)}")
    want = a.indices.shape[:-1] + a.data.shape[k:]
    if a.updates.shape != want:
        raise a.fail("updates", f"shape {list(a.updates.shape)}, expected {list(want)}")
    return [(a.T, a.data.shape)]


# --- tensor construction ---------------------------------------------------------------------

@op(kind="movement", T=ANY, shape=const("int32", 1), value=const("T", 0),
    fp16_range=lambda op, res: (float(op.attr("value")),) * 2)
def fill(a):
    """A tensor of `shape` holding `value`, in value's dtype."""
    if not a.shape or any(s <= 0 for s in a.shape):
        raise a.fail("shape", f"{list(a.shape)} must be non-empty and positive")
    return [(a.T, tuple(a.shape))]


@op(kind="movement", T=ANY, x=tensor(), fp16_range=lambda op, res: (0.0, float(max(op.inputs["x"].shape, default=0))))
def shape(a):
    """x's shape as an int32 vector (a constant here: anekit shapes are static)."""
    return [("int32", (max(a.x.rank, 1),))]


def _range_count(a) -> int:
    if a.step == 0:
        raise a.fail("step", "must not be 0")
    n = math.ceil((a.end - a.start) / a.step)
    if n <= 0:
        raise a.fail("end", f"range({a.start}, {a.end}, {a.step}) is empty")
    return n


@op(kind="movement", T=NUMERIC, end=const("T", 0), start=const("T", 0), step=const("T", 0),
    fp16_range=lambda op, res: iv.union((float(op.attr("start")),) * 2, (float(op.attr("end")),) * 2))
def range_1d(a):
    """start, start + step, ... up to but excluding end (torch.arange). Its length must be
    known when the program is built, so start, end and step are constants here."""
    return [(a.T, (_range_count(a),))]


@op(kind="movement", T=NUMERIC, indices=tensor("int32"), one_hot_vector_size=const("int32", 0),
    axis=const("int32", 0, default=-1), on_value=const("T", 0, default=1), off_value=const("T", 0, default=0),
    fp16_range=lambda op, res: iv.union((float(op.attr("on_value")),) * 2, (float(op.attr("off_value")),) * 2))
def one_hot(a):
    """on_value where the new axis' position equals the index, else off_value (F.one_hot).
    Without a tensor of the value type among its inputs the op computes in int32 unless a
    float on/off value says otherwise."""
    n = a.one_hot_vector_size
    if n < 1:
        raise a.fail("one_hot_vector_size", f"must be >= 1, got {n}")
    ax = axis(a, "axis", a.axis, a.indices.rank, extra=1)
    shape_ = a.indices.shape[:ax] + (n,) + a.indices.shape[ax:]
    floats = any(isinstance(v, float) for v in (a.on_value, a.off_value))
    return [(a.T or ("fp32" if floats else "int32"), shape_)]


@op(kind="elementwise", T=ANY, x=tensor(), lower=const("int32", 0, default=-1), upper=const("int32", 0, default=-1),
    fp16_range=lambda op, res: iv.union(res.of(op.inputs["x"]), (0.0, 0.0)))
def band_part(a):
    """x on the band lower <= i - j ... of its last two axes, zero elsewhere: keeps (i, j)
    with j - i <= upper and i - j <= lower, a negative bound keeping that whole side
    (torch.tril / torch.triu)."""
    if a.x.rank < 2:
        raise a.fail("x", f"needs rank >= 2, got shape {list(a.x.shape)}")
    return [(a.T, a.x.shape)]


@op(kind="reduction", T=NUMERIC, x=tensor(), axis=const("int32", 0, default=-1),
    ascending=const("bool", 0, default=False),
    fp16_range=lambda op, res: (0.0, float(op.inputs["x"].shape[op.attr("axis") % op.inputs["x"].rank] - 1)))
def argsort(a):
    """The int32 indices that sort x along `axis` (descending unless ascending; stable)."""
    axis(a, "axis", a.axis, a.x.rank)
    return [("int32", a.x.shape)]


# --- activations with per-channel parameters --------------------------------------------------

def _per_channel(a, *names):
    if a.x.rank < 3:
        raise a.fail("x", f"needs rank >= 3 [B, C, ...], got shape {list(a.x.shape)}")
    for name in names:
        v = getattr(a, name)
        if getattr(v, "ndim", 1) != 1 or len(v) not in (1, a.x.shape[1]):
            raise a.fail(name, f"needs one value per channel ({a.x.shape[1]}), got shape {list(getattr(v, 'shape', ()))}")


def _prelu_range(op, res):
    x = iv.x_of(op, res)
    alpha = [float(v) for v in op.attr("alpha").reshape(-1)]
    lo = min(min(x[0], 0.0), min(v * x[0] for v in alpha) if x[0] < 0 else 0.0,
             min(v * min(x[1], 0.0) for v in alpha))
    hi = max(max(x[1], 0.0), max(v * x[0] for v in alpha) if x[0] < 0 else 0.0)
    return iv.fix(lo, hi)


@op(kind="activation", x=tensor(), alpha=const(("fp16", "fp32"), 1), fp16_range=_prelu_range)
def prelu(a):
    """x where x >= 0, else alpha[c] * x, alpha per channel (axis 1; nn.PReLU)."""
    _per_channel(a, "alpha")
    return [(a.T, a.x.shape)]


@op(kind="activation", x=tensor(), alpha=const(("fp16", "fp32"), 1), beta=const(("fp16", "fp32"), 1),
    fp16_range=iv.unbounded)
def softplus_parametric(a):
    """alpha[c] * log(1 + exp(beta[c] * x)), per channel (axis 1)."""
    _per_channel(a, "alpha", "beta")
    return [(a.T, a.x.shape)]


@op(kind="activation", x=tensor(), alpha=const("T", 0),
    fp16_range=lambda op, res: (max(iv.x_of(op, res)[0], float(op.attr("alpha"))),
                                max(iv.x_of(op, res)[1], float(op.attr("alpha")))))
def threshold(a):
    """max(x, alpha)."""
    return [(a.T, a.x.shape)]


@op(kind="movement", T=ANY, x=tensor(), downscale_factor=const("int32", 0), fp16_range=iv.same, since="ios16")
def pixel_unshuffle(a):
    """[N, C, H*f, W*f] -> [N, C*f*f, H, W] (space to depth, PyTorch's channel order)."""
    f = a.downscale_factor
    if a.x.rank != 4:
        raise a.fail("x", f"needs rank 4 [N, C, H, W], got shape {list(a.x.shape)}")
    n, c, h, w = a.x.shape
    if f < 1 or h % f or w % f:
        raise a.fail("downscale_factor", f"{f} must divide H {h} and W {w}")
    return [(a.T, (n, c * f * f, h // f, w // f))]


@op(kind="activation", x=tensor(), alpha=const("T", 0), beta=const("T", 0),
    fp16_range=lambda op, res: (min(0.0, float(op.attr("alpha")) * iv.x_of(op, res)[0], float(op.attr("beta")))
                                if iv.bounded(iv.x_of(op, res)) else -iv.INF, float(op.attr("beta"))))
def clamped_relu(a):
    """min(beta, x) where x >= 0, else min(beta, alpha * x)."""
    return [(a.T, a.x.shape)]


@op(kind="activation", x=tensor(), alpha=const("T", 0, default=1.0), beta=const("T", 0, default=1.0),
    fp16_range=lambda op, res: (-abs(float(op.attr("alpha"))), abs(float(op.attr("alpha")))))
def scaled_tanh(a):
    """alpha * tanh(beta * x)."""
    return [(a.T, a.x.shape)]


@op(kind="reduction", x=tensor(), axes=const("int32", 1, default=None), keep_dims=const("bool", 0, default=False),
    fp16_range=iv.unbounded)
def reduce_log_sum(a):
    """log(reduce_sum(x)) over `axes` (all when omitted)."""
    return _reduce()(a)


@op(kind="movement", T=ANY, x=tensor(), axis=const("int32", 0, default=1), path="free", fp16_range=iv.same)
def flatten2d(a):
    """Reshape to [prod(shape[:axis]), prod(shape[axis:])]."""
    ax = axis(a, "axis", a.axis, a.x.rank, extra=1)
    return [(a.T, (math.prod(a.x.shape[:ax]), math.prod(a.x.shape[ax:])))]


# --- unary math beyond the core set ------------------------------------------------------------

def _same(a):
    return [(a.T, a.x.shape)]


# name: fp16 output interval given x's, or None when unbounded
_UNARY_MORE = {
    "sinh": lambda x: iv.monotone(math.sinh, (max(x[0], -12.0), min(x[1], 12.0))) if iv.bounded(x) else None,
    "cosh": None,
    "asin": lambda x: (-math.pi / 2, math.pi / 2),
    "acos": lambda x: (0.0, math.pi),
    "atanh": None,
    "asinh": lambda x: iv.monotone(math.asinh, x) if iv.bounded(x) else None,
    "acosh": None,
}
for _name, _rule in _UNARY_MORE.items():
    declare(_name, kind="activation", infer=_same, x=tensor(), doc=f"Elementwise {_name}.",
            fp16_range=iv.unbounded if _rule is None else (lambda r: lambda op, res: r(iv.x_of(op, res)))(_rule))


# --- rnn (torch.nn.RNN) ------------------------------------------------------------------------

def _rnn_range(op, res):
    act = op.attr("activation")
    h = (-1.0, 1.0) if act == "tanh" else (0.0, 1.0) if act == "sigmoid" else None
    return None if h is None else [h, h]


@op(kind="recurrent", x=tensor(), initial_h=tensor(), weight_ih=tensor(), weight_hh=tensor(),
    bias=tensor(optional=True),
    direction=const("string", 0, default="forward", choices=("forward", "reverse")),
    output_sequence=const("bool", 0, default=False),
    activation=const("string", 0, default="tanh", choices=("sigmoid", "tanh", "relu", "linear",
                                                            "hard_sigmoid", "scaled_tanh")),
    fp16_range=_rnn_range)
def rnn(a):
    """h_t = act(W_ih x_t + W_hh h_{t-1} + b) over x [S, B, I]; returns (every or the last h
    [S | 1, B, H], last h [B, H]). Guide Appendix A: no engine path on any family."""
    if a.x.rank != 3:
        raise a.fail("x", f"shape {list(a.x.shape)}: rnn takes [sequence, batch, input]")
    s, b, i = a.x.shape
    if a.weight_hh.rank != 2 or a.weight_hh.shape[0] != a.weight_hh.shape[1] or \
            a.weight_ih.shape != (a.weight_hh.shape[0], i):
        raise a.fail("weight_ih", f"{list(a.weight_ih.shape)} and weight_hh {list(a.weight_hh.shape)} must be "
                                  f"[H, {i}] and [H, H]")
    hh = a.weight_hh.shape[0]
    if a.bias is not None and a.bias.shape != (hh,):
        raise a.fail("bias", f"shape {list(a.bias.shape)}, expected [{hh}]")
    if a.initial_h.shape != (b, hh):
        raise a.fail("initial_h", f"shape {list(a.initial_h.shape)}, expected [{b}, {hh}]")
    return [(a.T, (s if a.output_sequence else 1, b, hh)), (a.T, (b, hh))]


# --- resample (torch.nn.functional.grid_sample) ------------------------------------------------

RESAMPLE_PADDING = ("constant", "border", "reflection", "symmetric")
RESAMPLE_COORDINATES = ("unnormalized", "normalized_minus_one_to_one", "normalized_zero_to_one")


@op(kind="movement", x=tensor(), coordinates=tensor(("fp16", "fp32", "int32")),
    sampling_mode=const("string", 0, choices=("bilinear", "nearest")),
    padding_mode=const("string", 0, choices=RESAMPLE_PADDING), padding_value=const("T", 0),
    coordinates_mode=const("string", 0, choices=RESAMPLE_COORDINATES), align_corners=const("bool", 0),
    fp16_range=lambda op, res: iv.union(res.of(op.inputs["x"]), (float(op.attr("padding_value")),) * 2))
def resample(a):
    """Sample x [B, C, H, W] at coordinates [B, H2, W2, (x, y)] (bilinear or nearest);
    outside the image: padding_value (constant), the edge (border), mirrored about the edge
    pixels' centres (reflection) or their outer edges (symmetric, torch's reflection without
    align_corners). Bilinear values are convex combinations of x and the padding value."""
    if a.x.rank != 4 or a.coordinates.rank != 4 or a.coordinates.shape[-1] != 2 or \
            a.coordinates.shape[0] not in (1, a.x.shape[0]):
        raise a.fail("coordinates", f"x {list(a.x.shape)} and coordinates {list(a.coordinates.shape)} must be "
                                    f"[B, C, H, W] and [B, H2, W2, 2]")
    return [(a.T, a.x.shape[:2] + a.coordinates.shape[1:3])]


@op(kind="movement", x=tensor(), transform_matrix=tensor(), output_height=const("int32", 0),
    output_width=const("int32", 0), sampling_mode=const("string", 0, choices=("bilinear", "nearest")),
    padding_mode=const("string", 0, choices=RESAMPLE_PADDING), padding_value=const("T", 0),
    coordinates_mode=const("string", 0, choices=RESAMPLE_COORDINATES), align_corners=const("bool", 0),
    fp16_range=lambda op, res: iv.union(res.of(op.inputs["x"]), (float(op.attr("padding_value")),) * 2))
def affine(a):
    """resample at an affine map of the output grid: each output pixel's normalized position
    (x, y) samples x at (a0 x + a1 y + a2, b0 x + b1 y + b2), transform_matrix [B | 1, 6]
    (torch affine_grid + grid_sample, fused by the converter)."""
    if a.x.rank != 4 or a.transform_matrix.rank != 2 or a.transform_matrix.shape[1] != 6 or \
            a.transform_matrix.shape[0] not in (1, a.x.shape[0]):
        raise a.fail("transform_matrix", f"x {list(a.x.shape)} and transform_matrix {list(a.transform_matrix.shape)} "
                                         f"must be [B, C, H, W] and [B | 1, 6]")
    if a.output_height < 1 or a.output_width < 1:
        raise a.fail("output_height", f"output size {a.output_height}x{a.output_width} is empty")
    return [(a.T, a.x.shape[:2] + (a.output_height, a.output_width))]


# --- iOS 18 joint compression: sparse weights whose nonzero values are palettized or quantized.
# Each op works on the nonzero values only and returns (mask, values) for constexpr_sparse_to_dense.

_INDEX_DTYPES = ("uint1", "uint2", "uint3", "uint4", "uint6", "uint8")


def _sparse_stored(mask, *tables):
    return "sparse", sum(_tensor_bytes(t) for t in (mask,) + tables)


@op(kind="constexpr", since="ios18", T=("fp16", "fp32"), indices_mask=tensor("uint1"),
    indices_nonzero_data=tensor(_INDEX_DTYPES), lut=tensor("T"), vector_axis=const("int32", 0, default=None),
    fp16_range=lambda op, res: [iv.BOOL, iv.array_iv(op.inputs["lut"].const)])
def constexpr_lut_to_sparse(a):
    """constexpr_lut_to_dense on the nonzero entries of a sparse index tensor: returns the mask
    (widened along vector_axis by the lut's vector size) and the looked-up nonzero values."""
    mask, lut = a.indices_mask.shape, a.lut.shape
    if len(lut) != len(mask) + 2 or any(n % g for n, g in zip(mask, lut)):
        raise a.fail("lut", f"shape {list(lut)} must be [groups per axis of {list(mask)}..., palettes, vector]")
    vs = lut[-1]
    out = list(mask)
    if vs > 1:
        if a.vector_axis is None:
            raise a.fail("vector_axis", "required when the lut's vector size is above 1")
        out[a.vector_axis % len(mask)] *= vs
    return [("uint1", tuple(out)), (a.T, (a.indices_nonzero_data.size * vs,))]


constexpr_lut_to_sparse.defstored(lambda op: _sparse_stored(op.inputs["indices_mask"], op.inputs["indices_nonzero_data"],
                                                            op.inputs["lut"]))


@op(kind="constexpr", since="ios18", T=("fp16", "fp32"), data_mask=tensor("uint1"),
    nonzero_data=tensor(("int4", "uint4", "int8", "uint8", "fp16", "fp32")), scale=tensor("T"),
    offset=tensor(None, optional=True), fp16_range=lambda op, res: [iv.BOOL, None])
def constexpr_sparse_blockwise_shift_scale(a):
    """constexpr_blockwise_shift_scale on the nonzero entries of a sparse tensor (blocks as in
    the dense layout): returns the mask and the dequantized nonzero values."""
    d, s = a.data_mask.shape, a.scale.shape
    if len(s) != len(d) or any(n % b for n, b in zip(d, s)):
        raise a.fail("scale", f"shape {list(s)} must have data's rank {len(d)}, each axis dividing {list(d)}")
    if a.offset is not None and a.offset.shape != s:
        raise a.fail("offset", f"shape {list(a.offset.shape)} must equal scale's {list(s)}")
    return [("uint1", d), (a.T, (a.nonzero_data.size,))]


constexpr_sparse_blockwise_shift_scale.defstored(
    lambda op: _sparse_stored(op.inputs["data_mask"], op.inputs["nonzero_data"], op.inputs["scale"],
                              *([op.inputs["offset"]] if op.inputs.get("offset") is not None else [])))


# --- einsum (the two forms of the MIL op set; the PyTorch converter emits them for
# "nchw,nwhu->nchu" and "chw,whu->chu" and lowers every other equation to matmul) ---------------

def _einsum_form(eq: str):
    """(rank, ok) for an equation of the MIL form x[..., c, h, w] * y[..., w, h, u] ->
    out[..., c, h, u], letters as the writer chose them."""
    try:
        lhs, out = eq.replace(" ", "").split("->")
        a, b = lhs.split(",")
    except ValueError:
        return None
    if len(a) == 4 and len(b) == 4 and len(out) == 4 and len(set(a + b[3])) == 5:
        n, c, h, w = a
        return 4 if (b == n + w + h + b[3] and out == n + c + h + b[3]) else None
    if len(a) == 3 and len(b) == 3 and len(out) == 3 and len(set(a + b[2])) == 4:
        c, h, w = a
        return 3 if (b == w + h + b[2] and out == c + h + b[2]) else None
    return None


@op(kind="mac", path="matmul", values=Param("tensors", "T"), equation=const("string", 0), fp16_range=iv.unbounded)
def einsum(a):
    """out[..., c, h, u] = sum_w x[..., c, h, w] y[..., w, h, u]: a matmul per h (MIL's one
    einsum form, rank 3 or 4; a batch or h of 1 broadcasts)."""
    if len(a.values) != 2:
        raise a.fail("values", f"takes 2 tensors, got {len(a.values)}")
    x, y = a.values
    rank = _einsum_form(a.equation)
    if rank is None or x.rank != rank or y.rank != rank:
        raise a.fail("equation", f"'{a.equation}' with shapes {list(x.shape)}, {list(y.shape)}: MIL einsum takes "
                                 f"'nchw,nwhu->nchu' or 'chw,whu->chu' (any letters)")
    if x.shape[-1] != y.shape[-3]:
        raise a.fail("values", f"contracted sizes differ: {x.shape[-1]} and {y.shape[-3]}")
    h = {x.shape[-2], y.shape[-2]} - {1}
    b = {x.shape[0], y.shape[0]} - {1} if rank == 4 else set()
    if len(h) > 1 or len(b) > 1:
        raise a.fail("values", f"shapes {list(x.shape)} and {list(y.shape)} do not broadcast")
    hh = h.pop() if h else 1
    lead = ((b.pop() if b else 1),) if rank == 4 else ()
    return [(a.T, lead + (x.shape[-3], hh, y.shape[-1]))]


@einsum.defwork
def _einsum_work(op) -> MacWork:
    out = op.outputs[0].shape
    inner = op.inputs["values"][0].shape[-1]
    return MacWork(math.prod(out) * inner, out[-1], math.prod(out[:-1]))


# --- activation quantization (iOS 17; torch.ao quantized models) -------------------------------
# int8 / uint8 values between ops are carried in int32 (anekit's one integer dtype between ops,
# as coreml/mapping.py widens every narrow integer): quantize's result holds exactly the
# integers the narrow type would, and dequantize reads them back.

_QUANT_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _quant_params(a, arg: str):
    scale = a.scale
    ax = a.axis
    for name in ("scale", "zero_point"):
        v = getattr(a, name)
        if v is None:
            continue
        rank = getattr(v, "ndim", 0)
        if rank == 1:
            if ax is None:
                raise a.fail("axis", f"a per-channel {name} needs an axis")
            n = a.input.shape[axis(a, "axis", ax, a.input.rank)]
            if len(v) != n:
                raise a.fail(name, f"has {len(v)} values, axis {ax} of {list(a.input.shape)} has {n}")
        elif rank > 1:
            raise a.fail(name, f"must be a scalar or a vector, got shape {list(v.shape)}")
    return scale


@op(kind="elementwise", T=("fp16", "fp32"), input=tensor(), zero_point=const(("int8", "uint8"), None, default=None),
    scale=const("T", None), axis=const("int32", 0, default=None),
    output_dtype=const("string", 0, choices=tuple(_QUANT_RANGE)),
    fp16_range=lambda op, res: tuple(float(v) for v in _QUANT_RANGE[op.attr("output_dtype")]), since="ios17")
def quantize(a):
    """clip(round(input / scale) + zero_point) to int8 / uint8 (round half to even), per
    tensor or per channel along `axis`; carried as int32."""
    _quant_params(a, "input")
    return [("int32", a.input.shape)]


@op(kind="elementwise", T=("fp16", "fp32"), input=tensor("int32"),
    zero_point=const(("int8", "uint8", "int32"), None, default=None), scale=const("T", None), axis=const("int32", 0, default=None), fp16_range=iv.unbounded,
    since="ios17")
def dequantize(a):
    """(input - zero_point) * scale, per tensor or per channel along `axis`, in scale's dtype."""
    _quant_params(a, "input")
    return [(a.T, a.input.shape)]


# --- gradient rules ------------------------------------------------------------------------------

import numpy as _np  # noqa: E402

from ..declared import F  # noqa: E402
from ._gradlib import make_const as _make_const, pass_at_or_above_alpha as _pass_at_or_above_alpha  # noqa: E402


# Without a rule (autodiff then names the op): scatter, scatter_along_axis, scatter_nd, rnn,
# softplus_parametric, quantize, dequantize, einsum (write it as matmul to train it),
# resample, affine, the sparse constexpr weights; fill, shape, range_1d, one_hot and argsort
# carry no float input a gradient could reach.


@band_part.defgrad
def _band_part_grad(op, gs):
    return {"x": F.band_part(gs[0], lower=op.attr("lower"), upper=op.attr("upper"))}


@prelu.defgrad
def _prelu_grad(op, gs):
    x = op.inputs["x"]
    alpha = _np.asarray(op.attr("alpha"), _np.float64).reshape([-1] + [1] * (x.rank - 2))
    return {"x": F.select(x >= 0.0, gs[0], gs[0] * _make_const(alpha, gs[0].dtype))}


@clamped_relu.defgrad
def _clamped_relu_grad(op, gs):
    x, alpha, beta = op.inputs["x"], op.attr("alpha"), op.attr("beta")
    slope = F.select(x >= 0.0, gs[0], gs[0] * alpha)
    return {"x": F.select(F.clamped_relu(x, alpha=alpha, beta=beta) < beta, slope, 0.0)}


@scaled_tanh.defgrad
def _scaled_tanh_grad(op, gs):
    x, alpha, beta = op.inputs["x"], op.attr("alpha"), op.attr("beta")
    t = F.tanh(x * beta)
    return {"x": gs[0] * (alpha * beta) * (1.0 - t * t)}


@reduce_log_sum.defgrad
def _reduce_log_sum_grad(op, gs):
    x = op.inputs["x"]
    axes_, keep = op.attr("axes"), op.attr("keep_dims")
    total = F.reduce_sum(x, axes=list(axes_) if axes_ is not None else None, keep_dims=True)
    g = gs[0] if keep else F.reshape(gs[0], shape=list(total.shape))
    return {"x": F.fill_like(x, value=1.0) * (g / total)}     # d log(sum x) / dx = 1 / sum, every x


@flatten2d.defgrad
def _flatten2d_grad(op, gs):
    return {"x": F.reshape(gs[0], shape=list(op.inputs["x"].shape))}


threshold.defgrad(_pass_at_or_above_alpha)


@pixel_unshuffle.defgrad
def _pixel_unshuffle_grad(op, gs):
    return {"x": F.pixel_shuffle(gs[0], upscale_factor=op.attr("downscale_factor"))}


from ..spec import lookup as _lookup  # noqa: E402

# sinh' = cosh and cosh' = sinh, written with exp so the backward stays on the engine
# (sinh and cosh themselves have no engine path, guide Appendix A)
_lookup("sinh").defgrad(lambda op, gs: {"x": gs[0] * ((F.exp(op.inputs["x"]) + F.exp(-op.inputs["x"])) * 0.5)})
_lookup("cosh").defgrad(lambda op, gs: {"x": gs[0] * ((F.exp(op.inputs["x"]) - F.exp(-op.inputs["x"])) * 0.5)})
_lookup("asin").defgrad(lambda op, gs: {"x": gs[0] * F.rsqrt(1.0 - F.square(op.inputs["x"]))})
_lookup("acos").defgrad(lambda op, gs: {"x": -(gs[0] * F.rsqrt(1.0 - F.square(op.inputs["x"])))})
_lookup("atanh").defgrad(lambda op, gs: {"x": gs[0] / (1.0 - F.square(op.inputs["x"]))})
_lookup("asinh").defgrad(lambda op, gs: {"x": gs[0] * F.rsqrt(F.square(op.inputs["x"]) + 1.0)})
_lookup("acosh").defgrad(lambda op, gs: {"x": gs[0] * F.rsqrt(F.square(op.inputs["x"]) - 1.0)})
