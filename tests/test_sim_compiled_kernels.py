"""Compiled kernel modules for op kernels (sim/_compiled_*.py, the `fast` extra) against their
numpy routes, bit for bit, on hostile data: infinities, NaN with odd payloads, float32 and
fp16 subnormals, zeros of both signs, 65504, values at the edges of the tables' ranges,
empty and strided arrays. Without numba both calls take the numpy route (the `numba` marker
deselects these where it is missing)."""
from __future__ import annotations

import numpy as np
import pytest
from test_sim_compiled import assert_same_bits, both, raw_float32

from anekit.sim import _compiled_taylor, functions, taylor32


def _taylor_inputs(rng) -> np.ndarray:
    """Whole-range float32 values, dense normals where gelu/erf are used, table edges."""
    edges = np.array([2.0 ** -30, -(2.0 ** -30), 8.0, -8.0, np.nextafter(np.float32(8), np.float32(0)),
                      2.0 ** -31, -3.5, np.nextafter(np.float32(-3.5), np.float32(0)), 65504.0, -65504.0,
                      1e-40, -1e-45, 0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    normals = (rng.standard_normal(30000) * 2).astype(np.float32)
    fp16_grid = (rng.standard_normal(5000) * 3).astype(np.float16).astype(np.float32)
    return np.concatenate([edges, raw_float32(rng, 20000), normals, fp16_grid])


@pytest.mark.numba
@pytest.mark.parametrize("name", ["GELU", "ERF"])
def test_taylor_expansion_is_bit_identical(name):
    t = getattr(taylor32, name)
    x = _taylor_inputs(np.random.default_rng(3))
    ref, got = both(lambda: t(x))
    assert_same_bits(ref, got)
    assert _compiled_taylor.kernel() is not None
    assert_same_bits(*both(lambda: t(x[::7].reshape(-1, 3)[:, 1:])))       # strided, 2-d
    assert_same_bits(*both(lambda: t(np.zeros((0, 4), np.float32))))       # empty


@pytest.mark.numba
@pytest.mark.parametrize("name", ["GELU", "ERF"])
def test_taylor_expansion_matches_the_float64_reference(name):
    """Independent of both routes: float32 of the float64 reference, element by element."""
    t = getattr(taylor32, name)
    ref_fn = functions.gelu_precise if name == "GELU" else functions.erf
    x = _taylor_inputs(np.random.default_rng(4))
    with np.errstate(all="ignore"):
        want = ref_fn(x.astype(np.float64)).astype(np.float32)
    _, got = both(lambda: t(x))
    assert_same_bits(want, got, nan_payloads=False)
