"""Elementwise ops: binary arithmetic with broadcasting, unary math, activations, comparisons.

All run on the vector engine; activations and per-channel arithmetic ride on a MAC op's
output pass (guide ch. 13). Ops declared in loops take their per-name facts from the small
tables right above each loop.
"""
from __future__ import annotations

import math

from .. import intervals as iv
from ..dtypes import FLOATS
from ..spec import const, declare, op, tensor
from ._rules import broadcast

NUMERIC = ("fp16", "fp32", "int32")


def _binary(a):
    return [(a.T, broadcast(a, "x", "y"))]


def _compare(a):
    return [("bool", broadcast(a, "x", "y"))]


def _same(a):
    return [(a.x.dtype, a.x.shape)]


def _binary_range(op, res):
    a, b = iv.x_of(op, res, "x"), iv.x_of(op, res, "y")
    if op.type == "add":
        return iv.fix(a[0] + b[0], a[1] + b[1])
    if op.type == "sub":
        return iv.fix(a[0] - b[1], a[1] - b[0])
    if op.type == "mul":
        if op.inputs["x"] is op.inputs["y"]:   # x * x: a square, never negative
            return (0.0 if a[0] <= 0.0 <= a[1] else min(a[0] ** 2, a[1] ** 2), iv.mag(a) ** 2)
        return iv.mul(a, b)
    if b[0] <= 0.0 <= b[1]:   # real_div, floor_div by a range that holds 0
        return iv.UNBOUNDED
    return iv.mul(a, (1.0 / b[1], 1.0 / b[0]))


def _extreme(op, res, f):
    """maximum / minimum: monotone in both arguments, so the bounds' max / min (a floor such
    as maximum(x, 1e-3) keeps the result away from 0)."""
    a, b = res.of(op.inputs["x"]), res.of(op.inputs["y"])
    return (f(a[0], b[0]), f(a[1], b[1]))


# name: (fp16 range rule, rides on a MAC output pass)
_BINARY = {"add": (_binary_range, True), "sub": (_binary_range, True), "mul": (_binary_range, True),
           "real_div": (_binary_range, True), "floor_div": (_binary_range, False),
           "maximum": (lambda op, res: _extreme(op, res, max), True),
           "minimum": (lambda op, res: _extreme(op, res, min), True),
           "pow": (iv.unbounded, False), "mod": (iv.unbounded, False)}
for _name, (_range, _epilogue) in _BINARY.items():
    declare(_name, kind="elementwise", infer=_binary, T=NUMERIC, x=tensor(), y=tensor(),
            fp16_range=_range, mac_epilogue=_epilogue,
            doc=f"Elementwise {_name} of x and y with numpy broadcasting.")

for _name in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal"):
    declare(_name, kind="elementwise", infer=_compare, T=NUMERIC, x=tensor(), y=tensor(), fp16_range=iv.boolean,
            doc=f"Elementwise comparison ({_name}); the result is bool.")

for _name in ("logical_and", "logical_or", "logical_xor"):
    declare(_name, kind="elementwise", infer=_binary, T=("bool",), x=tensor(), y=tensor(), fp16_range=iv.boolean)
declare("logical_not", kind="elementwise", infer=_same, T=("bool",), x=tensor(), fp16_range=iv.boolean)


def _round_like(f):
    return lambda x: iv.monotone(f, x) if iv.bounded(x) else x


