"""Conv weight-gradient saturation (guide ch. 15) on the simulator, and the preflight rule."""
import numpy as np
import pytest

import anekit as ak
from anekit.models import digits
from anekit.train import Trainer, optim, saturation

RULE = "train-width-slice-saturation"


@pytest.fixture(scope="module")
def m1_table():
    return saturation.table("m1", "guide")


def test_guide_route_saturates_on_m1_as_the_table(m1_table):
    """Exact at the guide's clean points (scales 256 and 384 give no inf), first inf at 512,
    counts never fall as the scale rises, and 4x inputs cross the threshold at scale 256.
    (Our counts per point: docs/training.md; the guide's shape is unpublished.)"""
    t = m1_table
    assert t[(1, 256)] == 0 and t[(1, 384)] == 0
    assert t[(1, 512)] >= 1
    assert t[(1, 512)] <= t[(1, 768)] <= t[(1, 1024)]
    assert t[(4, 256)] >= 1


def test_the_infinities_come_from_the_width_slices(m1_table):
    """Same experiment with fp32 numerics, on M5 (no slice gain) and through anekit's own conv
    gradient (patches of the forward input, never of the loss-scaled cotangent): no inf at all,
    so the M1 infinities are the width-slice saturation, not the MAC ceiling or fp16 range."""
    for (xs, ls) in saturation.GUIDE_COUNTS:
        assert saturation.count_infinities("m1", ls, xs, numerics="exact") == 0
        assert saturation.count_infinities("m5", ls, xs) == 0
        assert saturation.count_infinities("m1", ls, xs, route="anekit") == 0
    assert sum(m1_table.values()) > 0


def test_guide_route_equals_ak_grad_in_exact_numerics():
    x, w, gain = saturation.experiment()
    feeds = {"x": x, "w": w, "gain": np.array([gain]), "loss_scale": np.array([3.0], np.float32)}
    outs = [ak.compile(saturation.program(r), backend="sim", target="m1", numerics="exact")(feeds)["dw"]
            for r in ("guide", "anekit")]
    torch = pytest.importorskip("torch")
    h = lambda a: torch.tensor(np.float16(a), dtype=torch.float64)   # the program's inputs are fp16
    tw = h(w).requires_grad_()
    y = torch.nn.functional.conv2d(h(x), tw)
    (3.0 * float(h(gain)) / 2 * (y ** 2).sum()).backward()
    for out in outs:   # fp32 compute, fp16 output: within an fp16 rounding
        np.testing.assert_allclose(out, tw.grad.numpy(), rtol=1e-3, atol=1e-4)


def test_check_flags_the_guide_route_with_a_safe_scale():
    prog = saturation.program("guide")
    found = ak.check(prog, "m1").by_rule(RULE)
    assert len(found) == 1 and found[0].verdict == "risk" and "dynamic loss scaling" in found[0].reason
    assert ak.check(prog, "m2").by_rule(RULE) and not ak.check(prog, "m5").by_rule(RULE)
    # With declared input ranges the rule names a power-of-two scale, and it is really safe.
    x, w, gain = saturation.experiment()
    fn = prog.main
    for t, lo_hi in (("x", (0.0, 0.1)), ("w", (float(w.min()), float(w.max()))), ("gain", (float(gain),) * 2)):
        fn.input(t).range = lo_hi
    (f,) = ak.check(prog, "m1").by_rule(RULE)
    safe = f.value
    assert safe is not None and safe == 2 ** int(np.log2(safe)) and "is safe" in f.reason
    assert saturation.count_infinities("m1", safe) == 0


def test_conv_first_digits_net_is_not_flagged_but_a_width_concat_is():
    loss, params, _ = digits.build(8, 16)
    tr = Trainer(loss, params, optim.Adam(params), progress=False)
    rep = ak.check(tr.program, "m1")
    assert not rep.by_rule(RULE)
    assert rep.ok      # the trainer lowers its runtime-weight convs to forms the engine compiles
    x = ak.input("x", (2, 3, 4, 6))
    w = ak.param("w", np.ones((3, 4, 6), np.float32))
    loss = ak.reduce_sum(ak.square(ak.concat([x, x * w], axis=3))).reshape([1])
    tr = Trainer(loss, [w], optim.Adam([w]), progress=False)
    (f,) = ak.check(tr.program, "m1").by_rule(RULE)
    assert "1 width-offset slice" in f.reason
    assert not ak.check(tr.program, "m5").by_rule(RULE)
    assert not ak.check(tr.program, "m3").by_rule(RULE)
