"""A Stories-style (llama2.c) transformer layer in the ANE's (1, C, 1, S) layout.

Layout rules from guide ch. 17: channels on axis 1, sequence on the last axis, linear layers written as 1x1 convs,
attention split per head. The embedding lookup stays on the CPU, as in llama2.c's run.c.

`reference_forward` computes the same function in float64 numpy, written independently of
the graph, so the demo and tests have a reference that shares no code with the simulator.
"""
from __future__ import annotations

import numpy as np

from .. import concat, conv, ir, matmul, rsqrt, silu, softmax

EPS = 1e-5
MASK = -1e4        # additive causal mask; finite so that fp16 arithmetic stays in range


def random_weights(dim: int, hidden: int, layers: int = 1, seed: int = 0) -> list[dict]:
    """Per-layer weight dicts (float32), scaled like a trained model's so fp16 stays in range."""
    rng = np.random.default_rng(seed)

    def lin(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)

    return [dict(rms_att=norm(), wq=lin(dim, dim), wk=lin(dim, dim), wv=lin(dim, dim), wo=lin(dim, dim),
                 rms_ffn=norm(), w1=lin(hidden, dim), w3=lin(hidden, dim), w2=lin(dim, hidden))
            for _ in range(layers)]


def rope_tables(head_dim: int, seq: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables [head_dim, seq] for rotate-half rotary embeddings."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.outer(np.concatenate([inv, inv]), np.arange(seq, dtype=np.float64))
    return np.cos(ang), np.sin(ang)


def causal_mask(seq: int) -> np.ndarray:
    """[seq, seq] additive mask: 0 where key <= query, MASK above the diagonal."""
    return np.triu(np.full((seq, seq), MASK), k=1)


# --- graph -----------------------------------------------------------------------------

def _proj(x, w: np.ndarray):
    """A linear layer as a 1x1 conv: W x over channels."""
    return conv(x, w.reshape(w.shape[0], w.shape[1], 1, 1))


def rmsnorm(x, weight: np.ndarray):
    """x * rsqrt(mean(x^2 over channels) + eps) * weight, x in (1, C, 1, S)."""
    inv = rsqrt(x.square().mean(axes=[1], keep_dims=True), epsilon=EPS)
    return x * inv * weight.reshape(1, -1, 1, 1)


def _rope(t, cos, sin, hd: int):
    """Rotate-half rotary embedding on t [1, heads, hd, seq]: t cos + rotate_half(t) sin."""
    lo, hi = t[:, :, :hd // 2], t[:, :, hd // 2:]
    return t * cos + concat([-hi, lo], axis=2) * sin


def layer(x, w: dict, heads: int, rope: bool = True):
    """One transformer block on x [1, dim, 1, seq]; returns a tensor of the same shape."""
    _, dim, _, seq = x.shape
    hd = dim // heads
    h = rmsnorm(x, w["rms_att"])
    q, k, v = (_proj(h, w[n]).reshape(1, heads, hd, seq) for n in ("wq", "wk", "wv"))
    if rope:
        cos, sin = (t.reshape(1, 1, hd, seq) for t in rope_tables(hd, seq))
        q, k = _rope(q, cos, sin, hd), _rope(k, cos, sin, hd)
    # scores[h, i, j] = sum_d q[h, d, i] k[h, d, j] / sqrt(hd), causal
    scores = matmul(q, k, transpose_x=True) * (1.0 / np.sqrt(hd)) + causal_mask(seq).reshape(1, 1, seq, seq)
    att = matmul(v, softmax(scores, axis=-1), transpose_y=True)         # [1, heads, hd, seq]
    x = x + _proj(att.reshape(1, dim, 1, seq), w["wo"])
    h = rmsnorm(x, w["rms_ffn"])
    return x + _proj(silu(_proj(h, w["w1"])) * _proj(h, w["w3"]), w["w2"])


def build_model_program(dim: int = 288, hidden: int = 768, heads: int = 6, layers: int = 6,
                        seq: int = 256, seed: int = 0, rope: bool = True, weights: list | None = None):
    """A `layers`-deep stack with a final RMSNorm: input x, output y, both (1, dim, 1, seq) fp16."""
    weights = weights or random_weights(dim, hidden, layers, seed)
    x = ir.input("x", (1, dim, 1, seq))
    h = x
    for w in weights:
        h = layer(h, w, heads, rope)
    final = np.ones(dim, np.float32)
    return ir.program({"y": rmsnorm(h, final)})


def build_layer_program(dim: int = 64, hidden: int = 172, heads: int = 4, seq: int = 32, seed: int = 0,
                        rope: bool = True):
    """One block (no final norm), compiled as one program (the self-test and the tests use it)."""
    w = random_weights(dim, hidden, 1, seed)[0]
    x = ir.input("x", (1, dim, 1, seq))
    return ir.program({"y": layer(x, w, heads, rope)})


# --- float64 reference -------------------------------------------------------------------

def _ref_rmsnorm(x, weight):
    return x / np.sqrt(np.mean(x * x, axis=0, keepdims=True) + EPS) * weight[:, None]


def reference_layer(x: np.ndarray, w: dict, heads: int, rope: bool = True) -> np.ndarray:
    """The same block on x [dim, seq] in float64, in the textbook (token-major) formulation."""
    dim, seq = x.shape
    hd = dim // heads
    w = {k: v.astype(np.float64) for k, v in w.items()}
    h = _ref_rmsnorm(x, w["rms_att"]).T                        # [seq, dim]
    q, k, v = (h @ w[n].T for n in ("wq", "wk", "wv"))
    q, k, v = (t.reshape(seq, heads, hd).transpose(1, 0, 2) for t in (q, k, v))   # [heads, seq, hd]
    if rope:
        cos, sin = (t.T[None] for t in rope_tables(hd, seq))  # [1, seq, hd]

        def rot(t):
            return t * cos + np.concatenate([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin
        q, k = rot(q), rot(k)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + causal_mask(seq)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    att = (p @ v).transpose(1, 0, 2).reshape(seq, dim)
    x = x + (att @ w["wo"].T).T
    h = _ref_rmsnorm(x, w["rms_ffn"]).T
    a = h @ w["w1"].T
    ffn = (a / (1 + np.exp(-a)) * (h @ w["w3"].T)) @ w["w2"].T
    return x + ffn.T


def reference_forward(x: np.ndarray, weights: list[dict], heads: int, rope: bool = True) -> np.ndarray:
    """Float64 forward of build_model_program on x (1, dim, 1, seq)."""
    h = x.reshape(x.shape[1], x.shape[3]).astype(np.float64)
    for w in weights:
        h = reference_layer(h, w, heads, rope)
    return _ref_rmsnorm(h, np.ones(h.shape[0])).reshape(x.shape)
