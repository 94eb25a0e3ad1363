"""torch.nn.LSTM converted by coremltools 9 (issue 15): the MIL `lstm` op loads, runs on the
simulator within 2e-2 relative L2 of PyTorch fp32 (one and two layers, uni- and bidirectional,
batch_first), and ak.check says the engine does not take it (guide Appendix A: no path on any
family; Core ML runs it on the CPU/GPU).
"""
from __future__ import annotations

import pytest

from conftest import optional
from coreml_recurrent import REL_L2, convert_and_run

import anekit as ak

pytestmark = [pytest.mark.torch, pytest.mark.coremltools]
torch = optional("torch")


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_converted_lstm_matches_pytorch(tmp_path, layers, bidirectional):
    torch.manual_seed(3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(6, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional)

        def forward(self, x):
            y, (h, c) = self.rnn(x)
            return y, h, c
    net = Net().eval()
    prog, errors = convert_and_run(tmp_path, net, torch.randn(2, 7, 6), "yhc")
    assert sum(op.type == "lstm" for op in prog.main.ops) == layers
    assert all(e < REL_L2 for e in errors.values()), errors
    found = ak.check(prog, "m4").by_rule("op-support")
    assert [f.op_type for f in found if f.verdict == "unsupported"] == ["lstm"] * layers
