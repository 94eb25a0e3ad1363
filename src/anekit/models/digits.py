"""The handwritten-digit CNN of `anekit train digits` (a small seeded conv net like the guide's,
ch. 15; the guide does not publish its layers, so these are ours).

    8x8 digits:   x -> conv3x3(1->8) + b -> relu -> avgpool2 -> [8*4*4] @ fc + b -> logits
    28x28 MNIST:  x -> conv3x3(1->8) + b -> relu -> avgpool2 -> conv3x3(8->16) + b -> relu
                    -> avgpool2 -> [16*7*7] @ fc + b -> logits

Conv-first, as the guide recommends: the first conv's input gradient is never needed, so no
loss-scaled cotangent reaches a width-offset slice (ch. 15, "Conv weight-gradient divergence").
"""
from __future__ import annotations

import numpy as np

from .. import ir
from ..ir.declared import F
from ..ir.composite import log_softmax
from ..errors import UsageError
from ..train.autodiff import param
from ..train.lowering import lower_runtime_weights

CLASSES = 10


def _conv(x, w, b):
    return F.conv(x, w, bias=b, pad_type="same")


def _pool(x):
    return F.avg_pool(x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid")


def layout(image_size: int) -> list[tuple[str, tuple]]:
    """(name, shape) of every parameter, in order."""
    if image_size == 8:
        convs = [(1, 8)]
    elif image_size == 28:
        convs = [(1, 8), (8, 16)]
    else:
        raise UsageError(f"the digits net takes 8x8 or 28x28 images, got {image_size}x{image_size}")
    out = []
    for i, (cin, cout) in enumerate(convs, 1):
        out += [(f"conv{i}_w", (cout, cin, 3, 3)), (f"conv{i}_b", (cout,))]
    side = image_size // 2 ** len(convs)
    out += [("fc_w", (convs[-1][1] * side * side, CLASSES)), ("fc_b", (CLASSES,))]
    return out


def init_params(image_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases, from one seeded generator (float32)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in layout(image_size):
        if name.endswith("_b"):
            out[name] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if name.startswith("conv") else shape[0]
            out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return out


def forward(p: dict, x):
    """Logits [B, 10] from images x [B, 1, S, S]; `p` maps parameter names to tensors."""
    h = x
    i = 1
    while f"conv{i}_w" in p:
        h = _pool(F.relu(_conv(h, p[f"conv{i}_w"], p[f"conv{i}_b"])))
        i += 1
    flat = h.reshape(h.shape[0], -1)
    return flat @ p["fc_w"] + p["fc_b"]


def cross_entropy(logits, y_onehot):
    """mean over the batch of -sum(y * log_softmax(logits))."""
    return -(y_onehot * log_softmax(logits, axis=1)).sum(axes=[1]).mean()


def build(image_size: int, batch_size: int, seed: int = 0):
    """(loss, params, logits) for training: inputs x [B, 1, S, S] and y [B, 10] (one-hot)."""
    params = {k: param(k, v) for k, v in init_params(image_size, seed).items()}
    x = ir.input("x", (batch_size, 1, image_size, image_size))
    y = ir.input("y", (batch_size, CLASSES))
    logits = forward(params, x)
    return cross_entropy(logits, y), list(params.values()), logits


def eval_program(image_size: int, batch_size: int, target=None):
    """Logits for a batch of images, with the parameters as inputs (compiled once, fed the
    trainer's current weights); `target` as in lower_runtime_weights."""
    p = {name: ir.input(name, shape) for name, shape in layout(image_size)}
    x = ir.input("x", (batch_size, 1, image_size, image_size))
    # The same engine forms as the training program, so evaluation sees the same numerics.
    return ir.program(lower_runtime_weights({"logits": forward(p, x)}, target), name="digits_eval")
