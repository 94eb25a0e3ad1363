"""Elementwise ops: binary arithmetic with broadcasting, unary math, activations, comparisons."""
from __future__ import annotations

from ..spec import const, declare, op, tensor
from ._rules import broadcast

NUMERIC = ("fp16", "fp32", "int32")


def _binary(a):
    return [(a.T, broadcast(a, "x", "y"))]


def _compare(a):
    return [("bool", broadcast(a, "x", "y"))]


def _same(a):
    return [(a.x.dtype, a.x.shape)]


for _name in ("add", "sub", "mul", "real_div", "pow", "maximum", "minimum", "floor_div", "mod"):
    declare(_name, kind="elementwise", infer=_binary, T=NUMERIC, x=tensor(), y=tensor(),
            doc=f"Elementwise {_name} of x and y with numpy broadcasting.")

for _name in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal"):
    declare(_name, kind="elementwise", infer=_compare, T=NUMERIC, x=tensor(), y=tensor(),
            doc=f"Elementwise comparison ({_name}); the result is bool.")

for _name in ("logical_and", "logical_or", "logical_xor"):
    declare(_name, kind="elementwise", infer=_binary, T=("bool",), x=tensor(), y=tensor())
declare("logical_not", kind="elementwise", infer=_same, T=("bool",), x=tensor())

# Plain unary math on floats (abs also on int32).
for _name in ("abs", "square", "sqrt", "exp", "exp2", "floor", "ceil", "round", "sign",
              "sin", "cos", "tan", "atan", "erf"):
    declare(_name, kind="elementwise" if _name in ("abs", "square", "floor", "ceil", "round", "sign")
            else "activation", infer=_same, T=NUMERIC if _name in ("abs", "square", "sign") else ("fp16", "fp32"),
            x=tensor(), doc=f"Elementwise {_name}.")

# Epsilon-guarded math: MIL adds epsilon to x first (defaults from the MIL op set).
declare("rsqrt", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-12),
        doc="1 / sqrt(x + epsilon).")
declare("inverse", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-4),
        doc="1 / (x + epsilon).")
declare("log", kind="activation", infer=_same, x=tensor(), epsilon=const("T", 0, default=1e-45),
        doc="Natural log of (x + epsilon).")

for _name in ("relu", "relu6", "sigmoid", "tanh", "silu", "softplus", "softsign", "identity"):
    declare(_name, kind="activation" if _name != "identity" else "movement", infer=_same,
            T=("fp16", "fp32", "int32") if _name == "identity" else ("fp16", "fp32"), x=tensor(),
            doc=f"Elementwise {_name}.")

declare("leaky_relu", kind="activation", infer=_same, x=tensor(), alpha=const("T", 0, default=0.01),
        doc="x if x >= 0 else alpha * x.")
declare("elu", kind="activation", infer=_same, x=tensor(), alpha=const("T", 0, default=1.0),
        doc="x if x > 0 else alpha * (exp(x) - 1).")
declare("gelu", kind="activation", infer=_same, x=tensor(),
        mode=const("string", 0, default="EXACT", choices=("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")),
        doc="GELU, exact (erf) or one of MIL's approximations.")
declare("sigmoid_hard", kind="activation", infer=_same, x=tensor(),
        alpha=const("T", 0, default=0.2), beta=const("T", 0, default=0.5),
        doc="min(max(alpha * x + beta, 0), 1).")
declare("linear_activation", kind="elementwise", infer=_same, x=tensor(),
        alpha=const("T", 0, default=1.0), beta=const("T", 0, default=0.0), doc="alpha * x + beta.")
declare("clip", kind="elementwise", infer=_same, x=tensor(), alpha=const("T", 0), beta=const("T", 0),
        doc="min(max(x, alpha), beta).")


@op(kind="elementwise", T=NUMERIC + ("bool",), cond=tensor("bool"), a=tensor(), b=tensor())
def select(a):
    """cond ? a : b, broadcasting all three."""
    return [(a.T, broadcast(a, "cond", "a", "b"))]


@op(kind="movement", T=NUMERIC + ("bool",), x=tensor(),
    dtype=const("string", 0, choices=("fp16", "fp32", "int32", "bool")))
def cast(a):
    """Convert x to another dtype."""
    return [(a.dtype, a.x.shape)]
