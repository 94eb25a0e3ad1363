"""matmul, linear and scaled dot-product attention through the MAC model (mac.py)."""
from __future__ import annotations

import math

import numpy as np

from ..fp16 import F32
from ..registry import kernel
from ..scratch import F32_BYTES, elements, scratch
from .reduce import softmax_along


@kernel("matmul", finish="stored")
def matmul(c, x, y, transpose_x, transpose_y):
    # Every route ends at the MAC's output port, which rounds with the NaN rule (mac.port_output,
    # the compiled lanes' port), or is an empty result: finish="stored".
    # Promote rank-1 operands the way the shape rule does, then transpose.
    a = x[None, :] if x.ndim == 1 else x
    b = y[:, None] if y.ndim == 1 else y
    if transpose_x:
        a = np.swapaxes(a, -1, -2)
    if transpose_y:
        b = np.swapaxes(b, -1, -2)
    if "y" in c.const_params:           # a weight: its MAC operand (statistics, layouts) prepared once
        b = c.cached_shared("y", lambda: c.nx.operand(b, -2), "y", y, transpose_y)
    return c.nx.matmul(a, b).reshape(c.out_shape())


@kernel("linear", program=lambda c, consts: ("linear",))
def linear(c, x, weight, bias):
    wt = c.cached_shared("wt", lambda: c.nx.operand(np.ascontiguousarray(weight.T), -2), "weight", weight)
    y = c.nx.matmul(x.reshape(-1, x.shape[-1]), wt).reshape(c.out_shape())
    return y if bias is None else y + bias


@kernel("scaled_dot_product_attention", finish="keep")
def scaled_dot_product_attention(c, query, key, value, attn_mask):
    """softmax(Q K^T / sqrt(E) + mask) V as its MAC, scale, mask and softmax stages."""
    nx = c.nx
    scores = nx.matmul(query, np.swapaxes(key, -1, -2))
    scores = nx.store(scores * nx.const(1.0 / math.sqrt(query.shape[-1])))
    if attn_mask is not None:
        if attn_mask.dtype == np.bool_:
            scores = np.where(attn_mask, scores, F32(-np.inf))
        else:
            scores = nx.store(scores + attn_mask)
    probs = softmax_along(nx, scores, -1)            # (stored already)
    return nx.matmul(probs, value).reshape(c.out_shape())


@scratch("scaled_dot_product_attention")
def attention_scratch(op) -> int:
    """Scores, scaled scores, masked scores and softmax probabilities: four [..., L, S] arrays."""
    q, k = op.inputs["query"], op.inputs["key"]
    batch = np.broadcast_shapes(tuple(q.shape[:-2]), tuple(k.shape[:-2]))
    return 4 * F32_BYTES * elements(batch) * q.shape[-2] * k.shape[-2]
