"""One llama2.c transformer layer split into the seed projects' six training kernels.

The math of a layer, in the ANE's [1, C, 1, S] layout (x: [1, dim, 1, seq]):

    h   = rmsnorm(x) * rms_att
    q,k = rope(Wq h), rope(Wk h);  v = Wv h               # [1, heads, hd, seq]
    p   = softmax(q.k / sqrt(hd) + causal mask)
    x1  = x + Wo (v p^T)
    h   = rmsnorm(x1) * rms_ffn
    x2  = x1 + W2 (silu(W1 h) * W3 h)

and its split into kernels (guide ch. 15; the seed projects' split, docs/training.md): five that carry weights and one that
does not,

    attn_fwd   x             -> x1, q, k, v
    ffn_fwd    x1            -> x2
    ffn_bwd    x1, dx2       -> dx1, dW1, dW2, dW3, d rms_ffn
    sdpa_bwd1  q, k, v, dx1  -> dWo, dv, dp                (weight Wo)
    sdpa_bwd2  q, k, dp      -> dq, dk                      (weight-free)
    qkv_bwd    x, dq, dk, dv, dx1 -> dx, dWq, dWk, dWv, d rms_att

Each backward kernel is `ak.grad` of the forward piece it inverts, applied to the incoming
cotangent (sum(out * d_out) differentiated), so the backward math is the forward math's VJP
and recomputes what it needs (activation recomputation) instead of storing it.

Where the weights come from is the pipeline's business (`Static`: constants baked into the
kernel, so a new weight means a new compile; `Dynamic`: slices of one packed input, compiled
once). A weight is held in "packed" orientation, [dim, n]: W^T for the projections whose input
has dim channels (wq wk wv wo w1 w3), W itself for w2 (its output has dim channels), and the
norm vectors as [dim, 1], so every weight of a kernel shares the channel axis with x.
"""
from __future__ import annotations

import numpy as np

from ... import ir
from ...ir.declared import F
from ...ir.builder import make_const
from ...ir.composite import rms_norm
from ..autodiff import grad
from ...preflight.ane_route import pad_runtime_matmuls_for

MASK = -1e4          # additive causal mask; finite so fp16 stays in range
EPS = 1e-5
ATTN_QKV = ("rms_att", "wq", "wk", "wv")
ATTN_OUT = ("wo",)
FFN = ("rms_ffn", "w1", "w3", "w2")
LAYER = ATTN_QKV + ATTN_OUT + FFN
TRANSPOSED = {"w2"}        # held as W (not W^T): its output, not its input, has dim channels


def packed(name: str, w: np.ndarray) -> np.ndarray:
    """run.c layout ([out, in] matrices, [dim] vectors) -> packed [dim, n]."""
    if w.ndim == 1:
        return w.reshape(-1, 1)
    return w if name in TRANSPOSED else w.T


def unpacked(name: str, g: np.ndarray, shape) -> np.ndarray:
    """Inverse of `packed` for the gradient [1, dim, 1, n] of a packed weight."""
    g = np.asarray(g, np.float32).reshape(g.shape[1], g.shape[3])
    if len(shape) == 1:
        return g.reshape(shape)
    return (g if name in TRANSPOSED else g.T).reshape(shape)


class Shapes:
    def __init__(self, dim, hidden, heads, seq, dtype, vocab: int = 0):
        self.dim, self.hidden, self.heads, self.seq, self.dtype = dim, hidden, heads, seq, dtype
        self.hd, self.vocab = dim // heads, vocab

    def width(self, name: str) -> int:
        """Columns of the packed weight `name`."""
        return {"wq": self.dim, "wk": self.dim, "wv": self.dim, "wo": self.dim,
                "w1": self.hidden, "w3": self.hidden, "w2": self.hidden, "embed": self.vocab}.get(name, 1)


# --- where a kernel's tensors come from ------------------------------------------------------

class Inputs:
    """A kernel's activations and weights. `static`: activations are separate inputs and the
    weights are constants. `dynamic`: everything with dim channels is packed along the spatial
    axis of one input [1, dim, 1, sum of widths] and cut apart with slice_by_size."""

    def __init__(self, shapes: Shapes, mode: str, acts: list[str], weights: list[str], values: dict | None):
        self.s, self.mode = shapes, mode
        self.t: dict[str, object] = {}
        widths = [(n, shapes.seq) for n in acts] + [(n, shapes.width(n)) for n in weights]
        self.layout = []
        if mode == "dynamic" and widths:
            total = sum(w for _, w in widths)
            big = ir.input("packed", (1, shapes.dim, 1, total), shapes.dtype)
            off = 0
            for n, w in widths:
                self.t[n] = F.slice_by_size(big, begin=[0, 0, 0, off], size=[1, shapes.dim, 1, w])
                self.layout.append((n, off, w))
                off += w
        elif mode == "static":
            for n in acts:
                self.t[n] = ir.input(n, (1, shapes.dim, 1, shapes.seq), shapes.dtype)
            for n in weights:
                self.t[n] = make_const(values[n].reshape(1, shapes.dim, 1, -1), shapes.dtype, name=n)

    def __getitem__(self, name):
        return self.t[name]


