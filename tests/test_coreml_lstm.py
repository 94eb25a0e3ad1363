"""torch.nn.LSTM converted by coremltools 9 (issue 15): the MIL `lstm` op loads, runs on the
simulator within 2e-2 relative L2 of PyTorch fp32 (one and two layers, uni- and bidirectional,
batch_first), and ak.check says the engine does not take it (guide Appendix A: no path on any
family; Core ML runs it on the CPU/GPU).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import optional

import anekit as ak

pytestmark = [pytest.mark.torch, pytest.mark.coremltools]
torch = optional("torch")
REL_L2 = 2e-2


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_converted_lstm_matches_pytorch(tmp_path, layers, bidirectional):
    import coremltools as ct
    torch.manual_seed(3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional)

        def forward(self, x):
            y, (h, c) = self.rnn(x)
            return y, h, c
    net = Net().eval()
    x = torch.randn(2, 7, 6)
    ml = ct.convert(torch.jit.trace(net, x), inputs=[ct.TensorType("x", shape=x.shape)],
                    outputs=[ct.TensorType(n) for n in "yhc"], minimum_deployment_target=ct.target.iOS18,
                    compute_precision=ct.precision.FLOAT16, convert_to="mlprogram")
    ml.save(str(tmp_path / "lstm.mlpackage"))
    prog = ak.load(tmp_path / "lstm.mlpackage")
    assert sum(op.type == "lstm" for op in prog.main.ops) == layers
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = exe({"x": x.numpy()})
    with torch.no_grad():
        refs = [t.double().numpy() for t in net(x)]
    for name, ref in zip("yhc", refs):
        out = np.asarray(got[name], np.float64)
        assert out.shape == ref.shape, name
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < REL_L2, name
    found = ak.check(prog, "m4").by_rule("op-support")
    assert [f.op_type for f in found if f.verdict == "unsupported"] == ["lstm"] * layers
