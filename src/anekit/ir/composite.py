"""Layers MIL has no single op for, built from declared ops (so they differentiate, check and
run wherever those ops do): log_softmax, rms_norm, group_norm, l2_norm.

The MIL op set (coremltools' catalog, guide appendix A) has layer_norm, instance_norm,
batch_norm and l2_norm but no rms_norm, group_norm or log_softmax: a program that named them
would not compile, so they are compositions here, as coremltools' converter writes them.
"""
from __future__ import annotations

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
    values on the way (guide ch. 3: stored squares overflow above 256)."""
    ax = sorted(a % x.rank for a in axes)
    n = 1
    for a in ax:
        n *= x.shape[a]
    ms = F.reduce_sum_square(x, axes=ax, keep_dims=True) * (1.0 / n)
    y = x * F.rsqrt(ms, epsilon=epsilon)
    if gamma is not None:
        y = y * F.reshape(gamma, shape=[s if i in ax else 1 for i, s in enumerate(x.shape)])
    return y


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
    """x / sqrt(max(sum(x^2), epsilon)) over `axes` (MIL l2_norm's formula)."""
    ss = F.reduce_sum_square(x, axes=list(axes), keep_dims=True)
    return x * F.rsqrt(F.maximum(ss, epsilon), epsilon=0.0)