# name: (kind, dtypes, fp16 range of the output given x's interval, or None: unbounded)
_UNARY = {
    "abs": ("elementwise", NUMERIC,
            lambda x: (0.0 if x[0] <= 0 <= x[1] else min(abs(x[0]), abs(x[1])), iv.mag(x))),
    "square": ("elementwise", NUMERIC,
               lambda x: (0.0 if x[0] <= 0 <= x[1] else min(x[0] ** 2, x[1] ** 2), iv.mag(x) ** 2)),
    "sqrt": ("activation", FLOATS, lambda x: (math.sqrt(max(x[0], 0.0)), math.sqrt(max(x[1], 0.0)))),
    "exp": ("activation", FLOATS, lambda x: iv.monotone(iv.exp, x)),
    "exp2": ("activation", FLOATS, lambda x: iv.monotone(lambda v: iv.exp(v * math.log(2.0)), x)),
    "floor": ("elementwise", FLOATS, _round_like(math.floor)),
    "ceil": ("elementwise", FLOATS, _round_like(math.ceil)),
    "round": ("elementwise", FLOATS, _round_like(round)),
    "sign": ("elementwise", NUMERIC, lambda x: (-1.0, 1.0)),
    "sin": ("activation", FLOATS, lambda x: (-1.0, 1.0)),
    "cos": ("activation", FLOATS, lambda x: (-1.0, 1.0)),
    "tan": ("activation", FLOATS, None),
    "atan": ("activation", FLOATS, lambda x: (-math.pi / 2, math.pi / 2)),
    "erf": ("activation", FLOATS, lambda x: (-1.0, 1.0)),
}
for _name, (_kind, _T, _range) in _UNARY.items():
    declare(_name, kind=_kind, infer=_same, T=_T, x=tensor(), doc=f"Elementwise {_name}.",
            fp16_range=iv.unbounded if _range is None else iv.unary(_range))

# Epsilon-guarded math: MIL adds epsilon to x first (defaults from the MIL op set).
def _eps_shifted(op, res):
    x, eps = iv.x_of(op, res), float(op.attr("epsilon") or 0.0)
    return x[0] + eps, x[1] + eps


def _rsqrt_range(op, res):
    x, eps = iv.x_of(op, res), float(op.attr("epsilon") or 0.0)
    lo, hi = max(x[0], 0.0) + eps, max(x[1], 0.0) + eps
    if lo <= 0:
        return (1.0 / math.sqrt(hi) if hi < iv.INF and hi > 0 else 0.0, iv.INF)
    return (1.0 / math.sqrt(hi) if hi < iv.INF else 0.0, 1.0 / math.sqrt(lo))


def _inverse_range(op, res):
    lo, hi = _eps_shifted(op, res)
    if lo <= 0.0 <= hi:
        return None
    return iv.ordered(lambda v: 1.0 / v if v not in (iv.INF, -iv.INF) else 0.0, (lo, hi))


def _log_range(op, res):
    lo, hi = _eps_shifted(op, res)
    if hi <= 0:
        return None
    return iv.fix(math.log(lo) if lo > 0 else -iv.INF, math.log(hi) if hi < iv.INF else iv.INF)


declare("rsqrt", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-12),
        fp16_range=_rsqrt_range, doc="1 / sqrt(x + epsilon).")
declare("inverse", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-4),
        fp16_range=_inverse_range, doc="1 / (x + epsilon).")
declare("log", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-45),
        fp16_range=_log_range, doc="Natural log of (x + epsilon).")


def _silu(x):
    if x == iv.INF:
        return iv.INF
    if x == -iv.INF:
        return 0.0
    return x / (1.0 + iv.exp(-x)) if x > -700 else 0.0


def _gelu(x):
    if abs(x) == iv.INF:
        return max(x, 0.0)
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _softplus(x):
    if x == iv.INF:
        return iv.INF
    return x + math.log1p(iv.exp(-x)) if x > 0 else math.log1p(iv.exp(x))


# name: fp16 range of the output given x's interval
_ACTIVATIONS = {
    "relu": lambda x: (max(x[0], 0.0), max(x[1], 0.0)),
    "relu6": lambda x: (min(max(x[0], 0.0), 6.0), min(max(x[1], 0.0), 6.0)),
    "sigmoid": lambda x: (0.0, 1.0),
    "tanh": lambda x: (-1.0, 1.0),
    "silu": lambda x: iv.with_min(_silu, x, -1.2785, -0.2785),
    "softplus": lambda x: iv.monotone(_softplus, x),
    "softsign": lambda x: (-1.0, 1.0),
}
for _name, _range in _ACTIVATIONS.items():
    declare(_name, kind="activation", infer=_same, x=tensor(), fp16_range=iv.unary(_range),
            doc=f"Elementwise {_name}.")
