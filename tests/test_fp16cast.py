"""The fast float32 <-> float16 casts equal numpy's casts bit for bit."""
import numpy as np

from anekit.ir.fp16cast import from_fp16, to_fp16

ALL16 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)


def _bits16(a):
    return a.view(np.uint16)


def test_every_fp16_value_and_every_midpoint_round_trips_like_numpy():
    with np.errstate(all="ignore"):
        f = ALL16.astype(np.float32)
        finite = np.isfinite(f)
        assert np.array_equal(_bits16(to_fp16(f[finite])), _bits16(ALL16[finite]))
        lo, hi = f[:-1].astype(np.float64), f[1:].astype(np.float64)
        ok = np.isfinite(lo) & np.isfinite(hi) & (np.sign(lo) == np.sign(hi))
        mids = ((lo + hi) / 2)[ok].astype(np.float32)        # ties: round half to even
        nudged = np.nextafter(mids, np.float32(np.inf))
        for x in (mids, nudged):
            assert np.array_equal(_bits16(to_fp16(x)), _bits16(x.astype(np.float16)))
        assert np.array_equal(from_fp16(ALL16[finite]).view(np.uint32), f[finite].view(np.uint32))


def test_specials_and_random_magnitudes():
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        for scale in (1e-9, 1e-7, 1e-5, 1e-3, 1.0, 1e4, 1e6):
            a = (rng.standard_normal((64, 33)) * scale).astype(np.float32)
            a.flat[:7] = [0.0, -0.0, np.inf, -np.inf, np.nan, 65519.9, -1e-30]
            got, want = to_fp16(a), a.astype(np.float16)
            same = _bits16(got) == _bits16(want)
            assert (same | (np.isnan(got) & np.isnan(want))).all(), scale
            back = from_fp16(want)
            assert np.array_equal(back, want.astype(np.float32), equal_nan=True)
