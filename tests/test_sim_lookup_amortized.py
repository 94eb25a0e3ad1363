"""Small arrays reach the fp16-grid tables (sim/fp16_grid.py) and the exact-numerics Taylor
route (sim/taylor32.py) once the elements seen pay for building them: same values as the
element-wise reference before and after."""
from __future__ import annotations

import numpy as np
import pytest

from anekit.sim import fp16_grid, functions, taylor32


def test_small_arrays_build_the_table_once_they_add_up():
    calls = []

    def f(v):
        calls.append(v.size)
        return functions.gelu_precise(v).astype(np.float32)

    key = ("test-amortized", object())
    x = (np.random.default_rng(0).standard_normal(1000) * 3).astype(np.float16).astype(np.float32)
    want = f(x)
    calls.clear()
    runs = 0
    while fp16_grid.lookup(key, f, x) is None:     # no table yet: the caller evaluates itself
        runs += 1
        assert runs < 100
    assert runs == -(-fp16_grid._BUILD_TOTAL // x.size) - 1
    assert calls == [1 << 19]                      # built once, over the whole grid
    got = fp16_grid.lookup(key, f, x[:5])          # and used from then on, any size
    np.testing.assert_array_equal(got.view(np.uint32), want[:5].view(np.uint32))
    assert fp16_grid.lookup(key, f, x + np.float32(1e-4)) is None    # off the grid: never


@pytest.fixture
def compiled_on():
    from anekit.sim import compiled
    previous = compiled.set_enabled(True)           # (ANEKIT_NO_JIT=1 may have switched it off)
    yield
    compiled.set_enabled(previous)


@pytest.mark.numba
def test_taylor_route_takes_small_arrays_with_the_compiled_kernel(compiled_on):
    """With a table-free compiled kernel (ERF, GELU) any non-empty array is worth the route;
    without one only big arrays are (the numpy route's table pays for itself there)."""
    assert taylor32.GELU.worth(3) and taylor32.ERF.worth(1) and not taylor32.GELU.worth(0)
    t = taylor32.Taylor32("gelu-test", functions.gelu_precise, taylor32._gelu_derivatives, c4=1.7 / 24,
                          rel=8e-12, lowest=-3.5)
    assert t.worth(4096) and not t.worth(500) and not t.worth(0)
    x = np.random.default_rng(1).standard_normal(500).astype(np.float32)
    want = functions.gelu_precise(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(taylor32.GELU(x).view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(t(x).view(np.uint32), want.view(np.uint32))      # the table route


@pytest.mark.parametrize("name", ["silu", "sigmoid", "tanh"])
@pytest.mark.parametrize("profile", ["m4", "m1", "h13"])
def test_activation_tables_store_the_same_bits(name, profile):
    """silu, sigmoid and tanh read from fp16-grid tables in chip profiles: after the storage
    rounding the executor applies, the same bits as computing them, on every fp16 value
    (NaN, infinities, subnormals, 65504), small arrays and strided views included."""
    import types

    from anekit.sim import profile_for
    from anekit.sim.kernels import activations
    from anekit.sim.numerics import Numerics
    nx = Numerics(profile_for(profile))
    c = types.SimpleNamespace(nx=nx)
    fn = getattr(activations, name)
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    rng = np.random.default_rng(2)
    with np.errstate(all="ignore"):
        computed = nx.store(_direct(name, nx, every))
        for x in (every, rng.permutation(every)[:300], every[::7].reshape(-1, 3)[:, 1:], every[:0]):
            got = nx.store(fn(c, x))
            want = computed[x.astype(np.float16).view(np.uint16)]      # each value's own entry
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert any(isinstance(k, tuple) and k[0] == name for k in fp16_grid._TABLES)     # the table route ran


def _direct(name, nx, x):
    """The kernels' formulas, computed (no table)."""
    from anekit.sim.kernels import activations as act
    p = nx.profile
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        if p.activation_tables and p.sigmoid_domain is not None:
            x = np.clip(x, np.float32(p.sigmoid_domain[0]), np.float32(p.sigmoid_domain[1]))
        return act._sigmoid32(x)
    y = x * act._sigmoid32(x)
    return act._origin_bias(p, x, y, p.silu_origin_bias) if p.activation_tables else y
