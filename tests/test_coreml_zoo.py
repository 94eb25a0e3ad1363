"""Coverage (issue 6 item 2): a corpus of PyTorch models, converted by coremltools the way users
do (FLOAT16 compute precision, iOS 18 target), loaded with ak.load and run on the simulator
with M4 numerics, matches PyTorch within the fp16 tolerance stated in models_zoo
(|sim - torch| <= ATOL + RTOL * |torch| elementwise; integer outputs exactly).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the corpus models are PyTorch modules")
pytest.importorskip("coremltools", reason="the corpus is converted with coremltools")

import models_zoo as zoo  # noqa: E402

import anekit as ak  # noqa: E402

# What the corpus promises to exercise (issue 6 item 2), as the ops coremltools emits for it.
REQUIRED_OPS = {
    "conv", "conv_transpose", "max_pool", "avg_pool", "upsample_nearest_neighbor", "upsample_bilinear",
    "linear", "matmul", "layer_norm", "instance_norm", "softmax", "scaled_dot_product_attention",
    "rsqrt", "gather", "cast", "gelu", "silu", "sigmoid", "tanh", "relu", "relu6", "elu", "leaky_relu",
    "sin", "cos", "exp", "log", "sqrt", "pow", "select", "split", "slice_by_index", "concat", "pad",
    "transpose", "reshape", "tile", "reduce_mean", "reduce_sum", "reduce_argmax",
    "read_state", "write_state", "slice_update", "crop", "thresholded_relu", "pixel_shuffle",
    "reverse", "cumsum", "gather_along_axis", "topk",
}


def test_corpus_size_and_variety():
    assert len(zoo.ZOO) >= 15
    assert len({m.name for m in zoo.ZOO}) == len(zoo.ZOO)
    dtypes = {s.dtype for m in zoo.ZOO for s in m.inputs}
    assert {"fp16", "fp32", "int32"} <= dtypes                       # int and fp32 I/O included
    assert any(len(m.outputs) > 1 for m in zoo.ZOO)                   # multiple outputs included
    assert any(m.states for m in zoo.ZOO)                             # stateful model included


def test_corpus_exercises_the_promised_ops(tmp_path_factory):
    seen = set()
    for entry in zoo.ZOO:
        seen |= {op.type for op in ak.load(zoo.package(entry.name, tmp_path_factory)).main.ops}
    assert not REQUIRED_OPS - seen, f"not emitted by the corpus: {sorted(REQUIRED_OPS - seen)}"


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_simulator_matches_pytorch(entry, tmp_path_factory):
    prog = ak.load(zoo.package(entry.name, tmp_path_factory))
    feeds = entry.sample(seed=7)
    expected = entry.reference(entry.module(), feeds)
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = exe(feeds)
    assert list(got) == entry.outputs
    for name in entry.outputs:
        out, ref = np.asarray(got[name]), expected[name]
        assert out.shape == ref.shape, name
        if out.dtype.kind in "iu":
            np.testing.assert_array_equal(out, ref.astype(out.dtype), err_msg=name)
            continue
        assert out.dtype == np.dtype(entry_dtype(prog, name)), name
        assert np.all(np.isfinite(out)), name
        err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        bound = entry.atol + entry.rtol * np.abs(ref.astype(np.float64))
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert np.all(err <= bound), (f"{entry.name}/{name}: |sim - torch| = {err[worst]:.5f} at {worst} "
                                      f"exceeds {bound[worst]:.5f} (torch {ref[worst]:.5f})")


def entry_dtype(prog, name):
    t = next(t for t in prog.main.outputs if t.name == name)
    return {"fp16": np.float16, "fp32": np.float32, "int32": np.int32}[t.dtype]


def test_state_persists_across_calls_like_core_ml(tmp_path_factory):
    """kv_cache_state writes its caches each call. Run twice on the simulator without feeding
    the states (they start at zeros, as a new MLState does) and compare with the PyTorch
    module called twice: the second call must see the first call's cache writes."""
    import torch
    from anekit.sim import Simulator, profile_for

    entry = zoo.BY_NAME["kv_cache_state"]
    sim = Simulator(ak.load(zoo.package(entry.name, tmp_path_factory)), profile=profile_for("m4"))
    module = entry.module()
    for seed in (1, 2):
        x = entry.sample(seed)["x"]
        got = sim.run({"x": x})["y"].astype(np.float64)
        with torch.no_grad():
            ref = module(torch.from_numpy(x.astype(np.float32))).numpy()
        assert np.all(np.abs(got - ref) <= entry.atol + entry.rtol * np.abs(ref)), f"call {seed}"
    # the caches hold what PyTorch's buffers hold after the same two calls
    for name in ("k_cache", "v_cache"):
        np.testing.assert_allclose(sim.states[name], getattr(module, name).numpy(), atol=entry.atol, rtol=entry.rtol)
