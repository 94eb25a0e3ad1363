"""A corpus of small PyTorch models for the Core ML interop tests (issue 6, item 2).

Each entry is traced and converted with coremltools' PyTorch converter the way users do
(`ct.convert(..., convert_to="mlprogram", compute_precision=FLOAT16,
minimum_deployment_target=iOS18)`), so the ops the converter emits for common networks are
exactly what anekit has to load and execute. Shapes are tiny so that the whole corpus
converts in a few seconds.

This module imports torch and coremltools at import time: import it only from tests that
have already checked both are installed (pytest.importorskip).
"""
from __future__ import annotations

import math
import os
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# fp16 tolerance (stated once, used by every comparison unless an entry overrides it):
# |sim - torch| <= ATOL + RTOL * |torch|, elementwise, with torch run in float32 on the same
# fp16-representable inputs. fp16 keeps 11 significant bits (relative step 2**-10 ~ 1e-3);
# a few layers of fp16 rounding, the engine's piecewise-linear activations (~0.5 ulp, guide
# ch. 3) and fp16 weight storage stay well inside 2e-2 at unit magnitude.
ATOL = 2e-2
RTOL = 2e-2


@dataclass(frozen=True)
class Spec:
    """One input or output: name, shape and MIL dtype ("fp16", "fp32" or "int32")."""

    name: str
    shape: tuple
    dtype: str = "fp16"


