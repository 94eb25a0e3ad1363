"""The guide's conv weight-gradient saturation (ch. 15), reproduced on the simulator.

The guide lowers a conv's weight gradient through width-offset slices of the loss-scaled
backward activations, then a matmul; on M1/M2 a width-offset slice saturates above 4094
(ch. 3), so large loss scales or inputs turn weight-gradient entries into inf. This module
builds that route (`guide_weight_grad`) for a fixed conv experiment and counts the infinities.

anekit's own conv gradient (`ak.grad`, declared with the conv op) slices the forward input
instead and takes the data gradient through conv_transpose, so the loss-scaled cotangent
never meets a width-offset slice there: `route="anekit"` shows it is immune at every scale.
The guide does not publish its conv shape or loss; docs/training.md sets our counts beside
its table.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import concat, conv, matmul, pad, reshape, slice_by_size, transpose
from ..preflight.train_risk import LOSS_SCALE_INPUT
from .autodiff import grad, param
from .. import runtime

# The fixed experiment: a 3x3 'valid' conv, 2 -> 4 channels on 5x5 inputs, loss gain/2 * sum(y^2)
# (so the cotangent grows with the input as the guide's does). Small on purpose: the weight
# gradient sums only 9 positions and stays below the MAC output ceiling (2**15, ch. 3), so
# every inf counted here comes from the width slices.
X_SHAPE, W_SHAPE = (1, 2, 5, 5), (4, 2, 3, 3)
GUIDE_COUNTS = {(1, 256): 0, (1, 384): 0, (1, 512): 1, (1, 768): 3, (1, 1024): 8, (4, 256): 36}
# The cotangent gain that puts the largest width-offset-sliced value at loss scale 1 at 9.0:
# above 4094/512 = 8.0 and below 4094/384 = 10.66, the guide's "exact at 384, first inf at 512".
PEAK = 9.0


def guide_weight_grad(x, dy, kernel: tuple[int, int]):
    """dW [Cout, Cin, kh, kw] of a stride-1 'valid' conv with patches of the cotangent `dy`:
    pad dy by k-1, slice it at (kh-1-u, kw-1-v) for each tap (a width offset for all but the
    last column), then [Cout, N*H*W] x [Cin, N*H*W]^T (guide ch. 15)."""
    n, cin, h, w = x.shape
    cout = dy.shape[1]
    kh, kw = kernel
    dyp = pad(dy, pad=[0, 0, 0, 0, kh - 1, kh - 1, kw - 1, kw - 1])
    xm = reshape(transpose(x, perm=[1, 0, 2, 3]), shape=[cin, n * h * w])
    taps = []
    for u in range(kh):
        for v in range(kw):
            patch = slice_by_size(dyp, begin=[0, 0, kh - 1 - u, kw - 1 - v], size=[n, cout, h, w])
            pm = reshape(transpose(patch, perm=[1, 0, 2, 3]), shape=[cout, n * h * w])
            taps.append(reshape(matmul(pm, xm, transpose_y=True), shape=[cout, cin, 1]))
    return reshape(concat(taps, axis=2), shape=[cout, cin, kh, kw])


def experiment(seed: int = 0):
    """(x, w, gain) of the fixed experiment: inputs in [0, 0.1], He-normal weights, and the
    cotangent gain that makes the peak sliced value at loss scale 1 equal PEAK."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.1, X_SHAPE).astype(np.float32)
    w = (rng.standard_normal(W_SHAPE) * np.sqrt(2.0 / 18)).astype(np.float32)
    gain = PEAK / float(np.abs(_conv_ref(x, w)).max())
    return x, w, np.float32(gain)


def _conv_ref(x, w):
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    out = np.zeros((n, cout, h - kh + 1, wd - kw + 1), np.float64)
    for u in range(kh):
        for v in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, u:u + h - kh + 1, v:v + wd - kw + 1], w[:, :, u, v])
    return out


def program(route: str = "guide"):
    """Inputs x, w, gain, loss_scale; output dw, the weight gradient of
    loss_scale * gain/2 * sum(conv(x, w)^2) by the guide's route or anekit's ak.grad."""
    x = ir.input("x", X_SHAPE)
    gain = ir.input("gain", (1,))
    scale = ir.input(LOSS_SCALE_INPUT, (1,))
    if route == "guide":
        w = ir.input("w", W_SHAPE)
        y = conv(x, w)
        dy = y * gain * scale                        # d/dy of gain/2 * sum(y^2), seeded
        dw = guide_weight_grad(x, dy, W_SHAPE[2:])
    elif route == "anekit":
        w = param("w", np.zeros(W_SHAPE, np.float32))
        y = conv(x, w)
        loss = (y.square().sum() * gain * 0.5).reshape([1])
        (dw,) = grad(loss, [w], seed=scale)
    else:
        raise ValueError(f"route must be 'guide' or 'anekit', got {route!r}")
    return ir.program({"dw": dw}, name="conv_weight_grad")


def count_infinities(target, loss_scale: float, input_scale: float = 1.0, route: str = "guide",
                     seed: int = 0, numerics: str = "profile") -> int:
    """How many weight-gradient entries are inf on `target`'s simulated engine."""
    x, w, gain = experiment(seed)
    exe = runtime.compile(program(route), backend="sim", target=target, numerics=numerics)
    feeds = {"x": x * input_scale, "gain": np.array([gain]), "loss_scale": np.array([loss_scale], np.float32)}
    feeds["w"] = w
    out = exe(feeds)["dw"]
    return int(np.isinf(out.astype(np.float32)).sum())


def table(target="m1", route: str = "guide") -> dict[tuple[int, int], int]:
    """{(input scale, loss scale): infinities} at the guide's six points."""
    return {(xs, ls): count_infinities(target, ls, xs, route) for xs, ls in GUIDE_COUNTS}
