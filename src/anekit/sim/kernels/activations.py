"""Activation functions: exact float32 references, and the engine's table model.

In a chip profile (guide ch. 3 "Activation functions" and "Edge behavior"): every table
activation is the exact function rounded to fp16, which is what the guide measures on the
engine ("matches the fp16-rounded exact function to about half a unit in the last place").
On top of that only what was measured, where it was measured: sigmoid holds its end value
past the published domain (tbl:c3-constants), gelu and silu carry their tables' origin bias
at x = 0 (the one point it was measured), softplus and softsign collapse +inf to +0. A
profile may opt into 33-knot tables (tables.py) for sigmoid and gelu instead.
"""
from __future__ import annotations

import numpy as np

from .. import fp16_grid, taylor32
from .. import functions as fn
from ..fp16 import F32
from ..registry import kernel
from ..tables import build as table


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _collapse(c, name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if c.nx.fp16 and name in c.nx.profile.inf_collapse:
        y = np.where(x == np.inf, F32(0.0), y)
    return y


@kernel("relu")
def relu(c, x):
    return np.maximum(x, F32(0.0))


@kernel("relu6")
def relu6(c, x):
    return np.clip(x, F32(0.0), F32(6.0))


@kernel("leaky_relu")
def leaky_relu(c, x, alpha):
    return np.where(x >= 0, x, c.nx.const(alpha) * x)


@kernel("elu")
def elu(c, x, alpha):
    return np.where(x > 0, x, c.nx.const(alpha) * np.expm1(x))


def _sigmoid32(x: np.ndarray) -> np.ndarray:
    # exp(-x) overflows to inf for x < -88, giving the right limit 0. (Its program form,
    # "logistic" in sim/program.py, is these four steps with numpy's exp.)
    return F32(1.0) / (F32(1.0) + np.exp(-x))


def _origin_bias(p, x: np.ndarray, y: np.ndarray, bias: float) -> np.ndarray:
    """y with a table's origin bias: at x = 0 only, or tapering linearly to zero over
    `origin_bias_width` (the hat a biased origin knot spreads between its neighbours)."""
    if not bias:
        return y
    if p.origin_bias_width > 0:
        hat = np.maximum(F32(1.0) - np.abs(x) * F32(1.0 / p.origin_bias_width), F32(0.0))
        return y + F32(bias) * hat
    return np.where(x == 0, F32(bias), y)         # +0 and -0 alike


def _by_grid(c, key, f, x: np.ndarray) -> np.ndarray:
    """f(x), read from a table over the fp16 grid in a chip profile (fp16_grid.py: the values
    f computes elementwise; numpy's float32 exp, tanh and arithmetic give an element the same
    bits at any position and array size, NaN payloads aside), else computed. Only where the
    result is stored with NaN as 0, so a payload never shows."""
    p = c.nx.profile
    y = fp16_grid.lookup(key, f, x) if c.nx.fp16 and p.indeterminate_to_zero else None
    return f(x) if y is None else y


def _grid_program(key_fn):
    """The program form of an activation _by_grid computes: its fp16-grid table in the profiles
    where _by_grid reads one (fp16 storage, NaN stored as 0), the function in exact numerics."""
    def program(c, consts):
        p = c.nx.profile
        kf = key_fn(c)
        if kf is None:
            return None
        if not c.nx.fp16:             # exact numerics: the function itself, by numpy
            return ("logistic",) if kf[1] is _sigmoid32 else ("numpy", kf[1])
        return ("table", fp16_grid.grid_table(*kf)) if p.indeterminate_to_zero else None
    return program


def _sigmoid_grid(c):
    """(table key, function) of _by_grid's sigmoid in this profile; None with a knot table."""
    p = c.nx.profile
    if c.nx.fp16 and p.activation_tables:
        if p.sigmoid_table is not None:
            return None
        if p.sigmoid_domain is not None:          # past the domain: the end-knot value
            lo, hi = F32(p.sigmoid_domain[0]), F32(p.sigmoid_domain[1])
            return ("sigmoid", lo, hi), lambda v: _sigmoid32(np.clip(v, lo, hi))
    return ("sigmoid",), _sigmoid32


@kernel("sigmoid", program=_grid_program(_sigmoid_grid))
def sigmoid(c, x):
    kf = _sigmoid_grid(c)
    if kf is None:
        return table("sigmoid", c.nx.profile.sigmoid_table)(x)
    return _by_grid(c, *kf, x)


@kernel("tanh", program=_grid_program(lambda c: (("tanh",), np.tanh)))
def tanh(c, x):
    return _by_grid(c, ("tanh",), np.tanh, x)


@kernel("silu")
def silu(c, x):
    p = c.nx.profile
    if c.nx.fp16 and p.activation_tables:
        bias, width = p.silu_origin_bias, p.origin_bias_width
        return _by_grid(c, ("silu", bias, width), lambda v: _origin_bias(p, v, v * _sigmoid32(v), bias), x)
    return _by_grid(c, ("silu",), lambda v: v * _sigmoid32(v), x)


@kernel("gelu")
def gelu(c, x, mode):
    p = c.nx.profile
    if mode in ("TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"):
        ref = fn.gelu_tanh if mode == "TANH_APPROXIMATION" else fn.gelu_sigmoid
        f = lambda v: ref(v).astype(F32)         # noqa: E731
        y = fp16_grid.lookup((mode,), f, x) if c.nx.fp16 else None
        return f(x) if y is None else y
    if c.nx.fp16 and p.activation_tables:
        if p.gelu_table is not None:
            return table("gelu", p.gelu_table)(x)
        bias, width = p.gelu_origin_bias, p.origin_bias_width
        f = lambda v: _origin_bias(p, v, fn.gelu_precise(v).astype(F32), bias)    # noqa: E731
        y = fp16_grid.lookup(("gelu", bias, width), f, x)
        return f(x) if y is None else y
    if c.nx.fp16:
        y = fp16_grid.lookup(("gelu",), lambda v: fn.gelu_precise(v).astype(F32), x)
        if y is not None:
            return y
    if x.dtype == F32 and taylor32.GELU.worth(x.size):
        return taylor32.GELU(x)             # the same bits, by table and a guarded expansion
    return fn.gelu_precise(x).astype(F32)


@kernel("softplus")
def softplus(c, x):
    return _collapse(c, "softplus", x, fn.softplus(x).astype(F32))


@kernel("softsign")
def softsign(c, x):
    ax = _f64(x)
    y = np.where(np.isinf(ax), np.sign(ax), ax / (1.0 + np.abs(ax)))
    return _collapse(c, "softsign", x, y.astype(F32))


@kernel("identity", finish="keep")
def identity(c, x):
    return x


@kernel("sigmoid_hard")
def sigmoid_hard(c, x, alpha, beta):
    nx = c.nx
    return np.clip(nx.const(alpha) * x + nx.const(beta), F32(0.0), F32(1.0))


@kernel("linear_activation")
def linear_activation(c, x, alpha, beta):
    nx = c.nx
    return nx.const(alpha) * x + nx.const(beta)


@kernel("clip")
def clip(c, x, alpha, beta):
    nx = c.nx
    return np.minimum(np.maximum(x, nx.const(alpha)), nx.const(beta))


@kernel("thresholded_relu")
def thresholded_relu(c, x, alpha):
    return np.where(x >= c.nx.const(alpha), x, F32(0.0))