@dataclass
class ZooModel:
    name: str
    make: Callable[[], nn.Module]       # builds the module with seeded weights
    inputs: list[Spec]
    outputs: list[str]                  # output names given to ct.convert
    what: str                           # what this entry covers
    atol: float = ATOL
    rtol: float = RTOL
    int_high: dict = field(default_factory=dict)   # int input name -> exclusive upper bound
    states: list[Spec] = field(default_factory=list)   # registered buffers updated in place

    def sample(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs as numpy arrays of the declared dtypes (floats exactly fp16-representable)."""
        rng = np.random.default_rng(seed)
        out = {}
        for s in self.inputs + self.states:
            if s.dtype == "int32":
                out[s.name] = rng.integers(0, self.int_high.get(s.name, 8), s.shape).astype(np.int32)
            else:
                v = rng.standard_normal(s.shape).astype(np.float16)
                out[s.name] = v.astype(np.float32 if s.dtype == "fp32" else np.float16)
        return out

    def module(self) -> nn.Module:
        torch.manual_seed(zlib.crc32(self.name.encode()))
        m = self.make().eval()
        _randomize_norm_stats(m)
        return m

    def reference(self, module: nn.Module, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """PyTorch's outputs in float32 (int inputs as int64, as nn.Embedding wants)."""
        args = [torch.from_numpy(feeds[s.name].astype(np.int64 if s.dtype == "int32" else np.float32))
                for s in self.inputs]
        with torch.no_grad():
            for s in self.states:       # the state's value going in is the buffer's
                getattr(module, s.name).copy_(torch.from_numpy(feeds[s.name].astype(np.float32)))
            res = module(*args)
        res = res if isinstance(res, (tuple, list)) else (res,)
        return {n: r.detach().float().numpy() for n, r in zip(self.outputs, res)}


def _randomize_norm_stats(m: nn.Module) -> None:
    """Give batch norms non-trivial running statistics (fresh ones are mean 0, var 1)."""
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            with torch.no_grad():
                mod.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                mod.bias.copy_(0.1 * torch.randn(n, generator=g))


# --- the models ----------------------------------------------------------------------------

class CnnBnPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.avg_pool2d(F.relu(self.b2(self.c2(x))), 2)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Depthwise(nn.Module):
    """MobileNet-style depthwise-separable block with ReLU6 and hardswish."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        return F.hardswish(self.pw(F.relu6(self.bn(self.dw(x)))))


class TransposedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        return torch.sigmoid(self.up2(F.leaky_relu(self.up(x), 0.1)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 16, 1, stride=2)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)) + x)
        return self.down(y)


class Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        a = F.interpolate(x, scale_factor=2, mode="nearest")
        b = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.c(a + b)


def _split_heads(t, heads):
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)          # [B, S, D] -> [B, H, S, D/H]


def _merge_heads(t):
    return t.transpose(1, 2).flatten(2)                           # [B, H, S, E] -> [B, S, H*E]


class EncoderBlock(nn.Module):
    """Post-norm transformer encoder block written out (LayerNorm, softmax attention, GELU MLP)."""

    def __init__(self, dim=32, heads=4, hidden=64):
        super().__init__()
        self.heads, self.scale = heads, 1 / math.sqrt(dim // heads)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff1, self.ff2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        att = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1) @ v
        x = self.ln1(x + self.proj(_merge_heads(att)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(t):
    a, b = t.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Rotary(nn.Module):
    """Rotate-half rotary position embedding; the angle table is computed in the graph."""

    def __init__(self, dim=16, seq=8, base=10000.0):
        super().__init__()
        self.register_buffer("inv", base ** (-torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("pos", torch.arange(seq).float())

    def forward(self, x):                          # x [B, H, S, D]
        ang = self.pos[:, None] * self.inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        return x * ang.cos() + _rotate_half(x) * ang.sin()


class CausalDecoder(nn.Module):
    """Llama-style decoder block: RMSNorm, rotary q/k, fused causal SDPA, SwiGLU MLP."""

    def __init__(self, dim=32, heads=4, hidden=64):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = RMSNorm(dim), RMSNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.rope = Rotary(dim // heads)
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        h = self.n1(x)
        q, k, v = (_split_heads(p(h), self.heads) for p in (self.q, self.k, self.v))
        q, k = self.rope(q), self.rope(k)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(_merge_heads(att))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class MaskedSdpa(nn.Module):
    """SDPA with an explicit additive float mask and a bool mask, both as graph inputs."""

    def forward(self, q, k, v, bias):
        keep = bias > -1.0
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                F.scaled_dot_product_attention(q, k, v, attn_mask=keep))


class RmsNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = RMSNorm(32)
        self.fc = nn.Linear(32, 16)

    def forward(self, x):
        return self.fc(self.norm(x))


class RotaryModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.rope = Rotary(16)

    def forward(self, x):
        return self.rope(x)


class EmbeddingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 8)

    def forward(self, ids):
        return self.fc(torch.tanh(self.emb(ids)))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 5, padding=2)
        self.b1 = nn.BatchNorm1d(8)
        self.c2 = nn.Conv1d(8, 8, 3, dilation=2, padding=2, groups=2)
        self.c3 = nn.Conv1d(8, 6, 3, stride=2)

    def forward(self, x):
        x = F.max_pool1d(F.elu(self.b1(self.c1(x))), 2)
        return self.c3(F.gelu(self.c2(x), approximate="tanh"))


class Activations(nn.Module):
    def forward(self, x):
        return torch.cat([
            F.relu(x), F.gelu(x), F.silu(x), torch.tanh(x), torch.sigmoid(x), F.elu(x),
            F.leaky_relu(x, 0.2), F.softplus(x), F.hardsigmoid(x), F.hardtanh(x, -0.5, 0.5),
            F.softsign(x), F.mish(x), F.selu(x), F.relu6(3 * x), torch.atan(x), torch.erf(x),
        ], dim=1)


class ElementwiseMath(nn.Module):
    def forward(self, a, b):
        pos = b.abs() + 0.5
        return torch.stack([
            a + b, a - b, a * b, a / pos, torch.maximum(a, b), torch.minimum(a, b),
            torch.sqrt(pos), torch.exp(0.5 * a), torch.log(pos), pos.pow(1.5), torch.rsqrt(pos),
            torch.clamp(a, -0.3, 0.7), torch.where(a > b, a, b), torch.sin(a), torch.cos(b),
            torch.floor(2 * a), torch.ceil(2 * b), torch.reciprocal(pos), a.square(), torch.sign(a),
        ], dim=0)


class Reductions(nn.Module):
    """Reductions, softmax variants and an int32 argmax output."""

    def forward(self, x):
        return (torch.log_softmax(x, dim=-1), x.sum(-1), x.amax(1), x.mean((1, 2)),
                torch.argmax(x, dim=-1).int(), x.norm(dim=-1), torch.logsumexp(x, -1))


class MultiOutput(nn.Module):
    """Several outputs from split/chunk/slicing, permute and pad."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        y = self.c(x)
        a, b, c = y.chunk(3, dim=1)
        d = F.pad(y[:, :, 1:-1, ::2], (1, 2, 0, 1))
        e = y.permute(0, 2, 3, 1).flatten(2)
        return a * b, torch.relu(c), d, e


class Fp32Io(nn.Module):
    """fp32 inputs and outputs around an fp16 body (the converter inserts casts)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)
        self.ln = nn.LayerNorm(32)

    def forward(self, x):
        return torch.softmax(self.fc2(F.gelu(self.ln(self.fc1(x)))), dim=-1)


class GroupInstanceNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.gn = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.c = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.inorm(self.c(F.silu(self.gn(x))))


class ShapeOps(nn.Module):
    """Reshape/transpose/expand/repeat/gather-by-index style movement around a matmul."""

    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.tensor([5, 0, 3]))

    def forward(self, x, y):
        t = x.reshape(2, 4, 8).transpose(1, 2)             # [2, 8, 4]
        m = torch.matmul(t, y)                              # [2, 8, 6]
        r = m.unsqueeze(1).repeat(1, 2, 1, 1)               # [2, 2, 8, 6]
        picked = torch.index_select(r, 3, self.idx)             # [2, 2, 8, 3]
        return torch.cat([picked, -picked], dim=-1)


class KvCacheStep(nn.Module):
    """One decoding step with Core ML states (iOS 18): the new key and value are written into
    state caches at a fixed position (slice_update + write_state), then the query attends
    over the whole cache (read_state)."""

    def __init__(self, dim=16, seq=6, pos=3):
        super().__init__()
        self.pos, self.scale = pos, 1 / math.sqrt(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.register_buffer("k_cache", torch.zeros(1, seq, dim))
        self.register_buffer("v_cache", torch.zeros(1, seq, dim))

    def forward(self, x):                                  # x [1, 1, dim]
        self.k_cache[:, self.pos:self.pos + 1, :] = self.k(x)
        self.v_cache[:, self.pos:self.pos + 1, :] = self.v(x)
        scores = self.q(x) @ self.k_cache.transpose(1, 2) * self.scale
        return torch.softmax(scores, dim=-1) @ self.v_cache


class Extras(nn.Module):
    """Layers that lower to ops beyond the core set: pixel_shuffle, flip (reverse), cumsum,
    torch.gather (gather_along_axis), topk with int32 indices."""

    def __init__(self):
        super().__init__()
        self.register_buffer("idx", torch.tensor([[[[7, 0, 3, 6, 5]]]]).expand(1, 2, 6, 5).clone())
        # well-separated offsets keep the top-k order far from ties, so fp16 rounding cannot
        # reorder it and the int32 indices compare exactly
        self.register_buffer("offset", torch.randperm(30, generator=torch.Generator().manual_seed(0)).float())

    def forward(self, x):                                  # x [1, 8, 3, 4]
        p = F.pixel_shuffle(x, 2)                          # [1, 2, 6, 8]
        c = torch.cumsum(torch.flip(p, [-1]), dim=-1) * 0.25
        g = torch.gather(c, 3, self.idx)                   # [1, 2, 6, 5]
        values, indices = torch.topk(0.05 * g.flatten(2) + self.offset, 3)
        return values, indices.int()


ZOO: list[ZooModel] = [
    ZooModel("cnn_bn_pool", CnnBnPool, [Spec("x", (1, 3, 16, 16))], ["logits"],
             "conv + batch norm + relu, max/avg/adaptive pooling, linear"),
    ZooModel("depthwise", Depthwise, [Spec("x", (1, 8, 8, 8))], ["y"],
             "depthwise conv (groups=C), relu6, pointwise conv, hardswish"),
    ZooModel("transposed_conv", TransposedConv, [Spec("x", (1, 8, 4, 4))], ["y"],
             "strided transposed convs (with output_padding), leaky relu, sigmoid"),
    ZooModel("residual", Residual, [Spec("x", (1, 8, 8, 8))], ["y"],
             "residual block: bias-free convs, batch norm, skip add, strided 1x1 projection"),
    ZooModel("upsampling", Upsampling, [Spec("x", (1, 4, 6, 6))], ["y"],
             "nearest and bilinear 2x upsampling"),
    ZooModel("encoder_block", EncoderBlock, [Spec("x", (1, 8, 32))], ["y"],
             "transformer encoder: linear qkv, split heads, softmax attention, layer norm, GELU"),
    ZooModel("causal_decoder", CausalDecoder, [Spec("x", (1, 8, 32))], ["y"],
             "llama-style block: RMSNorm, rotary q/k, fused causal scaled_dot_product_attention, SwiGLU"),
    ZooModel("masked_sdpa", MaskedSdpa,
             [Spec("q", (1, 2, 4, 8)), Spec("k", (1, 2, 6, 8)), Spec("v", (1, 2, 6, 8)), Spec("bias", (1, 1, 4, 6))],
             ["float_mask", "bool_mask"], "fused attention with float and bool masks, two outputs"),
    ZooModel("rmsnorm", RmsNormModel, [Spec("x", (1, 4, 32))], ["y"], "RMSNorm (pow, mean, rsqrt) then linear"),
    ZooModel("rotary", RotaryModel, [Spec("x", (1, 2, 8, 16))], ["y"],
             "rotary embedding with in-graph position tables (arange, outer, cos, sin, rotate-half)"),
    ZooModel("embedding", EmbeddingModel, [Spec("ids", (1, 12), "int32")], ["y"],
             "nn.Embedding on int32 token ids (gather), tanh, linear", int_high={"ids": 50}),
    ZooModel("conv1d", Conv1dNet, [Spec("x", (1, 4, 32))], ["y"],
             "1-D convs (dilated, grouped, strided), batch norm 1d, elu, max pool 1d, tanh-GELU"),
    ZooModel("activations", Activations, [Spec("x", (2, 8))], ["y"],
             "16 activations: relu gelu silu tanh sigmoid elu leaky_relu softplus hardsigmoid "
             "hardtanh softsign mish selu relu6 atan erf"),
    ZooModel("elementwise", ElementwiseMath, [Spec("a", (3, 5)), Spec("b", (3, 5))], ["y"],
             "arithmetic, min/max, sqrt exp log pow rsqrt, clamp, where, sin cos, floor ceil, sign"),
    ZooModel("reductions", Reductions, [Spec("x", (2, 3, 7))],
             ["log_softmax", "sum", "amax", "mean", "argmax", "l2", "logsumexp"],
             "reductions, log-softmax, logsumexp, norm, int32 argmax output"),
    ZooModel("multi_output", MultiOutput, [Spec("x", (1, 6, 5, 6))], ["ab", "c", "padded", "nhwc"],
             "four outputs: chunk, strided slicing, constant pad, permute + flatten"),
    ZooModel("fp32_io", Fp32Io, [Spec("x", (2, 16), "fp32")], ["probs"],
             "fp32 input and output with casts around the fp16 body; layer norm, softmax"),
    ZooModel("group_instance_norm", GroupInstanceNorm, [Spec("x", (1, 8, 6, 6))], ["y"],
             "group norm (reshape + instance norm), instance norm, silu"),
    ZooModel("shape_ops", ShapeOps, [Spec("x", (2, 32)), Spec("y", (2, 4, 6))], ["y_out"],
             "reshape, transpose, batched matmul, unsqueeze, repeat (tile), index_select (gather)"),
    ZooModel("kv_cache_state", KvCacheStep, [Spec("x", (1, 1, 16))], ["y"],
             "Core ML states: slice_update into state caches, write_state / read_state, attention",
             states=[Spec("k_cache", (1, 6, 16)), Spec("v_cache", (1, 6, 16))]),
    ZooModel("extras", Extras, [Spec("x", (1, 8, 3, 4))], ["values", "indices"],
             "pixel_shuffle, flip, cumsum, torch.gather, topk (int32 indices output)"),
]

BY_NAME = {m.name: m for m in ZOO}


def _ct_dtype(dtype: str):
    return {"fp16": np.float16, "fp32": np.float32, "int32": np.int32}[dtype]


def convert(entry: ZooModel, folder: str) -> str:
    """Trace `entry`, convert it the way the issue prescribes, save `<folder>/<name>.mlpackage`."""
    import coremltools as ct

    module = entry.module()
    feeds = entry.sample()
    states = [ct.StateType(wrapped_type=ct.TensorType(shape=s.shape, dtype=_ct_dtype(s.dtype)), name=s.name)
              for s in entry.states]
    example = tuple(torch.from_numpy(feeds[s.name].astype(np.int64 if s.dtype == "int32" else np.float32))
                    for s in entry.inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # tracer and deprecation chatter
        traced = torch.jit.trace(module, example)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name=s.name, shape=s.shape, dtype=_ct_dtype(s.dtype)) for s in entry.inputs],
        outputs=[ct.TensorType(name=n) for n in entry.outputs],
        states=states or None,
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.iOS18,
    )
    path = os.path.join(folder, f"{entry.name}.mlpackage")
    mlmodel.save(path)
    return path


_CONVERTED: dict[str, str] = {}
_FOLDER: list[str] = []


def package(name: str, tmp_path_factory) -> str:
    """The converted .mlpackage of zoo entry `name`, converted once per test session (every
    test module shares the cache, whichever asks first)."""
    if name not in _CONVERTED:
        if not _FOLDER:
            _FOLDER.append(str(tmp_path_factory.mktemp("zoo")))
        _CONVERTED[name] = convert(BY_NAME[name], _FOLDER[0])
    return _CONVERTED[name]

