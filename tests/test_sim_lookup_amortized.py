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


@pytest.mark.numba
def test_taylor_route_takes_small_arrays_with_the_compiled_kernel():
    t = taylor32.Taylor32("gelu-test", functions.gelu_precise, taylor32._gelu_derivatives, c4=1.7 / 24,
                          rel=8e-12, lowest=-3.5)
    assert t.worth(4096) and not t.worth(0)
    n = 0
    while not t.worth(500):
        n += 1
        assert n < 1000
    assert n * 500 < 2 * taylor32._PER_SIGN <= (n + 1) * 500
    x = np.random.default_rng(1).standard_normal(500).astype(np.float32)
    want = functions.gelu_precise(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(t(x).view(np.uint32), want.view(np.uint32))
    assert t.worth(3)
