"""The LSTM kernel's fused gate evaluation (input and forget gates in one activation call)
against the gate-by-gate float32 recurrence it replaced, bit for bit, on hostile data."""
from __future__ import annotations

import numpy as np
import pytest

from anekit.sim.kernels import recurrent


def _gate_by_gate(x, h, cs, w_ih, w_hh, bias, peep, acts, clip, reverse):
    rec, cell, out_act = acts
    hidden = w_hh.shape[1]
    pre = np.einsum("sbi,gi->sbg", x, w_ih) + (0 if bias is None else bias)
    p_i, p_f, p_o = (np.zeros(hidden, np.float32),) * 3 if peep is None else np.split(peep, 3)
    seq = np.empty((x.shape[0],) + h.shape, np.float32)
    for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
        gi, gf, go, gz = np.split(pre[t] + h @ w_hh.T, 4, axis=-1)
        z = cell(gz)
        if clip is not None:
            z = np.clip(z, -clip, clip)
        cs = rec(gf + p_f * cs) * cs + rec(gi + p_i * cs) * z
        h = rec(go + p_o * cs) * out_act(cs)
        seq[t] = h
    return seq, h, cs


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("acts", [("sigmoid", "tanh", "tanh"), ("hard_sigmoid", "relu", "linear")])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_gates_give_the_same_bits(peephole, clip, acts, reverse):
    rng = np.random.default_rng(9)
    s, b, i, hdim = 6, 3, 5, 24
    f = lambda *shape: (rng.standard_normal(shape) * 3).astype(np.float32)    # noqa: E731
    x, h, cs = f(s, b, i), f(b, hdim), f(b, hdim)
    x[1, 0, :2] = [np.inf, np.nan]
    x[2, 1, 0] = 1e-40
    h[2, :3] = [-0.0, 65504.0, -np.inf]
    w_ih, w_hh, bias = f(4 * hdim, i), f(4 * hdim, hdim) * 0.2, f(4 * hdim)
    peep = f(3 * hdim) if peephole else None
    fns = tuple(recurrent._rnn_activation(a) for a in acts)
    with np.errstate(all="ignore"):
        want = _gate_by_gate(x, h, cs, w_ih, w_hh, bias, peep, fns, clip, reverse)
        got = recurrent._lstm_pass(x, h, cs, w_ih, w_hh, bias, peep, fns, clip, reverse)
    for a, b_ in zip(want, got):
        assert a.shape == b_.shape
        np.testing.assert_array_equal(a.view(np.uint32), b_.view(np.uint32))
