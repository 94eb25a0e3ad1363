"""Valid seed files the fuzz tests start from and mutate: a MIL folder with weights, a .mil
file, a compiled .mlmodelc, an .mlpackage (when coremltools is installed), .hwx programs
(the shared vectors when present, else a synthetic container), .npy inputs, and a llama2.c
checkpoint, tokenizer and Hugging Face folder (model_seeds)."""
from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

import anekit as ak
from anekit.models import llama2c
from anekit.models.tokenizer import Tokenizer

SHARED = Path(os.environ.get("ANEKIT_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def program():
    rng = np.random.default_rng(0)
    x = ak.input("x", (1, 4, 1, 8))
    w = rng.standard_normal((6, 4, 1, 1)).astype(np.float16)
    y = ak.relu(ak.conv(x, w, bias=np.arange(6, dtype=np.float16)))
    z = ak.softmax(ak.mul(y, 0.5), axis=1)
    return ak.program({"y": y, "z": z})


def has_coremltools() -> bool:
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def seeds() -> dict:
    """name -> path of each seed, built once per session in a private folder."""
    root = tempfile.mkdtemp(prefix="anekit-fuzz-seeds-")
    prog = program()
    out = {}
    out["folder"] = ak.save(prog, os.path.join(root, "model"))
    out["mil"] = os.path.join(out["folder"], "model.mil")
    compiled = os.path.join(root, "model.mlmodelc")
    shutil.copytree(out["folder"], compiled)
    with open(os.path.join(compiled, "metadata.json"), "w") as f:
        f.write('[{"defaultFunctionName": "main"}]')
    out["mlmodelc"] = compiled
    if has_coremltools():
        out["mlpackage"] = ak.save(prog, os.path.join(root, "model.mlpackage"))
    np.save(os.path.join(root, "x.npy"), np.random.default_rng(1).standard_normal((1, 4, 1, 8)).astype(np.float16))
    out["npy"] = os.path.join(root, "x.npy")
    out["root"] = root
    return out


MODEL_CONFIG = llama2c.Config(dim=16, hidden_dim=24, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=40, seq_len=8)


@functools.lru_cache(maxsize=1)
def model_seeds() -> dict:
    """Valid seed bytes: a llama2.c checkpoint, a tokenizer, and a Qwen2-style folder's two files."""
    root = tempfile.mkdtemp(prefix="anekit-fuzz-models-")
    llama2c.new(MODEL_CONFIG, seed=1).save(os.path.join(root, "m.bin"))
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [bytes([97 + i % 26]) * (1 + i // 26) for i in range(37)]
    Tokenizer(pieces, [0.0] * 40, max_token_length=3).save(os.path.join(root, "t.bin"))
    out = {k: open(os.path.join(root, f), "rb").read() for k, f in (("bin", "m.bin"), ("tok", "t.bin"))}
    config = dict(model_type="qwen2", vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8, rms_norm_eps=1e-6,
                  rope_theta=1e6, tie_word_embeddings=True)
    out["config"] = json.dumps(config).encode()
    try:
        import safetensors.numpy as st
    except ImportError:        # without the hf extra there is no folder to fuzz (its tests say so)
        return out
    rng = np.random.default_rng(2)
    shapes = {"model.embed_tokens.weight": (40, 16), "model.norm.weight": (16,),
              "model.layers.0.input_layernorm.weight": (16,), "model.layers.0.post_attention_layernorm.weight": (16,),
              "model.layers.0.self_attn.q_proj.weight": (16, 16), "model.layers.0.self_attn.k_proj.weight": (8, 16),
              "model.layers.0.self_attn.v_proj.weight": (8, 16), "model.layers.0.self_attn.o_proj.weight": (16, 16),
              "model.layers.0.self_attn.q_proj.bias": (16,), "model.layers.0.mlp.gate_proj.weight": (24, 16),
              "model.layers.0.mlp.up_proj.weight": (24, 16), "model.layers.0.mlp.down_proj.weight": (16, 24)}
    tensors = {k: (rng.standard_normal(s) * 0.1).astype(np.float16 if "proj" in k else np.float32)
               for k, s in shapes.items()}
    out["safetensors"] = st.save(tensors)
    return out


def hwx_seeds() -> list[bytes]:
    vectors = SHARED / "vectors" / "hwx"
    found = sorted(vectors.glob("*.hwx")) if vectors.is_dir() else []
    if found:
        return [p.read_bytes() for p in found[:4]]
    text = struct.pack("<8I", 0x1000, 0x20, 0x3C000000, 0, 1 << 25, 7, 0, 0)
    return [container_with_text(4, text), container_with_text(9, text)]


def container_with_text(subtype: int, text: bytes) -> bytes:
    """Header, one __TEXT segment holding __text, nothing else."""
    text_at = 32 + 152
    section = struct.pack("<16s16s2Q8I", b"__text", b"__TEXT", 0x30000000, len(text), text_at, 4, 0, 0, 0, 0, 0, 0)
    segment = struct.pack("<2I16s4Q4I", 0x19, 152, b"__TEXT", 0x30000000, len(text), text_at, len(text), 5, 5, 1, 0)
    header = struct.pack("<8I", 0xBEEFFACE, 0x80, subtype, 2, 1, 152, 0, 0)
    return header + segment + section + text


def copy_seed(name: str, work: str) -> str:
    src = seeds()[name]
    dst = os.path.join(work, os.path.basename(src))
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst
