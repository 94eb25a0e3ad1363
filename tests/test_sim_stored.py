"""The fast paths of the simulator: erf (Cody's rational approximations) against math.erf, and
values kept in stored form between runs (Executable.run_stored, the trainer's resident
parameters and optimizer state) against the plain `run` with its fp16 casts, bit for bit."""
import math

import numpy as np
import pytest

import anekit as ak
from anekit import runtime
from anekit.runtime.base import Executable
from anekit.sim import Simulator
from anekit.sim import functions as fn
from anekit.train import Trainer, optim


# --- erf -------------------------------------------------------------------------------------

def test_erf_matches_math_erf_to_a_few_float64_ulps_on_a_dense_grid_and_the_tails():
    x = np.concatenate([np.linspace(-30.0, 30.0, 300_001), np.linspace(-1.0, 1.0, 100_001),
                        np.geomspace(1e-300, 0.5, 2_000), -np.geomspace(1e-300, 0.5, 2_000),
                        [0.46875, 4.0, np.nextafter(4.0, 5.0), 26.5, 27.0, 40.0, 1e300]])
    ref = np.array([math.erf(v) for v in x])
    got = fn.erf(x)
    bad = np.abs(got - ref) > 2e-15 * np.abs(ref)      # float32's ulp is 1.2e-7: far below it
    assert not bad.any(), x[bad][:5]
    np.testing.assert_array_equal(fn.erf(np.array([np.inf, -np.inf, 0.0, -0.0])), [1.0, -1.0, 0.0, -0.0])
    assert np.signbit(fn.erf(np.array([-0.0])))[0] and np.isnan(fn.erf(np.array([np.nan])))[0]


def test_erfc_keeps_its_relative_accuracy_deep_in_the_tail():
    y = np.linspace(0.47, 26.0, 50_001)
    ref = np.array([math.erfc(v) for v in y])
    assert (np.abs(fn.erfc_positive(y) - ref) / ref).max() < 4e-15


# --- stored form -----------------------------------------------------------------------------

def _mixed_program():
    x = ak.input("x", (3, 5))
    w = ak.input("w", (5, 4))
    s = ak.input("s", (1,), dtype="fp32")
    return ak.program({"y": ak.gelu(x @ w) * ak.cast(s, dtype="fp16"), "z": ak.softmax(x, axis=-1),
                       "s2": s * 3.0})


def _feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((3, 5)).astype(np.float32),
            "w": (rng.standard_normal((5, 4)) * 1e-5).astype(np.float32),   # fp16 subnormals
            "s": np.array([1.7], np.float32)}


@pytest.mark.parametrize("profile", ["exact", "m1", "m5"])
def test_run_stored_equals_run_cast_to_float32(profile):
    sim = Simulator(_mixed_program(), profile=profile)
    feeds = _feeds()
    plain = sim.run(feeds)
    w16 = feeds["w"].astype(np.float16)
    resident = {"w": w16.astype(np.float32)}           # on the fp16 grid: what run_stored hands out
    stored = sim.run_stored({k: v for k, v in feeds.items() if k != "w"}, resident)
    for k, v in plain.items():
        assert stored[k].dtype == np.float32
        assert stored[k].tobytes() == v.astype(np.float32).tobytes(), k
    # A resident array not in stored form (float16, float64) is converted as `run` converts it.
    for other in (w16, feeds["w"].astype(np.float64)):
        again = sim.run_stored({k: v for k, v in feeds.items() if k != "w"}, {"w": other})
        assert all(again[k].tobytes() == stored[k].tobytes() for k in plain)


def test_resident_nan_becomes_inf_on_the_engine_as_a_plain_input_does():
    x = ak.input("x", (3,))
    sim = Simulator(ak.program({"y": ak.identity(x)}), profile="m1")
    feed = np.array([np.nan, 1.0, -2.0], np.float32)
    np.testing.assert_array_equal(sim.run_stored({}, {"x": feed})["y"], [np.inf, 1.0, -2.0])
    assert np.isnan(feed[0])                             # the resident array is not written


def test_run_stored_refuses_an_input_given_twice():
    sim = Simulator(_mixed_program(), profile="exact")
    feeds = _feeds()
    with pytest.raises(ak.errors.AnekitError, match=r"\['w'\] given both"):
        sim.run_stored(feeds, {"w": feeds["w"].astype(np.float16)})


