"""Recurrent kernels (lstm; the `rnn` kernel in more.py shares the activations): float32
recurrences on storage values, the executor rounds the outputs to the I/O dtype
(finish="round"). Moved out of shape.py to give the per-step work a module of its own."""
from __future__ import annotations

import numpy as np

from ..registry import kernel


def _rnn_activation(name: str):
    return {"sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
            "linear": lambda v: v, "hard_sigmoid": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
            "scaled_tanh": lambda v: np.tanh(v)}[name]


def _lstm_pass(x, h, cs, w_ih, w_hh, bias, peep, acts, clip, reverse):
    """One direction over x [S, B, I] in float32: the hidden states [S, B, H], last h, last c."""
    rec, cell, out_act = acts
    hidden = w_hh.shape[1]
    pre = np.einsum("sbi,gi->sbg", x, w_ih) + (0 if bias is None else bias)   # input projection, all steps
    peep = np.zeros(3 * hidden, np.float32) if peep is None else peep
    p_if, p_o = peep[:2 * hidden].reshape(2, hidden), peep[2 * hidden:]
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    seq = np.empty((x.shape[0],) + h.shape, np.float32)
    w_hh_t = w_hh.T
    for t in steps:
        g = pre[t] + h @ w_hh_t
        # The input and forget gates in one activation call over [B, 2, H] (elementwise: the
        # same values as two calls), slices for the rest: small steps are call-bound.
        i_f = rec(g[..., :2 * hidden].reshape(g.shape[:-1] + (2, hidden)) + p_if * cs[..., None, :])
        z = cell(g[..., 3 * hidden:])
        if clip is not None:
            z = np.clip(z, -clip, clip)
        cs = i_f[..., 1, :] * cs + i_f[..., 0, :] * z
        h = rec(g[..., 2 * hidden:3 * hidden] + p_o * cs) * out_act(cs)
        seq[t] = h
    return seq, h, cs


def _lstm_pass_sigmoid(x, h, cs, w_ih, w_hh, bias, acts, clip, reverse):
    """`_lstm_pass` for the common case, no peephole and a sigmoid recurrent activation, in
    fewer calls per step (small steps are call-bound): the input, forget and output gates in
    one sigmoid into a reused buffer, no zero-peephole terms. The bits are `_lstm_pass`'s as
    long as every cell state is finite: its zero peephole then adds a signed zero to the gate
    (sigmoid maps -0 and +0 alike, exp(-0) = exp(+0) = 1), where a non-finite cell state
    would make 0 * cs NaN. None when some cell state is not finite: the caller runs
    `_lstm_pass`."""
    _, cell, out_act = acts
    if not np.isfinite(cs).all():
        return None
    hidden = w_hh.shape[1]
    pre = np.einsum("sbi,gi->sbg", x, w_ih) + (0 if bias is None else bias)   # as _lstm_pass
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    seq = np.empty((x.shape[0],) + h.shape, np.float32)
    cells = np.empty((x.shape[0],) + cs.shape, np.float32)
    gates = np.empty(h.shape[:-1] + (3 * hidden,), np.float32)
    i, f, o = gates[..., :hidden], gates[..., hidden:2 * hidden], gates[..., 2 * hidden:]
    w_hh_t = w_hh.T
    for t in steps:
        g = pre[t] + h @ w_hh_t
        # 1 / (1 + exp(-v)), _rnn_activation's sigmoid, op for op
        np.exp(np.negative(g[..., :3 * hidden], out=gates), out=gates)
        np.divide(1.0, np.add(gates, 1.0, out=gates), out=gates)
        z = cell(g[..., 3 * hidden:])
        if clip is not None:
            z = np.clip(z, -clip, clip)
        cs = f * cs + i * z
        h = o * out_act(cs)
        seq[t] = h
        cells[t] = cs
    if not np.isfinite(cells).all():
        return None
    return seq, h, cs


@kernel("lstm")
def lstm(c, x, initial_h, initial_c, weight_ih, weight_hh, bias, peephole, weight_ih_back, weight_hh_back,
         bias_back, peephole_back, direction, output_sequence, recurrent_activation, cell_activation,
         activation, clip):
    f32 = [None if v is None else np.asarray(v, np.float32) for v in
           (x, initial_h, initial_c, weight_ih, weight_hh, bias, peephole, weight_ih_back, weight_hh_back,
            bias_back, peephole_back)]
    x, h0, c0, w_ih, w_hh, b, p, w_ih_b, w_hh_b, b_b, p_b = f32
    acts = tuple(_rnn_activation(n) for n in (recurrent_activation, cell_activation, activation))
    hidden = w_hh.shape[1]

    def run(h, cs, w_ih, w_hh, b, p, reverse):
        fast = None if p is not None or recurrent_activation != "sigmoid" else \
            _lstm_pass_sigmoid(x, h, cs, w_ih, w_hh, b, acts, clip, reverse)
        return fast or _lstm_pass(x, h, cs, w_ih, w_hh, b, p, acts, clip, reverse)
    fwd = run(h0[:, :hidden], c0[:, :hidden], w_ih, w_hh, b, p, direction == "reverse")
    if direction == "bidirectional":
        bwd = run(h0[:, hidden:], c0[:, hidden:], w_ih_b, w_hh_b, b_b, p_b, True)
        seq = np.concatenate([fwd[0], bwd[0]], -1)
        last = np.concatenate([fwd[0][-1], bwd[0][0]], -1)    # each direction's final step
        cs = np.concatenate([fwd[2], bwd[2]], -1)
    else:
        seq, cs = fwd[0], fwd[2]
        last = fwd[1]
    return (seq if output_sequence else last[None]), last, cs
