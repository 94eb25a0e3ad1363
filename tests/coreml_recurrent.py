"""Recurrent PyTorch nets through coremltools 9 and back (shared by the LSTM and GRU tests):
trace, convert (fp16 compute, iOS 18 ML program), load with anekit, run on the m4 simulator,
and compare each output with PyTorch in float64."""
from __future__ import annotations

import numpy as np

import anekit as ak

REL_L2 = 2e-2          # the corpus criterion's floor (issue 15)


def rel_l2(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def convert_and_run(tmp_path, net, x, names: str):
    """(the loaded program, {output name: relative L2 error against PyTorch}) for `net` traced
    on `x`, its outputs named by the letters of `names`; shapes are asserted equal."""
    import coremltools as ct
    import torch
    ml = ct.convert(torch.jit.trace(net, x), inputs=[ct.TensorType("x", shape=x.shape)],
                    outputs=[ct.TensorType(n) for n in names], minimum_deployment_target=ct.target.iOS18,
                    compute_precision=ct.precision.FLOAT16, convert_to="mlprogram")
    path = tmp_path / "net.mlpackage"
    ml.save(str(path))
    prog = ak.load(path)
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = exe({"x": x.numpy()})
    with torch.no_grad():
        refs = [t.double().numpy() for t in net(x)]
    errors = {}
    for name, ref in zip(names, refs):
        assert got[name].shape == ref.shape, name
        errors[name] = rel_l2(got[name], ref)
    return prog, errors