def pack(layout, arrays: dict) -> np.ndarray:
    """The packed input of a dynamic kernel from {name: [dim, width] array}."""
    cols = [np.asarray(arrays[n], np.float32).reshape(-1, w) for n, _, w in layout]
    dim = cols[0].shape[0]
    return np.concatenate(cols, axis=1).reshape(1, dim, 1, -1)


# --- the math --------------------------------------------------------------------------------

def linear(x, w, name: str):
    """W x for x [1, in, 1, S] and a packed weight w [1, dim, 1, n] -> [1, out, 1, S]."""
    _, c_in, _, s = x.shape
    _, dim, _, n = w.shape
    xm = x.reshape(1, 1, c_in, s)
    if name in TRANSPOSED:          # w is W [dim=out, n=in]
        y = F.matmul(w.reshape(1, 1, dim, n), xm)
    else:                           # w is W^T [dim=in, n=out]
        y = F.matmul(w.reshape(1, 1, dim, n), xm, transpose_x=True)
    return y.reshape(1, y.shape[2], 1, s)


def rmsnorm(x, w):
    """x / sqrt(mean(x^2) + eps) * w over the channels. ak.rms_norm's own VJP is the
    normalized form, so the backward of a small residual stream (embedding rows of rms 0.02 at
    init) stays in fp16 range without rescaling x (rsqrt' ~ ms^-1.5 is never formed)."""
    return rms_norm(x, axes=[1], gamma=w, epsilon=EPS)


