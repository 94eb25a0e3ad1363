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


def _same_bits(want, got):
    for a, b_ in zip(want, got):
        assert a.shape == b_.shape
        np.testing.assert_array_equal(a.view(np.uint32), b_.view(np.uint32))


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("cell", ["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("b,hdim", [(1, 16), (3, 24)])
def test_sigmoid_pass_gives_the_gate_by_gate_bits(clip, cell, reverse, b, hdim):
    """The no-peephole sigmoid pass (three gates in one call, no zero-peephole terms) against
    the gate-by-gate recurrence with a zero peephole, on finite data with signed zeros,
    fp16-max and subnormal entries and gates driven far into saturation."""
    rng = np.random.default_rng(11)
    s, i = 7, 5
    f = lambda *shape: (rng.standard_normal(shape) * 3).astype(np.float32)    # noqa: E731
    x, h, cs = f(s, b, i), f(b, hdim), f(b, hdim)
    x[1, 0, :2] = [-0.0, 65504.0]
    x[2, -1, 0] = 1e-40
    h[-1, :3] = [-0.0, 0.0, -1e-40]
    cs[0, :2] = [-0.0, 0.0]
    w_ih, w_hh, bias = f(4 * hdim, i), f(4 * hdim, hdim) * 0.2, f(4 * hdim)
    w_ih[:hdim, 0] = 0.0           # gates exactly -0 / +0 where x is a signed zero
    fns = tuple(recurrent._rnn_activation(a) for a in ("sigmoid", cell, "tanh"))
    with np.errstate(all="ignore"):
        want = _gate_by_gate(x, h, cs, w_ih, w_hh, bias, None, fns, clip, reverse)
        got = recurrent._lstm_pass_sigmoid(x, h, cs, w_ih, w_hh, bias, fns, clip, reverse)
    assert got is not None
    _same_bits(want, got)


@pytest.mark.parametrize("where", ["input", "initial"])
def test_sigmoid_pass_declines_a_non_finite_cell_state(where):
    """0 * inf = NaN in the zero-peephole terms: with an infinite cell state (an initial one,
    or one a relu cell activation of an infinite input makes) the fast pass returns None,
    and the kernel's result is still the gate-by-gate one."""
    rng = np.random.default_rng(12)
    s, b, i, hdim = 4, 2, 3, 8
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)    # noqa: E731
    x, h, cs = f(s, b, i), f(b, hdim), f(b, hdim)
    if where == "input":
        x[1, 0, 0] = np.inf
    else:
        cs[0, 0] = -np.inf
    w_ih, w_hh, bias = f(4 * hdim, i), f(4 * hdim, hdim), f(4 * hdim)
    cell = "relu" if where == "input" else "tanh"
    fns = tuple(recurrent._rnn_activation(a) for a in ("sigmoid", cell, "tanh"))
    with np.errstate(all="ignore"):
        assert recurrent._lstm_pass_sigmoid(x, h, cs, w_ih, w_hh, bias, fns, None, False) is None
        want = _gate_by_gate(x, h, cs, w_ih, w_hh, bias, None, fns, None, False)
        got = recurrent.lstm(None, x, h, cs, w_ih, w_hh, bias, None, None, None, None, None, "forward", True,
                             "sigmoid", cell, "tanh", None)
    _same_bits(want, (got[0], got[1][0] if got[1].ndim == 3 else got[1], got[2]))
    assert np.isnan(want[0]).any()      # the case the fast pass must not take