# A descriptor edit on the engine: no data moves (guide ch. 4, "metadata edit").
declare("identity", kind="movement", infer=_same, T=NUMERIC, x=tensor(), path="free", fp16_range=iv.same,
        doc="Elementwise identity.")


def _alpha_rule(f):
    """A range rule for an activation with an alpha parameter, monotone on each side of 0."""
    return lambda op, res: iv.hull_through_zero(f(float(op.attr("alpha"))), iv.x_of(op, res))


declare("leaky_relu", kind="activation", infer=_same, x=tensor(), alpha=const("T", 0, default=0.01),
        fp16_range=_alpha_rule(lambda a: lambda v: v if v >= 0 else a * v),
        doc="x if x >= 0 else alpha * x.")
declare("elu", kind="activation", infer=_same, x=tensor(), alpha=const("T", 0, default=1.0),
        fp16_range=_alpha_rule(lambda a: lambda v: v if v > 0 else a * (iv.exp(v) - 1.0)),
        doc="x if x > 0 else alpha * (exp(x) - 1).")
declare("gelu", kind="activation", infer=_same, x=tensor(),
        mode=const("string", 0, default="EXACT", choices=("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")),
        fp16_range=iv.unary(lambda x: iv.with_min(_gelu, x, -0.7518, -0.1700)),
        doc="GELU, exact (erf) or one of MIL's approximations.")
declare("sigmoid_hard", kind="activation", infer=_same, x=tensor(),
        alpha=const("T", 0, default=0.2), beta=const("T", 0, default=0.5),
        fp16_range=iv.unary(lambda x: (0.0, 1.0)), doc="min(max(alpha * x + beta, 0), 1).")


def _linear_activation_range(op, res):
    a, b = float(op.attr("alpha")), float(op.attr("beta"))
    return iv.ordered(lambda v: a * v + b, iv.x_of(op, res))


def _clip_range(op, res):
    x = iv.x_of(op, res)
    a, b = float(op.attr("alpha")), float(op.attr("beta"))
    return (min(max(x[0], a), b), min(max(x[1], a), b))


declare("linear_activation", kind="elementwise", infer=_same, x=tensor(),
        alpha=const("T", 0, default=1.0), beta=const("T", 0, default=0.0), mac_epilogue=True,
        fp16_range=_linear_activation_range, doc="alpha * x + beta.")
declare("clip", kind="elementwise", infer=_same, x=tensor(), alpha=const("T", 0), beta=const("T", 0),
        mac_epilogue=True, fp16_range=_clip_range, doc="min(max(x, alpha), beta).")


@op(kind="elementwise", T=NUMERIC + ("bool",), cond=tensor("bool"), a=tensor(), b=tensor(),
    fp16_range=iv.union_of("a", "b"))
def select(a):
    """cond ? a : b, broadcasting all three."""
    return [(a.T, broadcast(a, "cond", "a", "b"))]


def _cast_range(op, res):
    return iv.BOOL if op.attr("dtype") == "bool" else iv.x_of(op, res)


@op(kind="movement", T=NUMERIC + ("bool",), fp16_range=_cast_range, coreml_dtype_param="dtype", x=tensor(),
    dtype=const("string", 0, choices=("fp16", "fp32", "int32", "bool")))
def cast(a):
    """Convert x to another dtype."""
    return [(a.dtype, a.x.shape)]


# --- gradient rules (vector-Jacobian products written with forward ops; guide ch. 15) ---------
# A rule may return a cotangent of the broadcast output shape: autodiff sums it to the input's.

import math as _math  # noqa: E402

from ..spec import lookup as _lookup  # noqa: E402
from ..declared import F  # noqa: E402


def _defgrad(name):
    return _lookup(name).defgrad


def _where(cond, g, zero_first=False):
    """g where cond holds, else 0 (or the reverse)."""
    return F.select(cond, 0.0, g) if zero_first else F.select(cond, g, 0.0)


def _between(lo_ok, hi_ok, g):
    """g where both conditions hold: nested selects (the engine has no logical_and; appendix A)."""
    return _where(lo_ok, _where(hi_ok, g))


