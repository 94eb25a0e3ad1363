"""Weights shared by several programs are prepared once by the simulator (sim/shared.py), with
the same bits as programs that each hold their own copy."""
import gc

import numpy as np
import pytest

import anekit as ak
from anekit.ir import make_const
from anekit.models import llama2c
from anekit.sim import shared


class _Value:
    pass


def test_memo_computes_once_per_read_only_array_and_forgets_it_with_the_array():
    import weakref
    calls = []

    def make():
        calls.append(1)
        return _Value()

    a = np.arange(6.0)
    a.flags.writeable = False
    first = shared.memo(a, ("k",), make)
    assert shared.memo(a, ("k",), make) is first and len(calls) == 1
    assert shared.memo(a, ("other",), make) is not first and len(calls) == 2      # the key counts
    b = a.copy()
    b.flags.writeable = False
    assert shared.memo(b, ("k",), make) is not first                               # identity, not value
    w = np.arange(6.0)                                                              # writable: never held
    shared.memo(w, ("k",), make), shared.memo(w, ("k",), make)
    assert len(calls) == 5
    held = weakref.ref(first)
    del first
    gc.collect()
    assert held() is not None                   # the memo keeps it while the array lives
    del a
    gc.collect()
    assert held() is None                       # and lets it go with the array


def _program(weight, kind):
    """`weight` as the program's constant itself (make_const(copy=False) keeps a read-only array)."""
    x = ak.input("x", (1, 64, 1, 8) if kind == "conv" else (8, 64))
    w = make_const(weight, "fp16", copy=False)
    y = ak.conv(x, w) if kind == "conv" else ak.linear(x, w) if kind == "linear" else ak.matmul(x, w)
    return ak.program({"y": ak.relu(y) * 2.0})


@pytest.mark.parametrize("kind", ["conv", "linear", "matmul"])
@pytest.mark.parametrize("numerics", ["profile", "exact"])
@pytest.mark.parametrize("chip", ["m1", "m4"])
def test_programs_reading_one_weight_array_share_its_preparation_with_the_same_bits(kind, numerics, chip):
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((48, 64)) * 0.2).astype(np.float16)
    w = {"conv": w.reshape(48, 64, 1, 1), "linear": w, "matmul": np.ascontiguousarray(w.T)}[kind]
    w.flags.writeable = False
    progs = [_program(w, kind) for _ in range(2)]
    own = _program(np.array(w), kind)                   # its own (writable, so copied) array of the same values
    x = rng.standard_normal((1, 64, 1, 8) if kind == "conv" else (8, 64)).astype(np.float32) * 3
    opts = {"numerics": numerics}
    a, b = (ak.compile(p, backend="sim", target=chip, **opts) for p in progs)
    c = ak.compile(own, backend="sim", target=chip, **opts)
    ya, yb, yc = (e({"x": x})["y"] for e in (a, b, c))
    np.testing.assert_array_equal(ya, yc)
    np.testing.assert_array_equal(yb, yc)
    # the ingested weight is one array for both executables, and the third program's is not it
    big = [{id(v) for v in e._sim._const.values() if isinstance(v, np.ndarray) and v.size == w.size}
           for e in (a, b, c)]
    assert big[0] & big[1] and not (big[0] & big[2])


def test_a_decoders_programs_share_their_weights():
    """Prefill and decode programs hold the same weight arrays (no copy per program), so the
    simulator ingests each weight once; generation is unchanged against a decoder whose
    programs each copy their weights."""
    c = llama2c.Config(dim=64, hidden_dim=160, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=120, seq_len=32)
    m = llama2c.new(c, seed=4)
    target = ak.targets.get("m4")

    def weights(prog):
        return {id(op.attrs["val"]) for op in prog.main.ops
                if op.type == "const" and getattr(op.attrs["val"], "size", 0) >= 32 * 64}     # every matrix
    pre, dec = m.prefill_program(8, "fp16", target), m.decode_program("fp16", True, target)
    assert len(weights(pre)) == 2 * 7 + 1 and weights(pre) == weights(dec)
    tokens = list(m.generate([1, 7, 30, 4, 55], 8, target="m4"))
    fresh = llama2c.Model(m.config, {k: np.array(v) for k, v in m.tensors.items()})
    fresh.weights_as = lambda dtype: fresh.graph_weights       # the old way: every program converts
    assert list(fresh.generate([1, 7, 30, 4, 55], 8, target="m4")) == tokens
