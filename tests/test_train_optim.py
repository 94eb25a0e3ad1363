"""Optimizers: the update program against torch.optim, step for step."""
import math

import numpy as np
import pytest

from anekit.errors import UsageError
from anekit.train import optim

SHAPES = {"w": (4, 3, 3, 3), "b": (4,), "fc": (10, 7)}
STEPS = 6


def _data(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: (rng.standard_normal(s) * 0.5).astype(np.float32) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    return params, grads


CASES = {
    "sgd": (dict(kind="SGD", lr=0.1), lambda ps, torch: torch.optim.SGD(ps, lr=0.1)),
    "sgd-momentum-wd": (dict(kind="SGD", lr=0.05, momentum=0.9, weight_decay=0.01),
                        lambda ps, torch: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd-nesterov": (dict(kind="SGD", lr=0.05, momentum=0.8, nesterov=True),
                     lambda ps, torch: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (dict(kind="Adam", lr=1e-2), lambda ps, torch: torch.optim.Adam(ps, lr=1e-2)),
    "adam-l2": (dict(kind="Adam", lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
                lambda ps, torch: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (dict(kind="AdamW", lr=1e-2, weight_decay=0.05),
              lambda ps, torch: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05)),
}


def _ours(cfg, params, **extra):
    cfg = dict(cfg)
    cls = getattr(optim, cfg.pop("kind"))
    return cls(params, **cfg, **extra)


def _torch_run(make, params, grads, dtype, clip=None, schedule=None):
    torch = pytest.importorskip("torch")
    ps = {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in params.items()}
    opt = make(list(ps.values()), torch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule else None
    for g in grads:
        for k, p in ps.items():
            p.grad = torch.tensor(g[k], dtype=dtype)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(ps.values()), clip)
        opt.step()
        if sched:
            sched.step()
    return {k: p.detach().numpy() for k, p in ps.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("tdtype,rtol", [("float64", 2e-5), ("float32", 2e-5)])
def test_update_program_matches_torch(case, tdtype, rtol):
    """fp32 master weights (the update runs with fp32 numerics) follow torch.optim for 6 steps;
    the tolerance covers float32 rounding (torch float64 is the independent reference)."""
    torch = pytest.importorskip("torch")
    cfg, make = CASES[case]
    params, grads = _data()
    ours = _ours(cfg, params, master_weights=True)
    for g in grads:
        ours.step(g)
    ref = _torch_run(make, params, grads, getattr(torch, tdtype))
    for k in SHAPES:
        moved = np.abs(ref[k] - params[k]).max()
        assert moved > 1e-3, "the reference did not move: the test would pass vacuously"
        np.testing.assert_allclose(ours.params[k], ref[k], rtol=rtol, atol=rtol * 0.1, err_msg=f"{case} {k}")


def test_clipping_and_cosine_warmup_match_torch():
    torch = pytest.importorskip("torch")
    params, grads = _data(1)
    grads = [{k: v * 20 for k, v in g.items()} for g in grads]   # norms well above the clip
    sched = optim.cosine(2e-2, total_steps=STEPS, warmup_steps=2, min_lr=1e-3)
    ours = optim.AdamW(params, lr=sched, weight_decay=0.01, clip_norm=1.0, master_weights=True)
    norms = []
    for g in grads:
        ours.step(g)
        norms.append(ours.last_grad_norm)
    lam = lambda i: sched(i + 1) / 2e-2      # LambdaLR counts from 0, our steps from 1
    ref = _torch_run(lambda ps, t: t.optim.AdamW(ps, lr=2e-2, weight_decay=0.01), params, grads,
                     torch.float64, clip=1.0, schedule=lam)
    for k in SHAPES:
        np.testing.assert_allclose(ours.params[k], ref[k], rtol=2e-5, atol=2e-6)
    true_norm = math.sqrt(sum(float((grads[0][k].astype(np.float64) ** 2).sum()) for k in SHAPES))
    assert norms[0] == pytest.approx(true_norm, rel=1e-5)


def test_cosine_schedule_values():
    s = optim.cosine(1.0, total_steps=10, warmup_steps=2, min_lr=0.1)
    assert s(1) == 0.5 and s(2) == 1.0
    assert s(6) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert s(10) == pytest.approx(0.1) and s(50) == pytest.approx(0.1)
    assert optim.constant(0.3)(7) == 0.3
    with pytest.raises(UsageError):
        optim.cosine(1.0, total_steps=5, warmup_steps=6)


@pytest.mark.parametrize("case", ["sgd-momentum-wd", "adam", "adamw"])
def test_gradient_scale_is_absorbed(case):
    """Gradients of loss * S with grad_scale=S give the same update as unscaled gradients
    (powers of two are exact), also when the scale changes between steps (dynamic scaling)."""
    cfg, _ = CASES[case]
    params, grads = _data(2)
    plain, scaled = _ours(cfg, params, master_weights=True), _ours(cfg, params, master_weights=True)
    scales = [256.0, 256.0, 128.0, 64.0, 128.0, 1024.0]
    for g, s in zip(grads, scales):
        plain.step(g)
        scaled.step({k: v * s for k, v in g.items()}, grad_scale=s)
    assert scaled.state_scale == 256.0
    for k in SHAPES:
        np.testing.assert_allclose(scaled.params[k], plain.params[k], rtol=1e-6, atol=1e-7)


def test_fp16_engine_update_tracks_torch():
    """Without master weights the update runs in fp16 with M1 numerics: each parameter stays
    within a few fp16 ulps of the float64 reference after 6 Adam steps at loss scale 256."""
    torch = pytest.importorskip("torch")
    params, grads = _data(3)
    ours = optim.Adam(params, lr=1e-2)
    assert ours.dtype == "fp16"
    for g in grads:
        ours.step({k: (v * 256).astype(np.float16) for k, v in g.items()}, grad_scale=256.0)
    ref = _torch_run(lambda ps, t: t.optim.Adam(ps, lr=1e-2), params, grads, torch.float64)
    for k in SHAPES:
        err = np.abs(ours.params[k].astype(np.float64) - ref[k])
        ulp = np.spacing(np.abs(ref[k]).astype(np.float16)).astype(np.float64)
        assert ours.params[k].dtype == np.float16
        assert (err <= 8 * ulp + 1e-4).all(), f"{k}: worst {err.max():.3g}"


def test_update_is_a_program_that_checks_and_estimates():
    import anekit as ak
    params, _ = _data()
    prog = optim.AdamW(params, weight_decay=0.5, clip_norm=1.0).update_program()
    names = [t.name for t in prog.main.inputs]
    assert {"p_w", "g_w", "m_w", "v_w", "step_size", "eps_t", "decay"} <= set(names)
    assert {"new_p_w", "new_m_w", "new_v_w", "grad_norm"} <= set(prog.main.output_names)
    rep = ak.check(prog, "m1")
    assert rep.to_dict()
    assert ak.estimate(prog, "m1").total_us > 0


def test_bad_arguments():
    params, _ = _data()
    with pytest.raises(UsageError, match="momentum"):
        optim.SGD(params, momentum=1.5)
    with pytest.raises(UsageError, match="Nesterov"):
        optim.SGD(params, nesterov=True)
    with pytest.raises(UsageError, match="betas"):
        optim.Adam(params, betas=0.9)
    with pytest.raises(UsageError, match="no gradient"):
        optim.Adam(params).step({"w": params["w"]})
    with pytest.raises(UsageError, match="at least one"):
        optim.Adam({})
    with pytest.raises(UsageError, match="float array"):
        optim.Adam({"w": np.arange(3)})


def test_adamw_warns_when_fp16_decay_is_a_no_op():
    params, _ = _data()
    with pytest.warns(UserWarning, match="below fp16 resolution"):
        optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.AdamW(params, lr=1e-3, weight_decay=0.01, master_weights=True)
        optim.AdamW(params, lr=1e-2, weight_decay=0.1)
