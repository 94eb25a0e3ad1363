"""Layers MIL has no single op for, built from declared ops (so they differentiate, check and
run wherever those ops do): log_softmax, rms_norm, group_norm, l2_norm.

The MIL op set (coremltools' catalog, guide appendix A) has layer_norm, instance_norm,
batch_norm and l2_norm but no rms_norm, group_norm or log_softmax: a program that named them
would not compile, so they are compositions here, as coremltools' converter writes them.
"""
from __future__ import annotations

from .custom_vjp import custom_vjp
from .declared import F
from .graph import Tensor
from ..errors import ShapeError


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - log(sum(exp(x))) along `axis`, max-subtracted inside reduce_log_sum_exp (the form
    coremltools lowers torch's log_softmax to)."""
    return x - F.reduce_log_sum_exp(x, axes=[axis], keep_dims=True)


def rms_norm(x: Tensor, axes=(-1,), gamma: Tensor | None = None, epsilon: float = 1e-5) -> Tensor:
    """x / sqrt(mean(x^2) + epsilon) over `axes`, times gamma (shaped like those axes).

    The mean of squares is one reduce_sum_square, so the squares are not stored as fp16
    values on the way (guide ch. 3: stored squares overflow above 256). The gradient is the
    normalized form (custom_vjp), not the walk through rsqrt: rsqrt'(ms) ~ ms^-1.5 is ~4e4 at
    rms 0.03 and overflows an fp16 backward, while every factor below stays O(inv)."""
    ax = sorted(a % x.rank for a in axes)
    n = 1
    for a in ax:
        n *= x.shape[a]
    ms = F.reduce_sum_square(x, axes=ax, keep_dims=True) * (1.0 / n)
    inv = F.rsqrt(ms, epsilon=epsilon)
    x_hat = x * inv
    w = None if gamma is None else F.reshape(gamma, shape=[s if i in ax else 1 for i, s in enumerate(x.shape)])
    y = x_hat if w is None else x_hat * w

    def vjp(g):
        gw = g if w is None else g * w
        dx = inv * (gw - x_hat * F.reduce_mean(x_hat * gw, axes=ax, keep_dims=True))
        if gamma is None:
            return {"x": dx}
        return {"x": dx, "gamma": _sum_to(g * x_hat, ax, gamma.shape)}
    return custom_vjp(y, {"x": x, "gamma": gamma}, vjp, "rms_norm")


def _sum_to(t: Tensor, keep, shape) -> Tensor:
    """t summed over every axis not in `keep`, reshaped to `shape` (a per-feature cotangent)."""
    other = [i for i in range(t.rank) if i not in keep]
    if other:
        t = F.reduce_sum(t, axes=other, keep_dims=True)
    return F.reshape(t, shape=list(shape))


def group_norm(x: Tensor, num_groups: int, gamma: Tensor | None = None, beta: Tensor | None = None,
               epsilon: float = 1e-5) -> Tensor:
    """GroupNorm of [N, C, *S]: normalize each of `num_groups` channel groups over its channels
    and positions (a layer_norm on a [N, G, C/G * S] view), then per-channel gamma and beta."""
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ShapeError(f"group_norm: {num_groups} groups do not divide {c} channels (x shape {list(x.shape)})")
    y = F.layer_norm(F.reshape(x, shape=[n, num_groups, -1]), axes=[2], epsilon=epsilon)
    y = F.reshape(y, shape=list(x.shape))
    per_channel = [1, c] + [1] * (x.rank - 2)
    if gamma is not None:
        y = y * F.reshape(gamma, shape=per_channel)
    if beta is not None:
        y = y + F.reshape(beta, shape=per_channel)
    return y


def l2_norm(x: Tensor, axes=(-1,), epsilon: float = 1e-12) -> Tensor:
    """x / sqrt(max(sum(x^2), epsilon)) over `axes` (MIL l2_norm's formula).

    Its gradient is the normalized form inv * (g - y * sum(y * g)) (custom_vjp, as rms_norm),
    the projection term dropped where epsilon wins the max (maximum's own tie rule)."""
    ax = sorted(a % x.rank for a in axes)
    ss = F.reduce_sum_square(x, axes=ax, keep_dims=True)
    inv = F.rsqrt(F.maximum(ss, epsilon), epsilon=0.0)
    y = x * inv

    def vjp(g):
        along = F.reduce_sum(y * g, axes=ax, keep_dims=True)
        return {"x": inv * (g - y * F.select(ss >= epsilon, along, 0.0))}
    return custom_vjp(y, {"x": x}, vjp, "l2_norm")
