"""Hugging Face text models converted by coremltools 9 (issue 15): transformers 5 builds the
attention mask with ops coremltools lowers to gather_nd and fill_like. A tiny random BERT with
a padding mask, converted in the test (torch.export, FLOAT16 compute, iOS 18), loads with
ak.load and runs on the simulator (M4 numerics) within 2e-2 relative L2 of PyTorch fp32.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import optional

import anekit as ak

pytestmark = [pytest.mark.torch, pytest.mark.coremltools, pytest.mark.transformers]
torch = optional("torch")

REL_L2 = 2e-2     # issue 15's bound for a converted model against PyTorch fp32


def _bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32)
    bert = BertModel(cfg).eval()

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask):
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    return Hidden().eval()


def test_bert_with_padding_mask_runs_on_the_simulator(tmp_path):
    import coremltools as ct
    model = _bert()
    ids = torch.randint(0, 64, (1, 8), dtype=torch.int32, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 8, dtype=torch.int32)
    mask[0, 5:] = 0                                                   # three padding positions
    exported = torch.export.export(model, (ids, mask)).run_decompositions()
    ml = ct.convert(exported, inputs=[ct.TensorType("ids", shape=(1, 8), dtype=np.int32),
                                      ct.TensorType("mask", shape=(1, 8), dtype=np.int32)],
                    outputs=[ct.TensorType("h")], minimum_deployment_target=ct.target.iOS18,
                    compute_precision=ct.precision.FLOAT16, convert_to="mlprogram")
    path = tmp_path / "bert.mlpackage"
    ml.save(str(path))

    prog = ak.load(path)
    types = {op.type for op in prog.main.ops}
    assert {"gather_nd", "fill_like"} <= types            # what the transformers 5 mask lowers to
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = np.asarray(exe({"ids": ids.numpy(), "mask": mask.numpy()})["h"], np.float64)
    with torch.no_grad():
        ref = model(ids, mask).double().numpy()
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err < REL_L2, f"relative L2 {err:.2e}"
    # The mask reaches the output: the run is clearly closer to the masked reference than to
    # the unmasked one (random weights make the mask's effect small, about 4x the fp16 error).
    with torch.no_grad():
        unmasked = model(ids, torch.ones_like(mask)).double().numpy()
    assert np.linalg.norm(got - unmasked) / np.linalg.norm(ref) > 2 * err