def test_the_default_run_stored_of_other_backends_agrees_with_the_simulators():
    exe = runtime.compile(_mixed_program(), backend="sim", target="m1")
    feeds = _feeds()
    resident = {"w": feeds.pop("w").astype(np.float16).astype(np.float32)}
    fast = exe.run_stored(feeds, resident)
    generic = Executable.run_stored(exe, feeds, resident)   # call, then cast fp16 outputs back
    assert fast.keys() == generic.keys()
    assert all(fast[k].tobytes() == generic[k].tobytes() for k in fast)


def _linear_trainer(numerics, opt_cls=optim.Adam):
    rng = np.random.default_rng(0)
    w = ak.param("w", (rng.standard_normal((6, 4)) * 0.3).astype(np.float32))
    b = ak.param("b", np.zeros(4, np.float32))
    x, y = ak.input("x", (8, 6)), ak.input("y", (8, 4))
    loss = (ak.gelu(x @ w + b) - y).square().mean().reshape([1])
    return Trainer(loss, [w, b], opt_cls([w, b], lr=1e-2), target="m1", numerics=numerics,
                   loss_scale=256, progress=False)


def _batches():
    rng = np.random.default_rng(1)
    while True:
        yield {"x": rng.standard_normal((8, 6)).astype(np.float32),
               "y": (rng.standard_normal((8, 4)) * 1e-3).astype(np.float32)}   # tiny gradients too


@pytest.mark.parametrize("numerics", ["exact", "profile"])
def test_resident_training_equals_feeding_fp16_arrays_every_step(numerics):
    """The trainer keeps parameters and moments in stored form; the same steps done through
    the plain fp16 interface (exe(feeds), opt.step with float16 gradients) give the same bits."""
    tr = _linear_trainer(numerics)
    tr.fit(_batches(), 4)
    ref = _linear_trainer(numerics)
    for batch, _ in zip(_batches(), range(4)):
        out = ref.exe({**batch, **ref.opt.params, "loss_scale": np.full((1,), 256.0, np.float32)})
        ref.opt.step({p: out[f"grad_{p}"] for p in ref.opt.params}, grad_scale=256.0)
    for got, want in ((tr.opt.params, ref.opt.params), (tr.opt.state, ref.opt.state)):
        assert got.keys() == want.keys()
        for k in got:
            assert got[k].dtype == np.float16 and got[k].tobytes() == want[k].tobytes(), k


def test_optimizer_rounds_float32_gradients_from_outside_to_fp16():
    """opt.step with float32 gradients (not stored form) rounds them as the fp16 input would."""
    params = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    g = (np.random.default_rng(2).standard_normal((3, 4)) * 1e-3).astype(np.float32)
    a, b = optim.Adam(params, lr=1e-2), optim.Adam(params, lr=1e-2)
    a.step({"w": g})
    b.step({"w": g.astype(np.float16)})
    assert a.params["w"].tobytes() == b.params["w"].tobytes()
    assert a.state["v_w"].tobytes() == b.state["v_w"].tobytes()


# --- fp16-grid tables --------------------------------------------------------------------------

@pytest.mark.parametrize("op, profile, mode", [("gelu", "m1", "EXACT"), ("gelu", "m5", "EXACT"), ("erf", "m4", None),
                                              ("gelu", "m4", "TANH_APPROXIMATION"),
                                              ("gelu", "m4", "SIGMOID_APPROXIMATION")])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # -inf * 0 in the tail, as the executor ignores
def test_grid_tables_give_the_bits_of_the_elementwise_reference(op, profile, mode):
    """Every fp16 value (both signs, subnormals, inf) through the kernel by table equals the
    element-wise float64 reference, and an array off the fp16 grid still takes that path."""
    from anekit.sim import profile_for
    from anekit.sim.kernels import activations, elementwise
    from anekit.sim.registry import Call
    from anekit.sim.numerics import Numerics
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    every = every[~np.isnan(every)]
    x = ak.input("x", (every.size,))
    prog = ak.program({"y": getattr(ak, op)(x)})
    call = Call(prog.main.ops[0], Numerics(profile_for(profile)), 0)
    kernel = activations.gelu if op == "gelu" else elementwise.erf_
    args = {"mode": mode} if op == "gelu" else {}
    from anekit.sim import fp16_grid
    fp16_grid._TABLES.clear()
    by_table = kernel(call, every, **args)
    assert [k[0] for k in fp16_grid._TABLES] == [op if mode in (None, "EXACT") else mode]   # the table was used
    rng = np.random.default_rng(0)
    for part in np.array_split(rng.permutation(every.size), 8):      # small chunks: no table
        direct = kernel(call, np.ascontiguousarray(every[part][:4000]), **args)
        assert direct.tobytes() == by_table[part][:4000].tobytes()
    off_grid = every + np.float32(2.0 ** -20) * (np.abs(every) < 1)  # low bits set: element-wise
    ref = fn.erf(off_grid.astype(np.float64)) if op == "erf" else None
    got = kernel(call, off_grid, **args)
    if ref is not None:
        assert got.tobytes() == ref.astype(np.float32).tobytes()
    assert np.isfinite(by_table[np.isfinite(every)]).all()


# --- pooling by taps ---------------------------------------------------------------------------

@pytest.mark.parametrize("k, s, pad", [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)),
                                       ((3, 2), (1, 2), (0, 1, 1, 0)), ((7, 7), (3, 3), (3, 3, 3, 3)),
                                       ((2, 9), (1, 1), (0, 0, 0, 0))])
def test_pools_equal_numpys_reduction_over_the_window_view(k, s, pad):
    """max_pool and avg_pool accumulate tap by tap; the bits equal float32 numpy reductions
    over the windows (the sum in numpy's order), written here from the definition."""
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((2, 3, 17, 19)) * 50).astype(np.float32)
    x = ak.input("x", a.shape, dtype="fp32")
    kw = dict(kernel_sizes=list(k), strides=list(s), pad_type="custom", pad=list(pad))
    out = Simulator(ak.program({"mx": ak.max_pool(x, **kw), "av": ak.avg_pool(x, **kw, exclude_padding_from_average=True)}),
                    profile="exact").run({"x": a})
    widths = [(0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])]
    oh, ow = out["mx"].shape[2:]
    for name, fill in (("mx", -np.inf), ("av", 0.0)):
        win = np.lib.stride_tricks.sliding_window_view(np.pad(a, widths, constant_values=fill), k, axis=(2, 3))
        win = win[:, :, :oh * s[0]:s[0], :ow * s[1]:s[1]]
        if name == "mx":
            ref = win.max(axis=(4, 5))
        else:
            ones = np.pad(np.ones(a.shape[2:], np.float32), widths[2:])
            cnt = np.lib.stride_tricks.sliding_window_view(ones, k)[:oh * s[0]:s[0], :ow * s[1]:s[1]].sum(axis=(2, 3))
            ref = win.sum(axis=(4, 5), dtype=np.float32) / cnt
        assert out[name].tobytes() == ref.astype(np.float32).tobytes(), name


# --- exact numerics: gelu and erf by guarded Taylor expansion ----------------------------------

def test_guarded_taylor_gives_the_float32_bits_of_the_float64_references():
    """taylor32 decides float32(f(x)) from a table expansion only where an error bound leaves
    no doubt; everything else takes the reference. Checked on 3M values over 11 scales, with
    zeros, infinities, NaN, the table's edges and gelu's tail boundary."""
    from anekit.sim import taylor32
    rng = np.random.default_rng(7)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 8.0, -8.0, 7.999, 2.0 ** -30, -2.0 ** -31, -3.5, -3.5001, 1e-38]
    for scale in (1e-8, 1e-4, 0.01, 0.3, 1.0, 1.5, 2.0, 3.0, 5.0, 20.0, 1e4):
        x = np.concatenate([specials, rng.standard_normal(1 << 18) * scale]).astype(np.float32)
        with np.errstate(all="ignore"):
            ref_erf = fn.erf(x.astype(np.float64)).astype(np.float32)
            ref_gelu = fn.gelu_precise(x.astype(np.float64)).astype(np.float32)
        assert taylor32.ERF(x).tobytes() == ref_erf.tobytes(), scale
        assert taylor32.GELU(x).tobytes() == ref_gelu.tobytes(), scale


def test_guarded_taylor_decides_almost_every_element_itself():
    """The speed comes from the guard passing nearly everything: check the bound is not so
    loose that the reference does the work."""
    from anekit.sim import taylor32
    x = np.random.default_rng(8).standard_normal(1 << 16).astype(np.float32)
    calls = []
    for f in (taylor32.ERF, taylor32.GELU):
        plain = f.reference
        f.reference = lambda v, plain=plain: (calls.append(v.size), plain(v))[1]
        try:
            f.tables()
            calls.clear()
            f(x)
        finally:
            f.reference = plain
        assert sum(calls) < 0.01 * x.size, (f.name, sum(calls))
