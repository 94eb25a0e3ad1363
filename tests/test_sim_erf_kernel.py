"""sim/_compiled_erf.py, the table-free exact erf and gelu: its error bound E checked against
mpmath (A's own error and the float64 references' errors, each well inside E) and densely
against the references on every float32 exponent, its results against float32 of the
references bit for bit on hostile data, and against the numpy route (taylor32's table)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_sim_compiled import assert_same_bits, both, raw_float32

from anekit.sim import _compiled_erf, compiled, taylor32
from anekit.sim import functions as fn

pytestmark = pytest.mark.numba

REFERENCE = {"erf": fn.erf, "gelu": fn.gelu_precise}
FLAT = {"erf": 4.0, "gelu": 15.0}       # beyond |x| = FLAT the float32 result is flat (+-1, -0 or x)
EDGES = [0.46875, 4.0, 4.0 * math.sqrt(2.0), 0.46875 * math.sqrt(2.0), 3.0 * math.sqrt(2.0), 3.5, 15.0, 36.0]


@pytest.fixture(scope="module")
def kernels():
    previous = compiled.set_enabled(True)           # (ANEKIT_NO_JIT=1 may have switched it off)
    try:
        k = _compiled_erf.kernels()
    finally:
        compiled.set_enabled(previous)
    assert k is not None, "numba is installed: the kernel must build"
    return k


def _bounds(kernels, name, x):
    """(A, E) in float64 for float32 x: A with x's sign."""
    m, e = np.empty(x.size), np.empty(x.size)
    kernels[name + " bounds"](np.ascontiguousarray(x, np.float32), m, e)
    return np.copysign(m, x.astype(np.float64)), e


def _every_exponent(rng, per_exponent: int) -> np.ndarray:
    """Random significands under every finite float32 exponent (subnormals too), both signs."""
    exps = np.repeat(np.arange(255, dtype=np.uint32), per_exponent)
    bits = (exps << np.uint32(23)) | rng.integers(0, 1 << 23, exps.size, dtype=np.uint32)
    bits[::2] |= np.uint32(0x80000000)
    return bits.view(np.float32)


def _near_edges(rng, n) -> np.ndarray:
    pts = np.array(EDGES + [-e for e in EDGES], np.float32)
    ulps = rng.integers(-200, 200, (pts.size, n)).astype(np.int32)
    return (pts.view(np.int32)[:, None] + ulps).astype(np.int32).view(np.float32).ravel()


@pytest.mark.mpmath
@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_bound_covers_the_approximation_and_the_reference_against_mpmath(kernels, name):
    """|A - f(x)| and |reference(x) - f(x)| each well inside E (f by mpmath at 40 digits), on
    magnitudes from 1e-30 to the flat range, the tails, and the branch edges of both codes."""
    import mpmath
    rng = np.random.default_rng(11)
    lim = FLAT[name]
    mag = np.exp(rng.uniform(math.log(1e-30), math.log(lim), 2500))
    x = np.concatenate([mag, -mag, rng.uniform(-6, 6, 2000), rng.uniform(-lim, -3, 1500),
                        _near_edges(rng, 10)]).astype(np.float32)
    x = x[np.abs(x) <= lim]
    v = x.astype(np.float64)
    with mpmath.workdps(40):
        if name == "erf":
            true = np.array([float(mpmath.erf(mpmath.mpf(t))) for t in v])
        else:
            true = np.array([float(mpmath.mpf(t) * mpmath.erfc(-mpmath.mpf(t) / mpmath.sqrt(2)) / 2) for t in v])
    a, e = _bounds(kernels, name, x)
    ref = REFERENCE[name](v)
    assert (e > 0).all() or name == "gelu"          # gelu: E = 0 only at x = 0, where A = gelu = 0
    worst_a = np.max(np.abs(a - true) / np.where(e > 0, e, 1))
    worst_ref = np.max(np.abs(ref - true) / np.where(e > 0, e, 1))
    assert worst_a < 0.1, worst_a                   # measured ~0.02
    assert worst_ref < 0.2, worst_ref               # measured ~0.02 (erf), ~0.05 (gelu)


