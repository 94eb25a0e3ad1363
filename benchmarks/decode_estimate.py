"""Cost-model estimates (ak.estimate) of decode tokens/s for LLMs people run on the ANE, fp16 and
compressed, printed beside the published measurements they can be checked against.

    python benchmarks/decode_estimate.py [--json]

Method. Each published figure is priced as its own setup runs it (`setup`, see PUBLISHED):
"one-program" is anekit's decode program (anekit.models.decoder.build_decode: one token, KV cache
of `context` positions as iOS 18 state where the chip's dialect has it, else as I/O buffers), one
dispatch per token, priced by ak.cost.estimate_decode (ops the engine cannot take, e.g. a
classifier over 151936 words, on the CPU roofline of anekit.cost.host); "aneforge" is the same
program on the e5rt route; "window" is Core ML's chunked 64-token-window pipeline, priced by
ak.cost.estimate_step over its chunk programs (window_pipeline_tok_s); "cpu-sgemv" is a decode
with every weight read by the CPU (f32 sgemv from one thread, anekit.cost.host_ms on one cluster). Weights are shape-only
(anekit.quantization.placeholder_weight: zero-stride views, so a 7B model costs no memory; the
estimator reads shapes, dtypes and weight formats only, and tests/test_quantize.py checks
placeholders price exactly like real weights). The cost model was NOT fitted to these figures;
the ratio is reported as it comes out.

Published figures (the sources, conditions as stated there):
- Qwen2.5-0.5B-Instruct, 82 tok/s decode on an M4 Pro: maderix/ANE inference README; a later
  revision says ~60 tok/s on an M4 Max. The README describes 169 baked-weight 1x1 conv kernels on
  the private _ANEClient route, but its code (qwen_ane_infer.h, both stored revisions) has
  `#define USE_ANE_PROJECTIONS 0` and its "Known Limitations" say the projections run on the CPU
  (the kernels compile but give wrong output). Both figures are priced as that code runs:
  "cpu-sgemv" (cpu_sgemv_tok_s below); "ane-kernels" prints what the kernels would cost.
- Qwen3-0.6B, ~75 tok/s decode: sbryngelson/ANEForge docs/llm.md (Python, private aned/e5rt route,
  no Core ML): fp16 weights, the 28 layers as one ANE program with the KV cache resident on the
  engine (share_buffer), the lm_head on the host (the vocabulary passes the engine's axis limit).
  The page does not name the chip; the project states its measurements are "on an M5 Pro" and
  that it is verified on the M5 Pro and M1 Max, so the M5 Pro is assumed.
- Llama-2-7B, smpanaro/coreml-llm-cli README (main branch, macOS 14; Core ML on the ANE, model
  smpanaro/Llama-2-7b-coreml, ~4 GB, i.e. 4-bit palettized): 7.02 +- 0.11 tok/s on an M1 Max; and
  antmikinka/AppleNeuralEngine-Kit README (a fork with the same ModelPipeline.swift): 13.92 +- 0.5
  tok/s on an M3 Max. Both run the 64-token-window pipeline (WINDOW below). The comparable
  estimate is the lut4 one.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import anekit as ak
from anekit import ir
from anekit.models.decoder import Arch, build_decode
# The decoder's own layer math, so that the window pipeline below computes exactly what a decode
# program does, only over a 64-token window (private helpers: this benchmark models a published
# setup, not an API).
from anekit.models.decoder import _attention, _conv, _ffn, _qkv, _rmsnorm
from anekit.quantization import placeholder_weight

# name: (Arch, tied classifier?, qkv biases?)
MODELS = {
    "Stories15M": (Arch(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=32000,
                        seq_len=256), True, False),
    "Qwen2.5-0.5B": (Arch(dim=896, hidden_dim=4864, n_layers=24, n_heads=14, n_kv_heads=2, vocab_size=151936,
                          seq_len=512, head_dim=64, rope_base=1e6), True, True),
    "Qwen3-0.6B": (Arch(dim=1024, hidden_dim=3072, n_layers=28, n_heads=16, n_kv_heads=8, vocab_size=151936,
                        seq_len=512, head_dim=128, rope_base=1e6, qk_norm=True), True, False),
    "Llama-2-7B": (Arch(dim=4096, hidden_dim=11008, n_layers=32, n_heads=32, n_kv_heads=32, vocab_size=32000,
                        seq_len=512), False, False),
}

# (model, chip, published tok/s or None, format the published setup used, setup, source)
PUBLISHED = [
    ("Stories15M", "M4", None, "fp16", "one-program", "no published ANE figure"),
    ("Qwen2.5-0.5B", "M4 Pro", 82.0, "fp32", "cpu-sgemv",
     "maderix/ANE inference README (USE_ANE_PROJECTIONS 0: projections on the CPU)"),
    ("Qwen2.5-0.5B", "M4 Max", 60.0, "fp32", "cpu-sgemv", "maderix/ANE inference README, later revision (same code)"),
    ("Qwen3-0.6B", "M5 Pro", 75.0, "fp16", "aneforge",
     "ANEForge docs/llm.md (e5rt route; chip: the project's M5 Pro, assumed)"),
    ("Llama-2-7B", "M1 Max", 7.02, "lut4", "window", "smpanaro/coreml-llm-cli README (Core ML)"),
    ("Llama-2-7B", "M3 Max", 13.92, "lut4", "window",
     "antmikinka/AppleNeuralEngine-Kit README (fork of coreml-llm-cli, same pipeline)"),
]
FORMATS = ("fp16", "int8", "lut4")


def shape_only_weights(arch: Arch, fmt: str, qkv_bias: bool) -> dict:
    """Decoder weights whose large matrices are placeholders stored as `fmt` (small vectors real)."""
    d, h, kv, hd = arch.dim, arch.hidden_dim, arch.kv_dim, arch.hd
    q = arch.n_heads * hd

    def w(out, inp):
        return placeholder_weight((out, inp, 1, 1), fmt)

    ones = np.ones
    layers = []
    for _ in range(arch.n_layers):
        layer = dict(attn_norm=ones(d, np.float32), ffn_norm=ones(d, np.float32), wq=w(q, d), wk=w(kv, d),
                     wv=w(kv, d), wo=w(d, q), w1=w(h, d), w2=w(d, h), w3=w(h, d))
        if qkv_bias:
            layer.update(bq=np.zeros(q, np.float32), bk=np.zeros(kv, np.float32), bv=np.zeros(kv, np.float32))
        if arch.qk_norm:
            layer.update(q_norm=ones(hd, np.float32), k_norm=ones(hd, np.float32))
        layers.append(layer)
    return dict(final_norm=ones(d, np.float32), wcls=w(arch.vocab_size, d), layers=layers)


# --- the published setups ------------------------------------------------------------------

# smpanaro/coreml-llm-cli (main branch, "Model Version 2"), and the fork that measured the M3 Max
# (antmikinka/AppleNeuralEngine-Kit, same Sources/Kit/ModelPipeline.swift): every generated token runs
# the whole model on a 64-token input window (tensors (B, C, 1, 64)) against a KV cache of the
# other 448 positions passed in as inputs; the model is split in Core ML chunks: one for embedding,
# mask and RoPE tables (computeUnits .cpuOnly), blocks 3 per chunk, one for the LM head; each chunk
# returns only the new 64 positions of K and V, and a separate cache model merges them
# asynchronously once per 64 tokens (off the critical path, not priced).
WINDOW, WINDOW_CACHE, BLOCKS_PER_CHUNK = 64, 448, 3


def _window_blocks(arch: Arch, layers: list) -> ir.Program:
    """One block chunk of the window pipeline: hidden states [1, dim, 1, 64] and each layer's cache
    [1, heads, hd, 448] in, hidden states and the new 64 positions of K and V out."""
    s, t = WINDOW, WINDOW_CACHE
    x = ir.input("x", (1, arch.dim, 1, s))
    cos, sin = (ir.input(n, (1, 1, arch.hd // 2, s)) for n in ("cos", "sin"))
    mask = ir.input("mask", (1, 1, s, s + t))
    outs = {}
    for i, w in enumerate(layers):
        q, k, v = _qkv(_rmsnorm(x, w["attn_norm"], arch.norm_eps), w, arch, cos, sin)
        kc, vc = (ir.input(f"{n}_cache{i}", (1, arch.n_kv_heads, arch.hd, t)) for n in ("k", "v"))
        att = _attention(q, ak.concat([kc, k], axis=3), ak.concat([vc, v], axis=3), mask, arch)
        x = _ffn(x + _conv(att, w["wo"]), w, arch)
        outs[f"k{i}"], outs[f"v{i}"] = k, v
    return ir.program({"x_out": x, **outs})


def _window_head(arch: Arch, weights: dict, tiles: int = 2) -> ir.Program:
    """The LM-head chunk on the 64-token window; the vocabulary split in `tiles` convolutions
    (32000 outputs pass the M1's per-axis limit in one piece; the CLI reads logits in chunks)."""
    x = ir.input("x", (1, arch.dim, 1, WINDOW))
    h = _rmsnorm(x, weights["final_norm"], arch.norm_eps)
    rows = arch.vocab_size // tiles
    return ir.program({f"logits{i}": _conv(h, placeholder_weight((rows, arch.dim, 1, 1), "fp16"))
                       for i in range(tiles)})


def window_pipeline_tok_s(model: str, chip: str, fmt: str) -> dict:
    """Tokens/s of the chunked 64-token-window pipeline: each token runs every block chunk and the
    head chunk once, one dispatch each (estimate_step). The head is fp16 (the ~4 GB download is
    4-bit blocks plus fp16 embedding and head); the CPU embedding chunk is not priced."""
    arch, _, bias = MODELS[model]
    w = shape_only_weights(arch, fmt, bias)
    full, rest = divmod(arch.n_layers, BLOCKS_PER_CHUNK)
    progs = {"blocks": _window_blocks(arch, w["layers"][:BLOCKS_PER_CHUNK]), "head": _window_head(arch, w)}
    calls = {"blocks": full, "head": 1}
    if rest:
        progs["last_blocks"] = _window_blocks(arch, w["layers"][:rest])
        calls["last_blocks"] = 1
    step = ak.cost.estimate_step(progs, chip, calls=calls)
    wbytes = sum(n * sum(r.weight_bytes for r in e.ops) for n, e in step.parts.values())
    return {"tok_s": 1e3 / step.ms, "us": step.ms * 1e3, "weight_mb": wbytes / 1e6, "off_engine_ms": 0.0,
            "cache": f"io, {WINDOW}-token window", "dispatches": sum(calls.values())}


# maderix/ANE inference/ (both revisions of qwen_ane_infer.h): `#define USE_ANE_PROJECTIONS 0`, and the
# README's "Known Limitations" says so ("CPU projections only": the baked-weight kernels compile but
# give wrong output, so the toggle defaults to the CPU). The 169 kernels are compiled at start-up
# and never evaluated: every projection is one `cblas_sgemv` over f32 weights (convert_weights.py
# writes f32), the tied LM head one more sgemv over the 151936 x 896 f32 embedding, attention,
# norms, RoPE and SiLU vDSP/NEON loops, all issued in sequence from one thread.
def _decoder_params(arch: Arch, tied: bool, bias: bool) -> int:
    """Weights one decode token reads: every layer's projections (+ biases) and the classifier."""
    d, h, kv, q = arch.dim, arch.hidden_dim, arch.kv_dim, arch.n_heads * arch.hd
    layer = q * d + 2 * kv * d + d * q + 3 * h * d + (q + 2 * kv if bias else 0)
    return arch.n_layers * layer + arch.vocab_size * d


def _attention_work(arch: Arch, elem: int) -> tuple[float, float]:
    """(flops, bytes) of one token's attention over a full cache of `arch.seq_len` positions."""
    t = arch.seq_len
    flops = arch.n_layers * 2 * 2 * arch.n_heads * arch.hd * t            # q.k and the weighted sum of v
    return flops, arch.n_layers * 2 * arch.kv_dim * t * elem              # K and V read once


def cpu_sgemv_tok_s(model: str, chip: str, fmt: str = "fp32") -> dict:
    """The maderix/ANE decode as its code runs it: the whole token on the CPU, fp32 weights, one
    thread (so one performance cluster's matrix unit: anekit.cost.host_ms(clusters=1)). `fmt` is
    accepted for symmetry; the published code has f32 weights only."""
    arch, tied, bias = MODELS[model]
    n = _decoder_params(arch, tied, bias)
    af, ab = _attention_work(arch, 4)
    ms = ak.cost.host_ms(2 * n + af, 4 * n + ab, chip, clusters=1)
    return {"tok_s": 1e3 / ms, "us": ms * 1e3, "weight_mb": 4 * n / 1e6, "off_engine_ms": ms, "cache": "host f32",
            "dispatches": 0}


def ane_kernels_tok_s(model: str, chip: str, fmt: str = "fp16") -> dict:
    """What the same code would do with USE_ANE_PROJECTIONS 1 (never measured by anyone): each of a
    layer's 7 projections one baked-weight 1x1 conv program on one position, evaluated on its own
    (ane_write_input, ane_eval, ane_read_output, in sequence: no pipelining), 7 per layer; the LM
    head stays a CPU sgemv in that code path, and so do attention and the elementwise work."""
    arch, tied, bias = MODELS[model]
    d, h, kv, q = arch.dim, arch.hidden_dim, arch.kv_dim, arch.n_heads * arch.hd
    shapes = {"q": (q, d), "k": (kv, d), "v": (kv, d), "o": (d, q), "gate": (h, d), "up": (h, d), "down": (d, h)}
    progs = {}
    for name, (out, inp) in shapes.items():
        x = ir.input("x", (1, inp, 1, 1))
        progs[name] = ir.program({"y": _conv(x, placeholder_weight((out, inp, 1, 1), fmt))})
    step = ak.cost.estimate_step(progs, chip, calls={k: arch.n_layers for k in progs})
    head = arch.vocab_size * d
    af, ab = _attention_work(arch, 4)
    cpu = ak.cost.host_ms(2 * head + af, 4 * head + ab, chip, clusters=1)
    ms = step.ms + cpu
    return {"tok_s": 1e3 / ms, "us": ms * 1e3, "engine_ms": step.ms, "off_engine_ms": cpu,
            "dispatches": 7 * arch.n_layers, "cache": "host f32"}


def estimate_tok_s(model: str, chip: str, fmt: str, setup: str = "one-program") -> dict:
    """tok/s of `model` on `chip` with its large weights stored as `fmt`, for a setup: "one-program"
    (anekit's own decode program, one dispatch per token, standard route), "aneforge" (the same
    program on ANEForge's e5rt route: the 28 layers in one program, the KV cache resident as state,
    the classifier on the host) or "window" (the Core ML 64-token-window pipeline above)."""
    if setup == "window":
        return window_pipeline_tok_s(model, chip, fmt)
    if setup == "cpu-sgemv":
        return cpu_sgemv_tok_s(model, chip, fmt)
    if setup == "ane-kernels":
        return ane_kernels_tok_s(model, chip, fmt)
    arch, _, bias = MODELS[model]
    c = ak.targets.get(chip)
    state = c.dialect == "ios18"                       # as Decoder.generate picks the cache
    prog = build_decode(arch, shape_only_weights(arch, fmt, bias), state=state)
    dec = ak.cost.estimate_decode(prog, chip, route="e5rt" if setup == "aneforge" else "standard")
    est = dec.program
    wbytes = sum(r.weight_bytes for r in est.ops)
    return {"tok_s": dec.tokens_per_s, "us": dec.ms_per_token * 1e3, "bound": est.bound, "weight_mb": wbytes / 1e6,
            "off_engine_ms": dec.off_engine_ms, "cache": "state" if state else "io"}


HOST_SETUPS = ("cpu-sgemv",)     # setups that run no engine program: weight formats do not apply
# Contrasts printed beside a row: anekit's own one-program decode, and for the maderix/ANE rows what
# that code would do with its ANE kernels switched on (nobody has measured it).
CONTRASTS = {"cpu-sgemv": ("one-program", "ane-kernels"), "aneforge": ("one-program",), "window": ("one-program",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for model, chip, pub, pub_fmt, setup, source in PUBLISHED:
        row = {"model": model, "chip": chip, "published": pub, "published_format": pub_fmt, "source": source,
               "context": MODELS[model][0].seq_len, "setup": setup}
        row["est"] = estimate_tok_s(model, chip, pub_fmt, setup)
        if setup not in HOST_SETUPS:
            for fmt in FORMATS:
                row[fmt] = estimate_tok_s(model, chip, fmt, setup)
        row["contrast"] = {c: estimate_tok_s(model, chip, "fp16" if c != "one-program" or pub_fmt not in FORMATS
                                             else pub_fmt, c) for c in CONTRASTS.get(setup, ())}
        row["ratio"] = row["est"]["tok_s"] / pub if pub else None
        row["compared"] = pub_fmt
        rows.append(row)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    print("ak.estimate of each published decode setup (cost model, not measured), beside the published figures")
    print(f"{'model':13} {'chip':7} {'setup':11} {'ctx':>4} {'est':>7} {'fp16':>7} {'int8':>7} {'lut4':>7}  "
          f"{'published':>9}  {'est/pub':>12}  contrasts; source")
    for r in rows:
        pub = f"{r['published']:.2f}" if r["published"] else "-"
        ratio = f"{r['ratio']:.2f} ({r['compared']})" if r["ratio"] else "-"
        fmts = " ".join(f"{r[f]['tok_s']:7.1f}" if f in r else f"{'-':>7}" for f in FORMATS)
        con = ", ".join(f"{k} {v['tok_s']:.1f}" for k, v in r["contrast"].items())
        print(f"{r['model']:13} {r['chip']:7} {r['setup']:11} {r['context']:4d} {r['est']['tok_s']:7.1f} {fmts}  "
              f"{pub:>9}  {ratio:>12}  {con + '; ' if con else ''}{r['source']}")
    print("weights read per token (MB, in the published setup's format): " + "; ".join(
        f"{m} {r['est']['weight_mb']:.0f}" for m, r in {r['model']: r for r in rows}.items()))


if __name__ == "__main__":
    main()