def rope(t, cos, sin):
    """Rotate-half RoPE on t [1, heads, hd, S] (q / k rows in rotate-half order per head)."""
    _, h, hd, s = t.shape
    lo = F.slice_by_size(t, begin=[0, 0, 0, 0], size=[1, h, hd // 2, s])
    hi = F.slice_by_size(t, begin=[0, 0, hd // 2, 0], size=[1, h, hd // 2, s])
    return F.concat([lo * cos - hi * sin, lo * sin + hi * cos], axis=2)


def rope_tables(hd: int, seq: int):
    """cos, sin [1, 1, hd/2, seq], frequency 10000^(-2i/hd) for pair i (run.c's)."""
    freq = 10000.0 ** (-np.arange(hd // 2, dtype=np.float64) * 2 / hd)
    ang = np.outer(freq, np.arange(seq, dtype=np.float64))
    return np.cos(ang).reshape(1, 1, hd // 2, seq), np.sin(ang).reshape(1, 1, hd // 2, seq)


def heads(t, s: Shapes):
    return t.reshape(1, s.heads, s.hd, s.seq)


def merged(t, s: Shapes):
    return t.reshape(1, s.dim, 1, s.seq)


def qkv(x, W, s: Shapes):
    cos, sin = (make_const(a, s.dtype) for a in rope_tables(s.hd, s.seq))
    h = rmsnorm(x, W["rms_att"])
    q = rope(heads(linear(h, W["wq"], "wq"), s), cos, sin)
    k = rope(heads(linear(h, W["wk"], "wk"), s), cos, sin)
    v = heads(linear(h, W["wv"], "wv"), s)
    return q, k, v


def probs(q, k, s: Shapes):
    mask = np.triu(np.full((s.seq, s.seq), MASK, np.float32), k=1).reshape(1, 1, s.seq, s.seq)
    scores = F.matmul(q, k, transpose_x=True) * (1.0 / np.sqrt(s.hd)) + make_const(mask, s.dtype)
    return scores.softmax(axis=-1)                       # [1, heads, S(query), S(key)]


def attn_proj(v, p, W, s: Shapes):
    att = F.matmul(v, p, transpose_y=True)         # [1, heads, hd, S]
    return linear(merged(att, s), W["wo"], "wo")


def ffn(x, W):
    h = rmsnorm(x, W["rms_ffn"])
    return x + linear(F.silu(linear(h, W["w1"], "w1")) * linear(h, W["w3"], "w3"), W["w2"], "w2")


def vjp(outs_and_cotangents, wrt):
    """Gradients of sum(out * d_out) over the pairs: the backward of the forward piece."""
    total = None
    for out, d in outs_and_cotangents:
        term = (out * d).sum()
        total = term if total is None else total + term
    return grad(total, wrt)


# --- the kernels -----------------------------------------------------------------------------

KERNELS = ("attn_fwd", "ffn_fwd", "ffn_bwd", "sdpa_bwd1", "sdpa_bwd2", "qkv_bwd")
WEIGHTS = {"attn_fwd": ATTN_QKV + ATTN_OUT, "ffn_fwd": FFN, "ffn_bwd": FFN, "sdpa_bwd1": ATTN_OUT,
           "sdpa_bwd2": (), "qkv_bwd": ATTN_QKV}
ACTS = {"attn_fwd": ("x",), "ffn_fwd": ("x1",), "ffn_bwd": ("x1", "dx2"),
        "sdpa_bwd1": ("q", "k", "v", "dx1"), "sdpa_bwd2": (), "qkv_bwd": ("x", "dq", "dk", "dv", "dx1")}


def build(kernel: str, s: Shapes, mode: str, values: dict | None = None, target=None):
    """(program, Inputs) of one kernel; `values` holds the packed weights when mode is static;
    `target`, when given, zero-pads the runtime matmuls it needs padded (M1)."""
    I = Inputs(s, mode, list(ACTS[kernel]), list(WEIGHTS[kernel]), values)
    if kernel == "attn_fwd":
        q, k, v = qkv(I["x"], I, s)
        outs = {"x1": I["x"] + attn_proj(v, probs(q, k, s), I, s), "q": merged(q, s), "k": merged(k, s),
                "v": merged(v, s)}
    elif kernel == "ffn_fwd":
        outs = {"x2": ffn(I["x1"], I)}
    elif kernel == "ffn_bwd":
        wrt = [I["x1"]] + [I[n] for n in FFN]
        g = vjp([(ffn(I["x1"], I), I["dx2"])], wrt)
        outs = {"dx1": g[0], **{f"d_{n}": t for n, t in zip(FFN, g[1:])}}
    elif kernel == "sdpa_bwd1":
        q, k, v = heads(I["q"], s), heads(I["k"], s), heads(I["v"], s)
        p = probs(q, k, s)
        # the residual path (dx += dx1) is added in qkv_bwd
        d_wo, dv, dp = vjp([(attn_proj(v, p, I, s), I["dx1"])], [I["wo"], v, p])
        outs = {"d_wo": d_wo, "dv": merged(dv, s), "dp": dp}
    elif kernel == "sdpa_bwd2":
        q = ir.input("q", (1, s.heads, s.hd, s.seq), s.dtype)
        k = ir.input("k", (1, s.heads, s.hd, s.seq), s.dtype)
        dp = ir.input("dp", (1, s.heads, s.seq, s.seq), s.dtype)
        dq, dk = vjp([(probs(q, k, s), dp)], [q, k])
        outs = {"dq": merged(dq, s), "dk": merged(dk, s)}
    elif kernel == "qkv_bwd":
        x = I["x"]
        q, k, v = qkv(x, I, s)
        g = vjp([(q, heads(I["dq"], s)), (k, heads(I["dk"], s)), (v, heads(I["dv"], s))],
                [x] + [I[n] for n in ATTN_QKV])
        outs = {"dx": g[0] + I["dx1"], **{f"d_{n}": t for n, t in zip(ATTN_QKV, g[1:])}}
    else:
        raise KeyError(kernel)
    if target is not None:
        outs = pad_runtime_matmuls_for(outs, target)
    return ir.program(outs, name=kernel), I


HEAD_WEIGHTS = ("rms_final", "embed")


def build_head(s: Shapes, vocab: int, mode: str, values: dict | None = None, target=None):
    """The loss on the engine: final RMSNorm, shared classifier, cross-entropy and their
    backward in one kernel. Inputs x (the last layer's output), onehot [1, vocab, 1, S] of the
    targets and the loss scale; outputs loss and d_x, d_embed, d_rms_final of (loss * scale)."""
    shapes = Shapes(s.dim, s.hidden, s.heads, s.seq, s.dtype, vocab)
    I = Inputs(shapes, mode, ["x"], list(HEAD_WEIGHTS), values)
    onehot = ir.input("onehot", (1, vocab, 1, s.seq), s.dtype)
    logits = linear(rmsnorm(I["x"], I["rms_final"]), I["embed"], "embed")        # [1, vocab, 1, S]
    logp = logits - F.reduce_log_sum_exp(logits, axes=[1], keep_dims=True)
    loss = (logp * onehot).sum() * (-1.0 / s.seq)
    scale = ir.input("loss_scale", loss.shape, s.dtype)
    d_x, d_rms, d_embed = grad(loss, [I["x"], I["rms_final"], I["embed"]], seed=scale)
    outs = {"loss": loss, "d_x": d_x, "d_rms_final": d_rms, "d_embed": d_embed}
    if target is not None:
        outs = pad_runtime_matmuls_for(outs, target)
    return ir.program(outs, name="head"), I