@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_bound_covers_the_reference_on_every_float32_exponent(kernels, name):
    """|A - reference(x)| <= E / 4 on about a million float32 values: every exponent, both signs, the
    branch edges, and dense normals (inside the flat range; beyond it see the next test)."""
    rng = np.random.default_rng(12)
    x = np.concatenate([_every_exponent(rng, 4000), _near_edges(rng, 2000),
                        (rng.standard_normal(1 << 19) * 3).astype(np.float32)])
    x = x[np.abs(x) <= FLAT[name]]
    a, e = _bounds(kernels, name, x)
    with np.errstate(all="ignore"):
        ref = REFERENCE[name](x.astype(np.float64))
    gap = np.abs(a - ref)
    assert (gap <= e / 4).all(), (x[gap > e / 4][:5], (gap / e).max())


@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_results_are_the_float32_bits_of_the_reference(kernels, name):
    """The kernel through taylor32 (the compiled route) against float32(reference(x)), bit for
    bit, NaN payloads included: every exponent, raw bits (NaN payloads, infinities,
    subnormals, zeros of both signs), the flat ranges out to the float32 maximum, the edges."""
    rng = np.random.default_rng(13)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38,
                         4.0, -4.0, 8.3, 9.0, -15.0, -14.5, 36.0, -36.0, 37.0, -37.0, 1e10, -1e10], np.float32)
    x = np.concatenate([specials, _every_exponent(rng, 2000), raw_float32(rng, 50000), _near_edges(rng, 500),
                        (rng.standard_normal(1 << 18) * 2).astype(np.float32)])
    t = getattr(taylor32, name.upper())
    previous = compiled.set_enabled(True)
    try:
        got = t(x)
        assert t._direct() is kernels[name]
    finally:
        compiled.set_enabled(previous)
    with np.errstate(all="ignore"):
        want = REFERENCE[name](x.astype(np.float64)).astype(np.float32)
    assert_same_bits(want, got)
    y = x[5:5 + 7 * 30000:3].reshape(-1, 7)[:, 2:]                         # strided, 2-d
    ref, got = both(lambda: t(y))                                          # numpy route: the same
    assert_same_bits(ref, got)


@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_bound_settles_nearly_every_element(kernels, name):
    """Speed: the reference runs only where the bound cannot decide, about one element in a
    million of normal data; here none of 65536. NaN and infinities always fall back; gelu's
    elements past |x| = 5.66, which its vectorized pass leaves open, are settled by a second."""
    x = np.random.default_rng(14).standard_normal(1 << 16).astype(np.float32)
    out = np.empty(x.size, np.uint32)
    assert kernels[name](x.view(np.uint32), out) == 0
    assert not (out == _compiled_erf.OPEN).any()
    y = np.array([7.0, np.nan, np.inf, -np.inf, 1.0, -9.0, 5.0], np.float32)   # gelu: 7 and -9 by its far pass
    assert kernels[name](y.view(np.uint32), out[:7]) == 3
    ok = out[:7] != _compiled_erf.OPEN
    assert ok.tolist() == [True, False, False, False, True, True, True]
    assert_same_bits(REFERENCE[name](y[ok].astype(np.float64)).astype(np.float32), out[:7][ok].view(np.float32))


def test_small_arrays_take_the_kernel_without_building_the_table():
    """With the kernel, any non-empty array is worth the guarded route and no table is built."""
    t = taylor32.Taylor32("erf-test", fn.erf, taylor32._erf_derivatives, c4=5.3 / 24, rel=4e-15, direct="erf")
    previous = compiled.set_enabled(True)
    try:
        assert t.worth(3) and not t.worth(0)
        x = np.array([0.5, -1.25, 3.0], np.float32)
        assert_same_bits(fn.erf(x.astype(np.float64)).astype(np.float32), t(x))
        assert t._tables is None
    finally:
        compiled.set_enabled(previous)
