"""Every op kernel against an independent reference, in both numerics modes.

Each case builds a small program from one op, feeds it random inputs whose values (and whose
constant weights) are exactly representable in fp16, and compares the simulator with a
reference written here in float64 numpy or taken from PyTorch (never the simulator's code):

  exact mode (float32 compute):   |out - ref| <= 1e-5 * |ref| + 1e-6 * scale (+ a stated
                                  float32 accumulation allowance for reductions)
  chip profile (M1):              |out - ref| <= ulps * ulp16(|ref|) + allowance, where one
                                  ulp16 covers the output's fp16 rounding; each case states
                                  its extra roundings and allowances (MAC lanes: 2**-10 per
                                  unit of sum |products|; activation tables: their errors).

Data movement and integer ops must match exactly in both modes. The cases are keyed by op
name and a test asserts that every op in anekit.ir.REGISTRY has at least one.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

import anekit as ak
from anekit.ir.declared import F as OPS   # the MIL quantize op (ak.quantize quantizes weights)
from anekit.ir import REGISTRY, Function, Op, Program, make_const
from anekit.sim import Simulator
from conftest import optional

# PyTorch is the reference for convs, pools, norms, attention and resampling; those cases
# carry the torch marker (conftest.py), every numpy-referenced case runs without it.
torch = optional("torch")
F = torch.nn.functional if torch is not None else None

PROFILE = "m1"


def h(a):
    """Values rounded to fp16 (so both modes see the same numbers), as float32."""
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def ulp16(v):
    return np.spacing(np.abs(np.asarray(v, np.float64)).astype(np.float16)).astype(np.float64)


def fin(name, shape, dtype="fp32"):
    return ak.input(name, shape, dtype=dtype)


def t64(a):
    return torch.from_numpy(np.asarray(a, np.float64))


@dataclass
class Case:
    outputs: dict
    feeds: dict
    refs: dict
    equal: bool = False          # movement / integer ops: bit-exact in both modes
    ulps: float = 1.0            # profile: allowed fp16 ulps of |ref|
    allow: object = 0.0          # profile: extra absolute allowance (scalar or per element)
    exact_allow: object = 0.0    # exact mode: extra absolute allowance
    program: Program | None = None
    notes: dict = field(default_factory=dict)


CASES: dict[str, callable] = {}
TORCH_CASES: set[str] = set()     # cases whose reference is computed with PyTorch


def case(*names, torch_ref: bool = False):
    def register(fn):
        for n in names:
            CASES[n] = fn
            if torch_ref:
                TORCH_CASES.add(n)
        return fn
    return register


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))     # stable across processes


# --- elementwise ---------------------------------------------------------------------------

_BIN_REF = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
            "minimum": np.minimum}


@case("add", "sub", "mul", "maximum", "minimum")
def _binary(op, rng):
    a, b = h(rng.standard_normal((2, 3, 4)) * 3), h(rng.standard_normal((3, 1)) * 3)
    x, y = fin("x", a.shape), fin("y", b.shape)
    return Case({"z": getattr(ak, op)(x, y)}, {"x": a, "y": b}, {"z": _BIN_REF[op](a.astype(np.float64), b)})


@case("real_div")
def _div(op, rng):
    a = h(rng.standard_normal((3, 5)) * 4)
    b = h(np.sign(rng.standard_normal((3, 5))) * rng.uniform(0.25, 4, (3, 5)))
    x, y = fin("x", a.shape), fin("y", b.shape)
    return Case({"z": ak.real_div(x, y)}, {"x": a, "y": b}, {"z": a.astype(np.float64) / b})


@case("floor_div", "mod")
def _floor_mod(op, rng):
    a = h(rng.standard_normal((4, 6)) * 20)
    b = np.array([0.5, -2.0, 4.0, -0.25, 8.0, 1.0], np.float32)          # powers of two: exact quotients
    x, y = fin("x", a.shape), fin("y", b.shape)
    q = np.floor(a.astype(np.float64) / b)
    ref = q if op == "floor_div" else a - q * b                          # Python semantics: sign of y
    return Case({"z": getattr(ak, op)(x, y)}, {"x": a, "y": b}, {"z": ref})


@case("pow")
def _pow(op, rng):
    a = h(rng.uniform(0.5, 2.0, (3, 4)))
    b = h(rng.uniform(-2.0, 2.0, (3, 4)))
    x, y = fin("x", a.shape), fin("y", b.shape)
    return Case({"z": ak.pow(x, y)}, {"x": a, "y": b}, {"z": a.astype(np.float64) ** b.astype(np.float64)})


def test_integer_arithmetic_is_exact():
    rng = np.random.default_rng(0)
    a = rng.integers(-50, 50, (4, 5)).astype(np.int32)
    b = rng.integers(1, 9, (4, 5)).astype(np.int32) * np.where(rng.random((4, 5)) < 0.5, -1, 1).astype(np.int32)
    x, y = fin("x", a.shape, "int32"), fin("y", b.shape, "int32")
    outs = {n: getattr(ak, n)(x, y) for n in ("add", "sub", "mul", "maximum", "minimum", "floor_div", "mod")}
    outs["abs"] = ak.abs(x)
    outs["sum"] = ak.reduce_sum(x, axes=[1])
    outs["cumsum"] = ak.cumsum(x, axis=1)
    ref = {"add": a + b, "sub": a - b, "mul": a * b, "maximum": np.maximum(a, b), "minimum": np.minimum(a, b),
           "floor_div": np.array([[p // q for p, q in zip(r, s)] for r, s in zip(a.tolist(), b.tolist())]),
           "mod": np.array([[p % q for p, q in zip(r, s)] for r, s in zip(a.tolist(), b.tolist())]),
           "abs": np.abs(a), "sum": a.sum(1), "cumsum": np.cumsum(a, 1)}
    for profile in ("exact", PROFILE):
        out = Simulator(ak.program(outs), profile=profile).run({"x": a, "y": b})
        for k, v in ref.items():
            assert out[k].dtype == np.int32, k
            np.testing.assert_array_equal(out[k], v, err_msg=f"{profile} {k}")


_CMP_REF = {"equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
            "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal}


@case(*_CMP_REF)
def _compare(op, rng):
    a, b = h(rng.integers(-2, 3, (3, 4))), h(rng.integers(-2, 3, (4,)))   # ties included
    x, y = fin("x", a.shape), fin("y", b.shape)
    return Case({"z": getattr(ak, op)(x, y)}, {"x": a, "y": b}, {"z": _CMP_REF[op](a, b)}, equal=True)


@case("logical_and", "logical_or", "logical_xor", "logical_not")
def _logical(op, rng):
    a, b = rng.random((3, 4)) < 0.5, rng.random((3, 4)) < 0.5
    x, y = fin("x", a.shape, "bool"), fin("y", b.shape, "bool")
    if op == "logical_not":
        return Case({"z": ak.logical_not(x)}, {"x": a}, {"z": ~a}, equal=True)
    ref = {"logical_and": a & b, "logical_or": a | b, "logical_xor": a ^ b}[op]
    return Case({"z": getattr(ak, op)(x, y)}, {"x": a, "y": b}, {"z": ref}, equal=True)


def _round_half_even(v):
    r = np.floor(v)
    d = v - r
    return np.where(d > 0.5, r + 1, np.where(d < 0.5, r, np.where(r % 2 == 0, r, r + 1)))


_UNARY = {
    "abs": (lambda r: r.standard_normal(20) * 3, np.abs),
    "square": (lambda r: r.standard_normal(20) * 3, np.square),
    "sqrt": (lambda r: r.uniform(0, 9, 20), np.sqrt),
    "exp": (lambda r: r.uniform(-5, 5, 20), np.exp),
    "exp2": (lambda r: r.uniform(-5, 5, 20), np.exp2),
    "floor": (lambda r: r.standard_normal(20) * 5, np.floor),
    "ceil": (lambda r: r.standard_normal(20) * 5, np.ceil),
    "round": (lambda r: np.concatenate([r.standard_normal(14) * 5, [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]]),
              _round_half_even),
    "sign": (lambda r: np.concatenate([r.standard_normal(18), [0.0, -0.0]]), np.sign),
    "sin": (lambda r: r.uniform(-6, 6, 20), np.sin),
    "cos": (lambda r: r.uniform(-6, 6, 20), np.cos),
    "tan": (lambda r: r.uniform(-1.3, 1.3, 20), np.tan),
    "atan": (lambda r: r.standard_normal(20) * 4, np.arctan),
    "erf": (lambda r: r.standard_normal(20) * 2, np.vectorize(math.erf)),
    "relu": (lambda r: r.standard_normal(20) * 3, lambda v: np.maximum(v, 0)),
    "relu6": (lambda r: r.standard_normal(20) * 5, lambda v: np.clip(v, 0, 6)),
    "tanh": (lambda r: r.standard_normal(20) * 3, np.tanh),
    "softsign": (lambda r: r.standard_normal(20) * 3, lambda v: v / (1 + np.abs(v))),
    "softplus": (lambda r: r.standard_normal(20) * 3, lambda v: np.log1p(np.exp(v))),
    "identity": (lambda r: r.standard_normal(20), lambda v: v),
}


@case(*_UNARY)
def _unary(op, rng):
    make, ref = _UNARY[op]
    a = h(make(rng))
    x = fin("x", a.shape)
    return Case({"z": getattr(ak, op)(x)}, {"x": a}, {"z": ref(a.astype(np.float64))},
                equal=op in ("abs", "floor", "ceil", "round", "sign", "relu", "relu6", "identity"))


def _sigmoid64(v):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(v, np.float64)))


@case("sigmoid")
def _sigmoid(op, rng):
    a = h(rng.standard_normal(200) * 4)
    # profile: the 33-knot table's interpolation error (worst 0.0042 over all fp16 inputs)
    return Case({"z": ak.sigmoid(fin("x", a.shape))}, {"x": a}, {"z": _sigmoid64(a)}, allow=0.0045)


@case("silu")
def _silu(op, rng):
    a = h(rng.standard_normal(200) * 4)
    # profile: the swish table's origin bias, 0.001259
    return Case({"z": ak.silu(fin("x", a.shape))}, {"x": a}, {"z": a * _sigmoid64(a)}, allow=0.0013)


def _gelu_ref(v, mode):
    v = np.asarray(v, np.float64)
    if mode == "EXACT":
        return 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    return v * _sigmoid64(1.702 * v)


@case("gelu")
def _gelu(op, rng):
    a = h(rng.standard_normal(200) * 4)
    x = fin("x", a.shape)
    outs = {m: ak.gelu(x, mode=m) for m in ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")}
    refs = {m: _gelu_ref(a, m) for m in outs}
    # profile: EXACT evaluates the gelu table (worst 0.0059 incl. its origin bias)
    return Case(outs, {"x": a}, refs, allow={"EXACT": 0.0062, "TANH_APPROXIMATION": 0.0, "SIGMOID_APPROXIMATION": 0.0})


@case("rsqrt", "inverse", "log")
def _eps_ops(op, rng):
    a = h(rng.uniform(0.1, 10, 20))
    eps = {"rsqrt": 1e-3, "inverse": 1e-2, "log": 1e-3}[op]
    x = fin("x", a.shape)
    v = a.astype(np.float64) + eps
    ref = {"rsqrt": 1 / np.sqrt(v), "inverse": 1 / v, "log": np.log(v)}[op]
    # profile: x + epsilon rounds to fp16 first (one more rounding)
    return Case({"z": getattr(ak, op)(x, epsilon=eps)}, {"x": a}, {"z": ref}, ulps=2.0,
                allow=np.abs({"rsqrt": 0.5 * ref / v, "inverse": ref / v, "log": 1 / v}[op]) * ulp16(v))


@case("leaky_relu", "elu", "thresholded_relu")
def _alpha_acts(op, rng):
    a = h(rng.standard_normal(30) * 3)
    v = a.astype(np.float64)
    x = fin("x", a.shape)
    if op == "leaky_relu":
        return Case({"z": ak.leaky_relu(x, alpha=0.125)}, {"x": a}, {"z": np.where(v >= 0, v, 0.125 * v)})
    if op == "elu":
        return Case({"z": ak.elu(x, alpha=0.5)}, {"x": a}, {"z": np.where(v > 0, v, 0.5 * np.expm1(v))})
    return Case({"z": ak.thresholded_relu(x, alpha=0.5)}, {"x": a}, {"z": np.where(v >= 0.5, v, 0.0)}, equal=True)


@case("sigmoid_hard", "linear_activation", "clip")
def _affine_acts(op, rng):
    a = h(rng.standard_normal(30) * 4)
    v = a.astype(np.float64)
    x = fin("x", a.shape)
    if op == "sigmoid_hard":
        return Case({"z": ak.sigmoid_hard(x, alpha=0.25, beta=0.5)}, {"x": a}, {"z": np.clip(0.25 * v + 0.5, 0, 1)})
    if op == "linear_activation":
        return Case({"z": ak.linear_activation(x, alpha=1.5, beta=-0.25)}, {"x": a}, {"z": 1.5 * v - 0.25})
    return Case({"z": ak.clip(x, alpha=-1.0, beta=2.0)}, {"x": a}, {"z": np.clip(v, -1, 2)}, equal=True)


@case("select")
def _select(op, rng):
    c = rng.random((3, 4)) < 0.5
    a, b = h(rng.standard_normal((3, 4))), h(rng.standard_normal((1, 4)))
    return Case({"z": ak.select(fin("c", c.shape, "bool"), fin("a", a.shape), fin("b", b.shape))},
                {"c": c, "a": a, "b": b}, {"z": np.where(c, a, b)}, equal=True)


@case("cast")
def _cast(op, rng):
    a = np.float32(rng.standard_normal(12) * 5)
    x = fin("x", a.shape)
    outs = {"i": ak.cast(x, dtype="int32"), "h": ak.cast(x, dtype="fp16"), "b": ak.cast(x, dtype="bool")}
    refs = {"i": np.trunc(h(a)), "h": h(a), "b": h(a) != 0}
    return Case(outs, {"x": h(a)}, refs, equal=True)


# --- MAC ops -------------------------------------------------------------------------------

def _mac_allow(abs_products):
    """Profile allowance for a MAC output: fp16 product rounding (2**-11 each) and in-tile
    rounding (below 2**-11 of the larger operand per add) are both within 2**-10 of the sum of
    |products|; exact mode: float32 accumulation, 2**-20 of the same."""
    return abs_products * 2.0 ** -10, abs_products * 2.0 ** -20


@case("matmul")
def _matmul(op, rng):
    a, b = h(rng.standard_normal((2, 1, 5, 16))), h(rng.standard_normal((3, 16, 4)))
    c, d = h(rng.standard_normal((16,))), h(rng.standard_normal((7, 16)))
    x, y, v, w = fin("x", a.shape), fin("y", b.shape), fin("v", c.shape), fin("w", d.shape)
    outs = {"bcast": ak.matmul(x, y), "vec": ak.matmul(v, w, transpose_y=True),
            "tt": ak.matmul(y, x, transpose_x=True, transpose_y=True)}
    a64, b64, c64, d64 = (t.astype(np.float64) for t in (a, b, c, d))
    refs = {"bcast": a64 @ b64, "vec": c64 @ d64.T, "tt": np.swapaxes(b64, -1, -2) @ np.swapaxes(a64, -1, -2)}
    mags = {"bcast": np.abs(a64) @ np.abs(b64), "vec": np.abs(c64) @ np.abs(d64.T),
            "tt": np.swapaxes(np.abs(b64), -1, -2) @ np.swapaxes(np.abs(a64), -1, -2)}
    return Case(outs, {"x": a, "y": b, "v": c, "w": d}, refs,
                allow={k: _mac_allow(m)[0] for k, m in mags.items()},
                exact_allow={k: _mac_allow(m)[1] for k, m in mags.items()})


@case("linear")
def _linear(op, rng):
    a, w, b = h(rng.standard_normal((2, 3, 24))), h(rng.standard_normal((10, 24))), h(rng.standard_normal(10))
    x = fin("x", a.shape)
    ref = a.astype(np.float64) @ w.T.astype(np.float64) + b
    mag = np.abs(a.astype(np.float64)) @ np.abs(w.T) + np.abs(b)
    # profile: the bias adds after the accumulator rounds (one more fp16 rounding)
    return Case({"z": ak.linear(x, w, b)}, {"x": a}, {"z": ref}, ulps=2.0,
                allow=_mac_allow(mag)[0], exact_allow=_mac_allow(mag)[1])


def _conv_ref(a, w, b, stride, pads, dil, groups):
    sp = a.ndim - 2
    padded = F.pad(t64(a), [p for pair in reversed(pads) for p in pair])
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[sp]
    out = fn(padded, t64(w), None if b is None else t64(b), stride=stride, dilation=dil, groups=groups).numpy()
    mag = fn(padded.abs(), t64(w).abs(), None if b is None else t64(b).abs(), stride=stride, dilation=dil,
             groups=groups).numpy()
    return out, mag


_CONV_CASES = {
    "conv": dict(x=(2, 4, 9, 8), w=(6, 4, 3, 3), stride=(2, 1), pad_type="custom", pads=[(1, 2), (0, 1)],
                 dil=(1, 2), groups=1, bias=True),
    "conv:grouped": dict(x=(1, 6, 7, 7), w=(9, 2, 3, 2), stride=(1, 2), pad_type="valid", pads=[(0, 0), (0, 0)],
                         dil=(1, 1), groups=3, bias=False),
    "conv:depthwise": dict(x=(1, 5, 8, 9), w=(10, 1, 3, 3), stride=(1, 1), pad_type="same", pads=[(1, 1), (1, 1)],
                           dil=(1, 1), groups=5, bias=True),
    "conv:same_lower": dict(x=(1, 3, 6, 7), w=(4, 3, 2, 2), stride=(2, 2), pad_type="same_lower",
                            pads=[(0, 0), (1, 0)], dil=(1, 1), groups=1, bias=False),
    "conv:pointwise": dict(x=(1, 16, 1, 20), w=(8, 16, 1, 1), stride=(1, 1), pad_type="valid",
                           pads=[(0, 0), (0, 0)], dil=(1, 1), groups=1, bias=True),
    "conv:1d": dict(x=(2, 3, 11), w=(4, 3, 3), stride=(2,), pad_type="custom", pads=[(2, 1)],
                    dil=(2,), groups=1, bias=True),
}


@case(*_CONV_CASES, torch_ref=True)
def _conv(op, rng):
    cfg = _CONV_CASES[op]
    a, w = h(rng.standard_normal(cfg["x"])), h(rng.standard_normal(cfg["w"]) * 0.5)
    b = h(rng.standard_normal(cfg["w"][0])) if cfg["bias"] else None
    x = fin("x", a.shape)
    flat = [p for pair in cfg["pads"] for p in pair]
    y = ak.conv(x, w, b, strides=cfg["stride"], pad_type=cfg["pad_type"], pad=flat, dilations=cfg["dil"],
                groups=cfg["groups"])
    ref, mag = _conv_ref(a, w, b, cfg["stride"], cfg["pads"], cfg["dil"], cfg["groups"])
    return Case({"z": y}, {"x": a}, {"z": ref}, ulps=2.0 if b is not None else 1.0,
                allow=_mac_allow(mag)[0], exact_allow=_mac_allow(mag)[1])


@case("conv_transpose", "conv_transpose:out_shape", torch_ref=True)
def _conv_transpose(op, rng):
    a = h(rng.standard_normal((1, 4, 5, 6)))
    w = h(rng.standard_normal((4, 3, 3, 2)) * 0.5)                 # groups 2: Cout = 3 * 2
    b = h(rng.standard_normal(6))
    x = fin("x", a.shape)
    extra = (1, 0) if op.endswith("out_shape") else (0, 0)
    kw = dict(strides=(2, 2), pad=[1, 1, 0, 0], pad_type="custom", dilations=(1, 2), groups=2)
    base = ak.conv_transpose(ak.input("probe", a.shape, dtype="fp32"), w, b, **kw).shape
    if any(extra):
        kw["output_shape"] = [base[0], base[1], base[2] + extra[0], base[3] + extra[1]]
    y = ak.conv_transpose(x, w, b, **kw)
    args = dict(stride=(2, 2), padding=(1, 0), output_padding=extra, groups=2, dilation=(1, 2))
    ref = F.conv_transpose2d(t64(a), t64(w), t64(b), **args).numpy()
    mag = F.conv_transpose2d(t64(a).abs(), t64(w).abs(), t64(b).abs(), **args).numpy()
    assert y.shape == ref.shape
    return Case({"z": y}, {"x": a}, {"z": ref}, ulps=2.0, allow=_mac_allow(mag)[0], exact_allow=_mac_allow(mag)[1])


@case("scaled_dot_product_attention", torch_ref=True)
def _sdpa(op, rng):
    q, k, v = (h(rng.standard_normal((2, 3, s, 8))) for s in (5, 7, 7))
    fmask = h(rng.standard_normal((5, 7)))
    bmask = rng.random((1, 5, 7)) < 0.7
    bmask[..., 0] = True
    xq, xk, xv = fin("q", q.shape), fin("k", k.shape), fin("v", v.shape)
    outs = {"float": ak.scaled_dot_product_attention(xq, xk, xv, fmask),
            "bool": ak.scaled_dot_product_attention(xq, xk, xv, fin("m", bmask.shape, "bool")),
            "none": ak.scaled_dot_product_attention(xq, xk, xv)}
    refs = {"float": F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=t64(fmask)).numpy(),
            "bool": F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=torch.from_numpy(bmask)).numpy(),
            "none": F.scaled_dot_product_attention(t64(q), t64(k), t64(v)).numpy()}
    # profile: scores, scale, mask, softmax and both matmuls each round to fp16
    return Case(outs, {"q": q, "k": k, "v": v, "m": bmask}, refs, ulps=4.0, allow=0.01)


# --- reductions, softmax, norms ---------------------------------------------------------------

def _log_sum_exp(v, axes, keep):
    m = v.max(axis=axes, keepdims=True)
    r = np.log(np.exp(v - m).sum(axis=axes, keepdims=True)) + m
    return r if keep else np.squeeze(r, axis=axes)


_REDUCE_REF = {
    "reduce_sum": lambda v, ax, k: v.sum(axis=ax, keepdims=k),
    "reduce_mean": lambda v, ax, k: v.mean(axis=ax, keepdims=k),
    "reduce_max": lambda v, ax, k: v.max(axis=ax, keepdims=k),
    "reduce_min": lambda v, ax, k: v.min(axis=ax, keepdims=k),
    "reduce_prod": lambda v, ax, k: v.prod(axis=ax, keepdims=k),
    "reduce_l1_norm": lambda v, ax, k: np.abs(v).sum(axis=ax, keepdims=k),
    "reduce_l2_norm": lambda v, ax, k: np.sqrt((v * v).sum(axis=ax, keepdims=k)),
    "reduce_sum_square": lambda v, ax, k: (v * v).sum(axis=ax, keepdims=k),
    "reduce_log_sum_exp": _log_sum_exp,
}


@case(*_REDUCE_REF)
def _reduce(op, rng):
    a = h(rng.standard_normal((3, 4, 5)) * (0.7 if op == "reduce_prod" else 2))
    x = fin("x", a.shape)
    v = a.astype(np.float64)
    outs = {"axes": getattr(ak, op)(x, axes=[0, 2], keep_dims=True), "neg": getattr(ak, op)(x, axes=[-1]),
            "all": getattr(ak, op)(x)}
    refs = {"axes": _REDUCE_REF[op](v, (0, 2), True), "neg": _REDUCE_REF[op](v, (2,), False),
            "all": _REDUCE_REF[op](v, None, False)}
    if op in ("reduce_max", "reduce_min"):
        return Case(outs, {"x": a}, refs, equal=True)
    mag = {k: _REDUCE_REF["reduce_l1_norm"](v * (v if "square" in op or "l2" in op else 1), ax, kk)
           for k, (ax, kk) in {"axes": ((0, 2), True), "neg": ((2,), False), "all": (None, False)}.items()}
    allow = {k: m * 2.0 ** -10 for k, m in mag.items()}
    # prod and log_sum_exp: several roundings; l2: the square root after the rounded sum
    return Case(outs, {"x": a}, refs, ulps=4.0 if op in ("reduce_prod", "reduce_log_sum_exp", "reduce_l2_norm",
                                                         "reduce_mean") else 1.0,
                allow=allow if op not in ("reduce_prod", "reduce_log_sum_exp") else 0.0,
                exact_allow={k: m * 2.0 ** -20 for k, m in mag.items()})


@case("reduce_argmax", "reduce_argmin")
def _argreduce(op, rng):
    a = h(rng.permutation(60).reshape(3, 4, 5))                           # distinct values
    x = fin("x", a.shape)
    f = np.argmax if op == "reduce_argmax" else np.argmin
    outs = {"ax1": getattr(ak, op)(x, axis=1), "keep": getattr(ak, op)(x, axis=-1, keep_dims=True)}
    return Case(outs, {"x": a}, {"ax1": f(a, axis=1), "keep": f(a, axis=-1)[..., None]}, equal=True)


@case("softmax")
def _softmax(op, rng):
    a = h(rng.standard_normal((2, 5, 7)) * 3)
    x = fin("x", a.shape)
    v = a.astype(np.float64)

    def sm(axis):
        e = np.exp(v - v.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    # profile: x - max, exp and the quotient each round to fp16
    return Case({"last": ak.softmax(x, axis=-1), "mid": ak.softmax(x, axis=1)}, {"x": a},
                {"last": sm(-1), "mid": sm(1)}, ulps=3.0, allow=2.0 ** -12)


def _normalize(v, axes, eps):
    mean = v.mean(axis=axes, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
    return (v - mean) / np.sqrt(var + eps)


@case("layer_norm")
def _layer_norm(op, rng):
    a = h(rng.standard_normal((2, 3, 8)) * 2 + 1)
    g, b = h(rng.standard_normal((3, 8))), h(rng.standard_normal((3, 8)))
    x = fin("x", a.shape)
    ref = _normalize(a.astype(np.float64), (1, 2), 1e-5) * g + b
    plain = _normalize(a.astype(np.float64), (-1,), 1e-3)
    return Case({"affine": ak.layer_norm(x, axes=[1, 2], gamma=g, beta=b, epsilon=1e-5),
                 "plain": ak.layer_norm(x, axes=[-1], epsilon=1e-3)}, {"x": a}, {"affine": ref, "plain": plain},
                ulps=6.0, allow=0.004)


@case("instance_norm", torch_ref=True)
def _instance_norm(op, rng):
    a = h(rng.standard_normal((2, 3, 4, 5)) + 0.5)
    g, b = h(rng.standard_normal(3)), h(rng.standard_normal(3))
    x = fin("x", a.shape)
    ref = F.instance_norm(t64(a), weight=t64(g), bias=t64(b), eps=1e-5).numpy()
    return Case({"z": ak.instance_norm(x, gamma=g, beta=b, epsilon=1e-5)}, {"x": a}, {"z": ref},
                ulps=6.0, allow=0.004)


@case("batch_norm", torch_ref=True)
def _batch_norm(op, rng):
    a = h(rng.standard_normal((2, 4, 3, 3)))
    mean, var = h(rng.standard_normal(4)), h(rng.uniform(0.5, 2, 4))
    g, b = h(rng.standard_normal(4)), h(rng.standard_normal(4))
    x = fin("x", a.shape)
    ref = F.batch_norm(t64(a), t64(mean), t64(var), t64(g), t64(b), training=False, eps=1e-5).numpy()
    # profile: folded to an fp16 per-channel scale and shift (their roundings scale with |x|)
    allow = np.abs(a) * np.abs(g / np.sqrt(var + 1e-5))[None, :, None, None] * 2.0 ** -10
    allow = allow + 2.0 ** -10 * np.abs(b - mean * g / np.sqrt(var + 1e-5))[None, :, None, None]
    return Case({"z": ak.batch_norm(x, mean, var, g, b, epsilon=1e-5)}, {"x": a}, {"z": ref}, ulps=2.0, allow=allow)


@case("cumsum")
def _cumsum(op, rng):
    a = h(rng.standard_normal((3, 6)))
    x = fin("x", a.shape)
    v = a.astype(np.float64)
    outs = {"plain": ak.cumsum(x, axis=1), "excl_rev": ak.cumsum(x, axis=1, exclusive=True, reverse=True)}
    rev = np.flip(np.cumsum(np.flip(v, 1), 1), 1) - v
    mag = np.cumsum(np.abs(v), 1)
    return Case(outs, {"x": a}, {"plain": np.cumsum(v, 1), "excl_rev": rev}, allow=float(mag.max()) * 2.0 ** -10)


@case("topk")
def _topk(op, rng):
    a = h(rng.permutation(40).reshape(4, 10) - 20)
    x = fin("x", a.shape)
    vals, idx = ak.topk(x, k=3, axis=-1)
    lo = ak.topk(x, k=2, axis=0, ascending=True, return_indices=False)
    order = np.argsort(-a, axis=-1)[:, :3]
    refs = {"v": np.take_along_axis(a, order, -1), "i": order, "lo": np.sort(a, axis=0)[:2]}
    return Case({"v": vals, "i": idx, "lo": lo}, {"x": a}, refs, equal=True)


# --- data movement -------------------------------------------------------------------------

def _movement(outs, a, refs):
    return Case(outs, {"x": a}, refs, equal=True)


@case("reshape", "transpose", "squeeze", "expand_dims", "tile", "reverse")
def _layout(op, rng):
    a = h(rng.standard_normal((2, 1, 3, 4)))
    x = fin("x", a.shape)
    spec = {"reshape": (ak.reshape(x, shape=[0, -1, 2]), a.reshape(2, 6, 2)),
            "transpose": (ak.transpose(x, perm=[3, 0, 2, 1]), a.transpose(3, 0, 2, 1)),
            "squeeze": (ak.squeeze(x, axes=[1]), a[:, 0]),
            "expand_dims": (ak.expand_dims(x, axes=[0, -1]), a[None, ..., None]),
            "tile": (ak.tile(x, reps=[1, 2, 1, 3]), np.concatenate([np.concatenate([a] * 3, 3)] * 2, 1)),
            "reverse": (ak.reverse(x, axes=[0, -1]), a[::-1, :, :, ::-1])}
    y, ref = spec[op]
    return _movement({"z": y}, a, {"z": ref})


@case("concat", "stack", "split")
def _join(op, rng):
    a = h(rng.standard_normal((2, 6, 3)))
    x = fin("x", a.shape)
    if op == "split":
        p, q, r = ak.split(x, split_sizes=[1, 3, 2], axis=1)
        e1, e2 = ak.split(x, num_splits=2, axis=0)
        return _movement({"p": p, "q": q, "r": r, "e2": e2}, a,
                         {"p": a[:, :1], "q": a[:, 1:4], "r": a[:, 4:], "e2": a[1:]})
    y = ak.mul(x, 2.0)
    if op == "stack":
        return _movement({"z": ak.stack([x, y], axis=1)}, a, {"z": np.stack([a, 2 * a], 1)})
    inter = np.empty((2, 12, 3), np.float32)
    inter[:, 0::2], inter[:, 1::2] = a, 2 * a
    return _movement({"z": ak.concat([x, y, x], axis=-1), "i": ak.concat([x, y], axis=1, interleave=True)}, a,
                     {"z": np.concatenate([a, 2 * a, a], -1), "i": inter})


@case("slice_by_index", "slice_by_size", "crop")
def _slices(op, rng):
    a = h(rng.standard_normal((2, 5, 6, 7)))
    x = fin("x", a.shape)
    if op == "slice_by_index":
        y = ak.slice_by_index(x, begin=[0, 4, 1, 0], end=[2, 0, 6, 7], stride=[1, -2, 2, 3],
                              begin_mask=[False, False, False, True], squeeze_mask=[False, False, False, False])
        sq = ak.slice_by_index(x, begin=[1, 0, 0, 0], end=[2, 5, 6, 7], squeeze_mask=[True, False, False, False])
        return _movement({"z": y, "sq": sq}, a, {"z": a[0:2, 4:0:-2, 1:6:2, ::3], "sq": a[1]})
    if op == "slice_by_size":
        y = ak.slice_by_size(x, begin=[1, 0, 2, 3], size=[1, -1, 3, 4])
        return _movement({"z": y}, a, {"z": a[1:2, :, 2:5, 3:7]})
    y = ak.crop(x, crop_height=[1, 2], crop_width=[2, 0])
    return _movement({"z": y}, a, {"z": a[:, :, 1:4, 2:]})


@case("pad", torch_ref=True)
def _pad(op, rng):
    a = h(rng.standard_normal((1, 2, 4, 5)))
    x = fin("x", a.shape)
    outs = {"const": ak.pad(x, pad=[1, 2, 0, 3], constant_val=1.5),
            "reflect": ak.pad(x, pad=[2, 1, 3, 0], mode="reflect"),
            "replicate": ak.pad(x, pad=[0, 2, 1, 1], mode="replicate")}
    refs = {"const": F.pad(t64(a), [0, 3, 1, 2], value=1.5).numpy(),
            "reflect": F.pad(t64(a), [3, 0, 2, 1], mode="reflect").numpy(),
            "replicate": F.pad(t64(a), [1, 1, 0, 2], mode="replicate").numpy()}
    return _movement(outs, a, refs)


@case("gather", "gather_along_axis", "gather_nd", torch_ref=True)
def _gather(op, rng):
    a = h(rng.standard_normal((3, 5, 4)))
    x = fin("x", a.shape)
    if op == "gather_nd":                                 # torch advanced indexing as the reference
        pts = np.stack([rng.integers(-3, 3, (2, 6)), rng.integers(-5, 5, (2, 6))], -1).astype(np.int32)
        rows = rng.integers(-5, 5, (3, 2, 1)).astype(np.int32)
        ta, tp, tr = t64(a), torch.from_numpy(pts).long(), torch.from_numpy(rows).long()
        refs = {"pts": ta[tp[..., 0], tp[..., 1]].numpy(),
                "batch": torch.stack([ta[i][tr[i, :, 0]] for i in range(3)]).numpy()}
        return _movement({"pts": ak.gather_nd(x, pts), "batch": ak.gather_nd(x, rows, batch_dims=1)}, a, refs)
    if op == "gather":
        idx = np.array([[4, 0], [-1, 2]], np.int32)
        bidx = np.array([[0, 4], [1, 1], [3, 2]], np.int32)
        outs = {"take": ak.gather(x, idx, axis=1), "batch": ak.gather(x, bidx, axis=1, batch_dims=1)}
        refs = {"take": a[:, idx % 5], "batch": np.stack([a[i, bidx[i]] for i in range(3)])}
        return _movement(outs, a, refs)
    idx = rng.integers(-5, 5, (3, 2, 4)).astype(np.int32)
    ref = torch.gather(t64(a), 1, torch.from_numpy((idx % 5).astype(np.int64))).numpy()
    return _movement({"z": ak.gather_along_axis(x, idx, axis=1)}, a, {"z": ref})


@case("lstm", torch_ref=True)
def _lstm(op, rng):
    """MIL's gate order (i, f, o, z) against torch.nn.LSTM's (i, f, g, o), both directions."""
    s, b, i, hid = 5, 2, 4, 3
    a = h(rng.standard_normal((s, b, i)))
    ref = torch.nn.LSTM(i, hid, bidirectional=True).double()
    order = lambda w: np.concatenate([w[:2 * hid], w[3 * hid:], w[2 * hid:3 * hid]])   # ifgo -> ifoz
    ws = {n: h(p.detach().numpy()) for n, p in ref.named_parameters()}
    for suffix in ("l0", "l0_reverse"):      # MIL takes one bias: keep the fp16 sum in bias_ih
        ws[f"bias_ih_{suffix}"] = h(ws[f"bias_ih_{suffix}"] + ws[f"bias_hh_{suffix}"])
        ws[f"bias_hh_{suffix}"] = np.zeros_like(ws[f"bias_hh_{suffix}"])
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(torch.from_numpy(ws[n].astype(np.float64)))
        want, (hn, cn) = ref(t64(a))
    x = fin("x", a.shape)
    zeros = np.zeros((b, 2 * hid), np.float32)
    args = {k: order(ws[f"{k}_l0"]) for k in ("weight_ih", "weight_hh")}
    args.update({f"{k}_back": order(ws[f"{k}_l0_reverse"]) for k in ("weight_ih", "weight_hh")})
    args["bias"], args["bias_back"] = order(ws["bias_ih_l0"]), order(ws["bias_ih_l0_reverse"])
    y, hl, cl = ak.lstm(x, zeros, zeros, direction="bidirectional", output_sequence=True,
                        **{k: v.astype(np.float32) for k, v in args.items()})
    refs = {"y": want.numpy(), "h": torch.cat([hn[0], hn[1]], -1).numpy(), "c": torch.cat([cn[0], cn[1]], -1).numpy()}
    return Case({"y": y, "h": hl, "c": cl}, {"x": a}, refs)


@case("fill_like")
def _fill_like(op, rng):
    a = h(rng.standard_normal((2, 3, 4)))
    x = fin("x", a.shape)
    outs = {"f": ak.fill_like(x, value=-2.5), "i": ak.fill_like(x, value=np.int32(7))}
    return _movement(outs, a, {"f": np.full(a.shape, -2.5), "i": np.full(a.shape, 7, np.int32)})


@case("slice_update")
def _slice_update(op, rng):
    a, u = h(rng.standard_normal((2, 6, 5))), h(rng.standard_normal((2, 3, 2)))
    x = fin("x", a.shape)
    y = ak.slice_update(x, fin("u", u.shape), begin=[0, 0, 1], end=[2, 6, 5], stride=[1, 2, 2])
    ref = a.copy()
    ref[:, 0:6:2, 1:5:2] = u
    return Case({"z": y}, {"x": a, "u": u}, {"z": ref}, equal=True)


@case("pixel_shuffle", torch_ref=True)
def _pixel_shuffle(op, rng):
    a = h(rng.standard_normal((2, 12, 3, 2)))
    return _movement({"z": ak.pixel_shuffle(fin("x", a.shape), upscale_factor=2)}, a,
                     {"z": F.pixel_shuffle(t64(a), 2).numpy()})


@case("upsample_nearest_neighbor", torch_ref=True)
def _upsample_nn(op, rng):
    a = h(rng.standard_normal((1, 2, 3, 4)))
    x = fin("x", a.shape)
    outs = {"int": ak.upsample_nearest_neighbor(x, scale_factor_height=2, scale_factor_width=3),
            "frac": ak.upsample_nearest_neighbor(x, scale_factor_height=1.5, scale_factor_width=0.5)}
    refs = {"int": F.interpolate(t64(a), scale_factor=(2, 3), mode="nearest").numpy(),
            "frac": F.interpolate(t64(a), scale_factor=(1.5, 0.5), mode="nearest").numpy()}
    return _movement(outs, a, refs)


@case("upsample_bilinear", torch_ref=True)
def _upsample_bilinear(op, rng):
    a = h(rng.standard_normal((1, 2, 4, 8)))
    x = fin("x", a.shape)
    outs = {"align": ak.upsample_bilinear(x, scale_factor_height=2, scale_factor_width=1.5, align_corners=True),
            "half": ak.upsample_bilinear(x, scale_factor_height=2, scale_factor_width=0.5, align_corners=False)}
    refs = {"align": F.interpolate(t64(a), size=(8, 12), mode="bilinear", align_corners=True).numpy(),
            "half": F.interpolate(t64(a), size=(8, 4), mode="bilinear", align_corners=False).numpy()}
    return Case(outs, {"x": a}, refs, ulps=2.0)


@case("avg_pool", "avg_pool:ceil", "max_pool", torch_ref=True)
def _pools(op, rng):
    a = h(rng.standard_normal((2, 3, 7, 8)))
    x = fin("x", a.shape)
    if op == "max_pool":
        y = ak.max_pool(x, kernel_sizes=[3, 2], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1], ceil_mode=True)
        ref = F.max_pool2d(t64(a), (3, 2), (2, 2), padding=(1, 1), ceil_mode=True).numpy()
        return _movement({"z": y}, a, {"z": ref})
    ceil = op.endswith("ceil")
    outs = {"incl": ak.avg_pool(x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
                                ceil_mode=ceil),
            "excl": ak.avg_pool(x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
                                exclude_padding_from_average=True, ceil_mode=ceil)}
    refs = {"incl": F.avg_pool2d(t64(a), 3, 2, padding=1, ceil_mode=ceil, count_include_pad=True).numpy(),
            "excl": F.avg_pool2d(t64(a), 3, 2, padding=1, ceil_mode=ceil, count_include_pad=False).numpy()}
    return Case(outs, {"x": a}, refs, ulps=1.0, allow=9 * 2.0 ** -12)


# --- constants and compressed weights -----------------------------------------------------

@case("const")
def _const(op, rng):
    w = h(rng.standard_normal((3, 4)))
    x = fin("x", w.shape)
    return Case({"z": ak.add(x, w), "c": make_const(w, "fp32")}, {"x": w}, {"z": 2.0 * w, "c": w}, equal=True)


@case("constexpr_affine_dequantize")
def _affine_dequantize(op, rng):
    q = rng.integers(-128, 128, (4, 6)).astype(np.int8)
    zp, scale = np.int8(3), np.array([0.5, 0.25, 0.125, 2.0], np.float32)
    w = ak.constexpr_affine_dequantize(quantized_data=q, zero_point=zp, scale=scale, axis=0)
    ref = (q.astype(np.float64) - 3) * scale[:, None]
    return Case({"w": w, "z": ak.add(fin("x", q.shape), w)}, {"x": np.zeros(q.shape, np.float32)},
                {"w": ref, "z": ref}, equal=True)


@case("constexpr_lut_to_dense")
def _lut(op, rng):
    idx = rng.integers(0, 16, (4, 6)).astype(np.uint8)
    lut = h(rng.standard_normal((2, 1, 16, 1)))                 # two palettes over axis 0
    scalar = ak.constexpr_lut_to_dense(make_const(idx, "uint4"), lut)
    ref = np.stack([lut[i // 2, 0, idx[i], 0] for i in range(4)])
    vidx = rng.integers(0, 4, (2, 3)).astype(np.uint8)
    vlut = h(rng.standard_normal((1, 1, 4, 2)))
    vec = ak.constexpr_lut_to_dense(make_const(vidx, "uint2"), vlut, vector_axis=1)
    vref = np.stack([np.concatenate([vlut[0, 0, vidx[r, c]] for c in range(3)]) for r in range(2)])
    return Case({"s": scalar, "v": vec}, {}, {"s": ref, "v": vref}, equal=True)


@case("constexpr_sparse_to_dense")
def _sparse(op, rng):
    mask = (rng.random((3, 5)) < 0.4).astype(np.uint8)
    data = h(rng.standard_normal(int(mask.sum())))
    w = ak.constexpr_sparse_to_dense(data, make_const(mask, "uint1"))
    ref = np.zeros((3, 5))
    ref[mask.astype(bool)] = data
    return Case({"w": w}, {}, {"w": ref}, equal=True)


@case("constexpr_blockwise_shift_scale")
def _blockwise(op, rng):
    data = rng.integers(-8, 8, (4, 6)).astype(np.int8)
    scale = h(rng.uniform(0.1, 2, (2, 3)))
    offset = rng.integers(-2, 3, (2, 3)).astype(np.int8)
    w = ak.constexpr_blockwise_shift_scale(data, scale, offset)
    ref = (data - np.repeat(np.repeat(offset, 2, 0), 2, 1)) * np.repeat(np.repeat(scale.astype(np.float64), 2, 0), 2, 1)
    noff = ak.constexpr_blockwise_shift_scale(data, scale)
    ref2 = data * np.repeat(np.repeat(scale.astype(np.float64), 2, 0), 2, 1)
    # profile: the dense weight is fp16 (one rounding of each product)
    return Case({"w": w, "n": noff}, {}, {"w": ref, "n": ref2})


# --- state ------------------------------------------------------------------------------------

@case("read_state", "write_state", "coreml_update_state")
def _state(op, rng):
    s0, v = h(rng.standard_normal((1, 4))), h(rng.standard_normal((1, 4)))
    s, x = fin("s", (1, 4)), fin("x", (1, 4))
    if op == "coreml_update_state":
        y = ak.coreml_update_state(s, ak.add(ak.read_state(s), x))
        return Case({"y": ak.mul(y, 2.0)}, {"s": s0, "x": v}, {"y": 2 * (s0.astype(np.float64) + v)}, ulps=2.0)
    # write_state has no outputs, so no graph reaches it: place it in the function by hand
    write = Op(REGISTRY["write_state"], {"input": s, "data": x}, name="store")
    read = ak.read_state(s)
    read.name, read.op.name = "y", "y"
    prog = Program({"main": Function("main", [s, x], [write, read.op], [read])})
    return Case({}, {"s": s0, "x": v}, {"y": v}, equal=True, program=prog)


# --- ir/ops/more.py and ir/ops/control.py (issue 15 audit) ----------------------------------------

@case("scatter", "scatter_along_axis", "scatter_nd")
def _scatters(op, rng):
    a, u = h(rng.standard_normal((3, 5))), h(rng.standard_normal((3, 2)))
    x = fin("x", a.shape)
    ref, upd = a.astype(np.float64).copy(), u.astype(np.float64)
    if op == "scatter":                       # add at columns [4, 1] and replace at [0, 2]
        outs = {"add": ak.scatter(x, np.array([4, 1], np.int32), u, axis=1, mode="add"),
                "upd": ak.scatter(x, np.array([0, 2], np.int32), u, axis=1, mode="update")}
        add, rep = ref.copy(), ref.copy()
        add[:, [4, 1]] += upd
        rep[:, [0, 2]] = upd
    elif op == "scatter_along_axis":          # row indices per column, one repeated: accumulates
        idx = np.array([[0, 2, 1, 1, 0], [1, 0, 1, 2, 0]], np.int32)
        u2 = h(rng.standard_normal((2, 5)))
        outs = {"add": ak.scatter_along_axis(x, idx, u2, axis=0, mode="add"),
                "upd": ak.scatter_along_axis(x, idx[:1], u2[:1], axis=0, mode="update")}
        add, rep = ref.copy(), ref.copy()
        for r in range(2):
            for col in range(5):
                add[idx[r, col], col] += u2[r, col]
        rep[idx[0], np.arange(5)] = u2[0]
    else:
        idx = np.array([[0, 1], [2, 3], [0, 1]], np.int32)
        v = h(rng.standard_normal(3))
        outs = {"add": ak.scatter_nd(x, idx, v, mode="add"), "upd": ak.scatter_nd(x, idx[1:], v[1:], mode="update")}
        add, rep = ref.copy(), ref.copy()
        for (i, j), w in zip(idx, v):
            add[i, j] += w
        rep[2, 3], rep[0, 1] = v[1], v[2]
    return Case(outs, {"x": a}, {"add": add, "upd": rep}, ulps=1.5)   # repeated adds: two roundings


@case("fill", "shape", "range_1d", "one_hot", "band_part", "argsort", "flatten2d", "pixel_unshuffle")
def _construction(op, rng):
    a = h(rng.standard_normal((2, 4, 4, 6)))
    x = fin("x", a.shape)
    m = a[0, 0]
    make = {
        "fill": lambda: (ak.fill(shape=[2, 3], value=np.float32(-1.5)), np.full((2, 3), -1.5)),
        "shape": lambda: (ak.shape(x), np.array(a.shape, np.int32)),
        "range_1d": lambda: (ak.range_1d(end=np.float32(3.0), start=np.float32(-2.0), step=np.float32(0.5)),
                             np.arange(-2.0, 3.0, 0.5)),
        "one_hot": lambda: (ak.one_hot(ak.cast(x[0, 0, 0] > 0.0, "int32"), one_hot_vector_size=3, axis=0),
                            np.eye(3, dtype=np.int32)[(a[0, 0, 0] > 0).astype(int)].T),
        "band_part": lambda: (ak.band_part(x, lower=1, upper=0), np.triu(np.tril(a), -1)),
        "argsort": lambda: (ak.argsort(x, axis=-1), np.argsort(-a.astype(np.float64), axis=-1, kind="stable")),
        "flatten2d": lambda: (ak.flatten2d(x, axis=2), a.reshape(8, 24)),
        "pixel_unshuffle": lambda: (ak.pixel_unshuffle(x, downscale_factor=2),
                                    a.reshape(2, 4, 2, 2, 3, 2).transpose(0, 1, 3, 5, 2, 4).reshape(2, 16, 2, 3)),
    }
    del m
    out, ref = make[op]()
    return _movement({"z": out, "x_out": ak.identity(x)}, a, {"z": ref, "x_out": a})   # x feeds every case


_MORE_UNARY = {
    "sinh": (lambda r: r.uniform(-4, 4, 30), np.sinh), "cosh": (lambda r: r.uniform(-4, 4, 30), np.cosh),
    "asin": (lambda r: r.uniform(-0.99, 0.99, 30), np.arcsin), "acos": (lambda r: r.uniform(-0.99, 0.99, 30), np.arccos),
    "atanh": (lambda r: r.uniform(-0.95, 0.95, 30), np.arctanh), "asinh": (lambda r: r.uniform(-9, 9, 30), np.arcsinh),
    "acosh": (lambda r: r.uniform(1, 9, 30), np.arccosh),
    "threshold": (lambda r: r.standard_normal(30), lambda v: np.maximum(v, 0.25)),
    "clamped_relu": (lambda r: r.standard_normal(30) * 3, lambda v: np.minimum(np.where(v >= 0, v, 0.25 * v), 2.0)),
    "scaled_tanh": (lambda r: r.standard_normal(30) * 3, lambda v: 1.5 * np.tanh(0.5 * v)),
}
_MORE_ARGS = {"threshold": {"alpha": 0.25}, "clamped_relu": {"alpha": 0.25, "beta": 2.0},
              "scaled_tanh": {"alpha": 1.5, "beta": 0.5}}


@case(*_MORE_UNARY)
def _more_unary(op, rng):
    make, ref = _MORE_UNARY[op]
    a = h(make(rng))
    # profile: float32 math rounded once to fp16 (scaled_tanh rounds beta * x first: one more ulp)
    return Case({"z": getattr(ak, op)(fin("x", a.shape), **_MORE_ARGS.get(op, {}))}, {"x": a},
                {"z": ref(a.astype(np.float64))}, ulps=2.0)


@case("prelu", "softplus_parametric")
def _per_channel(op, rng):
    a = h(rng.standard_normal((2, 3, 4)) * 3)
    alpha, beta = h(rng.uniform(0.1, 1.5, 3)), h(rng.uniform(0.5, 2, 3))
    x, a64 = fin("x", a.shape), a.astype(np.float64)
    al, be = alpha.astype(np.float64).reshape(1, 3, 1), beta.astype(np.float64).reshape(1, 3, 1)
    if op == "prelu":
        return Case({"z": ak.prelu(x, alpha=alpha)}, {"x": a}, {"z": np.where(a64 >= 0, a64, al * a64)})
    return Case({"z": ak.softplus_parametric(x, alpha=alpha, beta=beta)}, {"x": a},
                {"z": al * np.log1p(np.exp(be * a64))}, ulps=2.0)


@case("reduce_log_sum")
def _reduce_log_sum(op, rng):
    a = h(rng.uniform(0.1, 3, (3, 8)))
    # profile: the sum is stored in fp16 before the log (|d log| <= 2**-11), then the log rounds
    return Case({"z": ak.reduce_log_sum(fin("x", a.shape), axes=[1])}, {"x": a},
                {"z": np.log(a.astype(np.float64).sum(1))}, allow=2.0 ** -11)


@case("quantize", "dequantize")
def _quantize(op, rng):
    a = h(rng.uniform(-20, 20, (2, 4)))
    x = fin("x", a.shape)
    scale = np.array([0.125, 0.25, 0.5, 1.0], np.float32)          # powers of two: exact quotients
    zp = np.array([-3, 0, 5, 100], np.int8)
    q = OPS.quantize(x, scale=scale, zero_point=zp, axis=1, output_dtype="int8")
    want = np.clip(np.round(a.astype(np.float64) / scale) + zp, -128, 127)
    if op == "quantize":
        return Case({"q": q}, {"x": a}, {"q": want.astype(np.int32)}, equal=True)
    return Case({"d": ak.dequantize(q, scale=scale, zero_point=zp, axis=1)}, {"x": a}, {"d": (want - zp) * scale})


@case("rnn", torch_ref=True)
def _rnn(op, rng):
    a = h(rng.standard_normal((5, 2, 4)))
    w_ih, w_hh, b = h(rng.standard_normal((3, 4)) * 0.5), h(rng.standard_normal((3, 3)) * 0.5), h(rng.standard_normal(3))
    cell = torch.nn.RNN(4, 3).double()
    with torch.no_grad():
        cell.weight_ih_l0.copy_(t64(w_ih)), cell.weight_hh_l0.copy_(t64(w_hh))
        cell.bias_ih_l0.copy_(t64(b)), cell.bias_hh_l0.zero_()
        want, hn = cell(t64(a))
    y, hl = ak.rnn(fin("x", a.shape), np.zeros((2, 3), np.float32), w_ih, w_hh, bias=b, output_sequence=True)
    # float32 recurrence, outputs rounded once to fp16 (as lstm)
    return Case({"y": y, "h": hl}, {"x": a}, {"y": want.numpy(), "h": hn[0].numpy()})


@case("resample", "affine", torch_ref=True)
def _resample(op, rng):
    a = h(rng.standard_normal((2, 3, 5, 7)))
    x = fin("x", a.shape)
    common = dict(sampling_mode="bilinear", padding_mode="constant", padding_value=np.float32(0.0),
                  coordinates_mode="normalized_minus_one_to_one", align_corners=False)
    if op == "resample":
        g = h(rng.uniform(-1.2, 1.2, (2, 4, 6, 2)))
        want = F.grid_sample(t64(a), t64(g), mode="bilinear", padding_mode="zeros", align_corners=False)
        return Case({"z": ak.resample(x, fin("g", g.shape), **common)}, {"x": a, "g": g}, {"z": want.numpy()}, ulps=2.0)
    th = h(rng.uniform(-1, 1, (2, 6)))
    grid = F.affine_grid(t64(th).reshape(2, 2, 3), (2, 3, 4, 6), align_corners=False)
    want = F.grid_sample(t64(a), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return Case({"z": ak.affine(x, fin("t", th.shape), output_height=4, output_width=6, **common)},
                {"x": a, "t": th}, {"z": want.numpy()}, ulps=2.0)


@case("einsum")
def _einsum(op, rng):
    a, b = h(rng.standard_normal((2, 3, 4, 16))), h(rng.standard_normal((1, 16, 4, 5)))
    a64, b64 = a.astype(np.float64), np.broadcast_to(b.astype(np.float64), (2, 16, 4, 5))
    ref = np.einsum("nchw,nwhu->nchu", a64, b64)
    mag = np.einsum("nchw,nwhu->nchu", np.abs(a64), np.abs(b64))
    return Case({"z": ak.einsum((fin("x", a.shape), fin("y", b.shape)), equation="nchw,nwhu->nchu")},
                {"x": a, "y": b}, {"z": ref}, allow=_mac_allow(mag)[0], exact_allow=_mac_allow(mag)[1])


@case("constexpr_lut_to_sparse", "constexpr_sparse_blockwise_shift_scale")
def _sparse_constexpr(op, rng):
    mask = rng.random((4, 6)) < 0.5
    nnz = int(mask.sum())
    m = make_const(mask.astype(np.uint8), "uint1")
    dense = np.zeros((4, 6))
    if op == "constexpr_lut_to_sparse":
        idx, lut = rng.integers(0, 4, nnz).astype(np.uint8), h(rng.standard_normal((2, 1, 4, 1)))
        mm, v = ak.constexpr_lut_to_sparse(m, make_const(idx, "uint2"), lut)
        dense[mask] = lut[np.nonzero(mask)[0] // 2, 0, idx, 0]
    else:
        q, scale = rng.integers(-8, 8, nnz).astype(np.int8), h(rng.uniform(0.1, 1, (4, 2)))
        mm, v = ak.constexpr_sparse_blockwise_shift_scale(m, make_const(q, "int4"), scale)
        dense[mask] = q * np.repeat(scale.astype(np.float64), 3, axis=1)[mask]
    x = fin("x", (1,))
    return Case({"z": x * ak.constexpr_sparse_to_dense(v, mm)}, {"x": np.ones(1, np.float32)}, {"z": dense})


def _loop_case():
    """acc <- 2 acc + x while i < 3 (body ops round in fp16: integer values stay exact)."""
    from anekit.ir.ops import control
    i, acc, xi = fin("i", (1,), "int32"), fin("acc", (2, 3)), fin("xi", (2, 3))
    cond = control.block("cond", [i, acc, xi], [i < 3])
    body = control.block("body", [i, acc, xi], [i + 1, acc * 2.0 + xi])
    return control, cond, body


@case("while_loop", "cond")
def _control(op, rng):
    a = np.round(rng.standard_normal((2, 3)) * 4).astype(np.float32)
    x = fin("x", a.shape)
    control, cond, body = _loop_case()
    if op == "while_loop":
        n, y = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)), x * 0.0),
                                            "captures": (x,)}, {"cond": cond, "body": body})
        return Case({"n": n, "y": y}, {"x": a}, {"n": np.array([3], np.int32), "y": 7.0 * a}, equal=True)
    c = fin("c", a.shape)
    t = control.block("true_block", [c], [ak.relu(c)])
    f = control.block("false_block", [c], [c * -2.0])
    y = control.build("cond", {"pred": ak.reduce_sum(x) > 0.0, "captures": (x,)},
                      {"true_block": t, "false_block": f})
    ref = np.maximum(a, 0) if a.sum() > 0 else -2.0 * a
    return Case({"y": y}, {"x": a}, {"y": ref}, equal=True)


# --- the tests --------------------------------------------------------------------------------

def _param(name: str, cases):
    """A parametrize value, marked torch when any of its cases needs PyTorch for its reference."""
    return pytest.param(name, marks=pytest.mark.torch) if any(c in TORCH_CASES for c in cases) else name


def ops_with_cases():
    return [_param(op, [n for n in CASES if n.split(":")[0] == op]) for op in sorted(REGISTRY)]


def test_every_registered_op_has_a_kernel_and_a_case():
    assert all(s.kernel is not None for s in REGISTRY.values()), sorted(n for n, s in REGISTRY.items() if not s.kernel)
    covered = {name.split(":")[0] for name in CASES}
    assert set(REGISTRY) <= covered, f"ops without an accuracy case: {sorted(set(REGISTRY) - covered)}"


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_kernel_signature_matches_the_declaration(op):
    import inspect
    params = list(inspect.signature(REGISTRY[op].kernel.fn).parameters)[1:]
    assert params == [p.name for p in REGISTRY[op].params]


def _check(c: Case, profile: str):
    prog = c.program or ak.program(c.outputs)
    out = Simulator(prog, profile=profile).run(c.feeds)
    assert set(out) == set(c.refs)
    for name, ref in c.refs.items():
        got = out[name]
        ref = np.asarray(ref)
        assert got.shape == ref.shape, name
        if c.equal or ref.dtype.kind in "biu":
            np.testing.assert_array_equal(got, ref.astype(got.dtype), err_msg=f"{profile} {name}")
            continue
        got, ref = got.astype(np.float64), ref.astype(np.float64)
        err = np.abs(got - ref)
        pick = (lambda v: v[name] if isinstance(v, dict) else v)
        if profile == "exact":
            scale = max(float(np.abs(ref).max()), 1e-3)
            bound = 1e-5 * np.abs(ref) + 1e-6 * scale + pick(c.exact_allow)
        else:
            bound = c.ulps * ulp16(ref) + pick(c.allow)
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert np.all(err <= bound), (f"{profile} {name}: |out - ref| = {err[worst]:.3g} at {worst} > "
                                      f"{np.broadcast_to(bound, err.shape)[worst]:.3g} (ref {ref[worst]:.6g})")


def cases_of(op):
    names = [n for n in sorted(CASES) if n.split(":")[0] == op]
    assert names, f"no accuracy case for op '{op}'"
    return names


@pytest.mark.parametrize("profile", ["exact", PROFILE])
@pytest.mark.parametrize("op", ops_with_cases())
def test_kernel_matches_reference(op, profile):
    for name in cases_of(op):
        _check(CASES[name](name, rng_for(name)), profile)


@pytest.mark.parametrize("name", [_param(n, [n]) for n in (
    "matmul", "linear", "conv", "conv:grouped", "conv:depthwise", "conv:pointwise", "conv_transpose",
    "scaled_dot_product_attention", "reduce_sum")])
def test_fast_accumulation_route_matches_reference(name):
    """The same MAC cases on the float32 route that big reductions take (no lane emulation)."""
    import dataclasses
    from anekit.sim import profile_for
    fast = dataclasses.replace(profile_for(PROFILE), tile_emulation_max_products=0)
    c = CASES[name](name, rng_for(name))
    prog = ak.program(c.outputs)
    emulated = Simulator(prog, profile=PROFILE).run(c.feeds)
    quick = Simulator(prog, profile=fast).run(c.feeds)
    for k, ref in c.refs.items():
        ref = np.asarray(ref, np.float64)
        allow = c.allow[k] if isinstance(c.allow, dict) else c.allow
        assert np.all(np.abs(quick[k] - ref) <= c.ulps * ulp16(ref) + allow), k
        # the two routes differ by at most the lane-model allowance
        assert np.all(np.abs(quick[k].astype(np.float64) - emulated[k]) <= 2 * c.ulps * ulp16(ref) + allow), k


@pytest.mark.parametrize("op", ops_with_cases())
def test_profile_stays_within_fp16_rounding_of_exact(op):
    """Away from the documented edge cases (these inputs are finite, in range, and avoid the
    MAC ceiling), the chip profile differs from exact mode only by its fp16 roundings and the
    modelled table errors: the same allowance as against the reference, plus exact mode's."""
    for name in cases_of(op):
        _profile_near_exact(CASES[name](name, rng_for(name)))


def _profile_near_exact(c: Case):
    prog = c.program or ak.program(c.outputs)
    exact = Simulator(prog, profile="exact").run(c.feeds)
    chip = Simulator(prog, profile=PROFILE).run(c.feeds)
    for k in c.refs:
        e, p = np.asarray(exact[k]), np.asarray(chip[k])
        if c.equal or e.dtype.kind in "biu":
            np.testing.assert_array_equal(p, e, err_msg=k)
            continue
        e, p = e.astype(np.float64), p.astype(np.float64)
        pick = (lambda v: v[k] if isinstance(v, dict) else v)
        bound = c.ulps * ulp16(e) + pick(c.allow) + pick(c.exact_allow) + 1e-5 * np.abs(e)
        assert np.all(np.abs(p - e) <= bound), k