@_defgrad("add")
def _add_grad(op, gs):
    return {"x": gs[0], "y": gs[0]}


@_defgrad("sub")
def _sub_grad(op, gs):
    return {"x": gs[0], "y": -gs[0]}


@_defgrad("mul")
def _mul_grad(op, gs):
    x, y = op.inputs["x"], op.inputs["y"]
    return {"x": gs[0] * y, "y": gs[0] * x}


@_defgrad("real_div")
def _div_grad(op, gs):
    y, out = op.inputs["y"], op.outputs[0]
    gx = gs[0] / y
    return {"x": gx, "y": -(gx * out)}


@_defgrad("pow")
def _pow_grad(op, gs):
    x, y, out = op.inputs["x"], op.inputs["y"], op.outputs[0]
    return {"x": gs[0] * y * F.pow(x, y - 1.0), "y": gs[0] * out * F.log(x)}


def _minmax_grad(first_wins):
    def rule(op, gs):
        x, y = op.inputs["x"], op.inputs["y"]
        pick_x = (x >= y) if first_wins else (x <= y)
        return {"x": _where(pick_x, gs[0]), "y": _where(pick_x, gs[0], zero_first=True)}
    return rule


_defgrad("maximum")(_minmax_grad(True))
_defgrad("minimum")(_minmax_grad(False))


@_defgrad("square")
def _square_grad(op, gs):
    return {"x": gs[0] * op.inputs["x"] * 2.0}


@_defgrad("abs")
def _abs_grad(op, gs):
    return {"x": gs[0] * F.sign(op.inputs["x"])}


@_defgrad("sqrt")
def _sqrt_grad(op, gs):
    return {"x": gs[0] * 0.5 / op.outputs[0]}


@_defgrad("rsqrt")
def _rsqrt_grad(op, gs):
    y = op.outputs[0]                               # (x + eps)^-1/2: d/dx = -y^3 / 2
    return {"x": gs[0] * -0.5 * y * y * y}          # g first: y^3 alone overflows fp16 from y = 41


@_defgrad("inverse")
def _inverse_grad(op, gs):
    y = op.outputs[0]
    return {"x": -(gs[0] * y * y)}


@_defgrad("exp")
def _exp_grad(op, gs):
    return {"x": gs[0] * op.outputs[0]}


@_defgrad("exp2")
def _exp2_grad(op, gs):
    return {"x": gs[0] * op.outputs[0] * _math.log(2.0)}


@_defgrad("log")
def _log_grad(op, gs):
    return {"x": gs[0] / (op.inputs["x"] + op.attr("epsilon"))}


@_defgrad("erf")
def _erf_grad(op, gs):
    x = op.inputs["x"]
    return {"x": gs[0] * F.exp(-(x * x)) * (2.0 / _math.sqrt(_math.pi))}


@_defgrad("sin")
def _sin_grad(op, gs):
    return {"x": gs[0] * F.cos(op.inputs["x"])}


@_defgrad("cos")
def _cos_grad(op, gs):
    return {"x": -(gs[0] * F.sin(op.inputs["x"]))}


@_defgrad("tan")
def _tan_grad(op, gs):
    y = op.outputs[0]
    return {"x": gs[0] * (y * y + 1.0)}


@_defgrad("atan")
def _atan_grad(op, gs):
    x = op.inputs["x"]
    return {"x": gs[0] / (x * x + 1.0)}


@_defgrad("relu")
def _relu_grad(op, gs):
    return {"x": _where(op.inputs["x"] > 0.0, gs[0])}


@_defgrad("relu6")
def _relu6_grad(op, gs):
    x = op.inputs["x"]
    return {"x": _between(x > 0.0, x < 6.0, gs[0])}


@_defgrad("leaky_relu")
def _leaky_relu_grad(op, gs):
    x, g = op.inputs["x"], gs[0]
    return {"x": F.select(x >= 0.0, g, g * op.attr("alpha"))}


