"""Activation functions: exact float32 references, and the engine's table model.

In a chip profile (guide ch. 3 "Activation functions" and "Edge behavior"): sigmoid and
gelu evaluate 33-knot tables (tables.py); silu carries the swish table's origin bias;
softplus and softsign collapse +inf to +0; everything else is the exact function rounded
to fp16, which the guide measures to about half an ulp.
"""
from __future__ import annotations

import numpy as np

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
    # exp(-x) overflows to inf for x < -88, giving the right limit 0
    return F32(1.0) / (F32(1.0) + np.exp(-x))


@kernel("sigmoid")
def sigmoid(c, x):
    p = c.nx.profile
    if c.nx.fp16 and p.activation_tables:
        return table("sigmoid", p.sigmoid_table)(x)
    return _sigmoid32(x)


@kernel("tanh")
def tanh(c, x):
    return np.tanh(x)


@kernel("silu")
def silu(c, x):
    y = x * _sigmoid32(x)
    if c.nx.fp16 and c.nx.profile.activation_tables:
        y = y + F32(c.nx.profile.silu_origin_bias)
    return y


@kernel("gelu")
def gelu(c, x, mode):
    p = c.nx.profile
    if mode == "TANH_APPROXIMATION":
        return fn.gelu_tanh(x).astype(F32)
    if mode == "SIGMOID_APPROXIMATION":
        return fn.gelu_sigmoid(x).astype(F32)
    if c.nx.fp16 and p.activation_tables:
        return table("gelu", p.gelu_table)(x)
    return fn.gelu(x).astype(F32)


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
