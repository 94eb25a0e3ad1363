"""Models the importer tests convert: torchvision ResNet-18 and MobileNetV3-Small, a Hugging Face
BERT encoder and a Llama decoder layer, all with random weights and tiny or small inputs.

Callers have already checked torch is installed; torchvision and transformers are imported
here, so a missing one skips only the models that need it (pytest.importorskip with the reason).
"""
import pytest
import torch

IMAGE = (1, 3, 32, 32)   # small enough for the suite; both nets still end at 1x1


def _torchvision():
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (the test extra lists it)")
    except RuntimeError as e:   # a CUDA build whose schemas conftest could not stand in for
        pytest.skip(f"torchvision does not import with this torch: {e}")
    return torchvision


def _calibrated(model):
    """Batch-norm statistics from a batch of random images: a freshly initialised torchvision
    net's default running statistics shrink activations to ~1e-10 (below fp16's range) by the
    last layer. Too small a batch leaves the late, 1x1-spatial layers with noisy statistics and
    the net ill-conditioned (MobileNetV3 with 8 images: 1.6e-2 relative error from fp16 weight
    rounding alone)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None           # the statistics of the calibration batch itself
    model.train()
    with torch.no_grad():
        model(torch.randn(32, *IMAGE[1:]))
    return model.eval()


def resnet18():
    torch.manual_seed(0)
    return _calibrated(_torchvision().models.resnet18()), (torch.randn(IMAGE),)


def mobilenet_v3():
    torch.manual_seed(0)
    return _calibrated(_torchvision().models.mobilenet_v3_small()), (torch.randn(IMAGE),)


class _LastHidden(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, ids):
        return self.bert(input_ids=ids).last_hidden_state


def bert():
    transformers = pytest.importorskip("transformers", reason="the BERT model comes from transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    return _LastHidden(model).eval(), (torch.randint(0, 100, (1, 12)),)


class _LlamaBlock(torch.nn.Module):
    """One LlamaDecoderLayer (RMSNorm, GQA attention with RoPE, causal, SwiGLU); the RoPE tables of
    positions 0..S-1 are buffers, so the hidden states are the only input."""

    def __init__(self, layer, cos, sin):
        super().__init__()
        self.layer = layer
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, h):
        out = self.layer(h, attention_mask=None, position_embeddings=(self.cos, self.sin))
        return out[0] if isinstance(out, tuple) else out


def llama_block():
    transformers = pytest.importorskip("transformers", reason="the Llama layer comes from transformers")
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=100, num_hidden_layers=1)
    cfg._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(cfg, 0).eval()
    h = torch.randn(1, 10, 64)
    cos, sin = LlamaRotaryEmbedding(cfg)(h, torch.arange(10)[None])
    return _LlamaBlock(layer, cos, sin).eval(), (h,)


MODELS = {"resnet18": resnet18, "mobilenet_v3": mobilenet_v3, "bert": bert, "llama_block": llama_block}

# (program float type, simulator numerics, bound on the relative L2 error against the reference):
# fp16 on the m4 profile carries fp16 weights and activations through ~20 layers; fp32 weights
# in exact numerics leave only float32 reassociation.
TOLERANCES = {"fp16": ("profile", 2e-2), "fp32": ("exact", 1e-4)}


def rel_l2(y, ref) -> float:
    import numpy as np
    y, ref = np.asarray(y, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def feeds_for(prog, example_inputs):
    """Example inputs as simulator feeds, in the program's input order (int64 ids -> int32)."""
    import numpy as np
    out = {}
    for t, x in zip(prog.main.inputs, example_inputs):
        a = x.detach().numpy()
        out[t.name] = a.astype(np.int32) if a.dtype.kind in "iu" else a
    return out