@_defgrad("elu")
def _elu_grad(op, gs):
    x, y, g = op.inputs["x"], op.outputs[0], gs[0]
    return {"x": F.select(x > 0.0, g, g * (y + op.attr("alpha")))}


@_defgrad("sigmoid")
def _sigmoid_grad(op, gs):
    y = op.outputs[0]
    return {"x": gs[0] * y * (1.0 - y)}


@_defgrad("tanh")
def _tanh_grad(op, gs):
    y = op.outputs[0]
    return {"x": gs[0] * (1.0 - y * y)}


@_defgrad("silu")
def _silu_grad(op, gs):
    x = op.inputs["x"]
    s = x.sigmoid()                                 # d/dx x*s = s * (1 + x * (1 - s))
    return {"x": gs[0] * s * (x * (1.0 - s) + 1.0)}


@_defgrad("softplus")
def _softplus_grad(op, gs):
    return {"x": gs[0] * op.inputs["x"].sigmoid()}


@_defgrad("softsign")
def _softsign_grad(op, gs):
    d = F.abs(op.inputs["x"]) + 1.0
    return {"x": gs[0] / (d * d)}


@_defgrad("gelu")
def _gelu_grad(op, gs):
    x, mode = op.inputs["x"], op.attr("mode")
    if mode == "EXACT":                             # Phi(x) + x * phi(x)
        cdf = (F.erf(x * (1.0 / _math.sqrt(2.0))) + 1.0) * 0.5
        pdf = F.exp(x * x * -0.5) * (1.0 / _math.sqrt(2.0 * _math.pi))
        return {"x": gs[0] * (cdf + x * pdf)}
    if mode == "TANH_APPROXIMATION":                # 0.5 x (1 + tanh(k (x + 0.044715 x^3)))
        k = _math.sqrt(2.0 / _math.pi)
        t = ((x + x * x * x * 0.044715) * k).tanh()
        dt = (1.0 - t * t) * (x * x * (3 * 0.044715 * k) + k)
        return {"x": gs[0] * ((t + 1.0) * 0.5 + x * 0.5 * dt)}
    s = (x * 1.702).sigmoid()                       # x * sigmoid(1.702 x)
    return {"x": gs[0] * (s + x * s * (1.0 - s) * 1.702)}


@_defgrad("sigmoid_hard")
def _sigmoid_hard_grad(op, gs):
    x = op.inputs["x"]
    alpha, beta = op.attr("alpha"), op.attr("beta")
    z = x * alpha + beta
    return {"x": _between(z > 0.0, z < 1.0, gs[0] * alpha)}


@_defgrad("linear_activation")
def _linear_activation_grad(op, gs):
    return {"x": gs[0] * op.attr("alpha")}


@_defgrad("identity")
def _identity_grad(op, gs):
    return {"x": gs[0]}


@_defgrad("clip")
def _clip_grad(op, gs):
    x = op.inputs["x"]
    return {"x": _between(x >= op.attr("alpha"), x <= op.attr("beta"), gs[0])}


@_defgrad("select")
def _select_grad(op, gs):
    cond = op.inputs["cond"]
    return {"a": _where(cond, gs[0]), "b": _where(cond, gs[0], zero_first=True)}


@_defgrad("cast")
def _cast_grad(op, gs):
    x = op.inputs["x"]                              # autodiff skips integer and bool sources
    return {"x": gs[0] if gs[0].dtype == x.dtype else gs[0].cast(x.dtype)}


def _step_grad(op, gs):
    """Piecewise-constant ops: the derivative is zero wherever it exists (PyTorch's convention)."""
    return {"x": None}


for _name in ("floor", "ceil", "round", "sign"):
    _lookup(_name).defgrad(_step_grad)


@_defgrad("floor_div")
def _floor_div_grad(op, gs):
    """Piecewise constant in both arguments: no gradient flows."""
    return {"x": None, "y": None}


@_defgrad("mod")
def _mod_grad(op, gs):
    """x mod y = x - floor(x / y) * y (numpy's sign convention)."""
    x, y = op.inputs["x"], op.inputs["y"]
    return {"x": gs[0], "y": -(gs[0] * F.floor_div(x, y))}
