"""A Llama-family decoder (llama2.c, Llama, Qwen2/3, Mistral) as anekit programs: full-sequence
logits, and generation with a KV cache (one prefill program, one decode program).

Layout (guide ch. 17): activations [1, C, 1, S], linear layers as 1x1 convs, attention
per head as [1, heads, head_dim, S]. Token embedding and sampling stay on the CPU, as in the seed
projects; everything between (norms, RoPE, attention, FFN, final norm, classifier) is one program.

RoPE uses the rotate-half pairing (dimension i with i + head_dim/2): llama2.c's interleaved pairs
are brought to it by permuting the rows of wq and wk per head at load (attention scores are
unchanged by a permutation shared by q and k), which is what Hugging Face's conversion does too.
cos / sin of the positions are inputs, so the decode program serves every position.

The KV cache of the decode program is either iOS 18 state (`state=True` inputs read with
read_state and written with coreml_update_state) or plain I/O buffers for backends without
state. The write at a runtime position is `cache * (1 - onehot) + new * onehot`, exact in fp16,
so no op needs a compile-time position (slice_update would).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import UsageError
from ..ir.fp16cast import to_fp16
from .. import concat, conv, coreml_update_state, inverse, matmul, maximum, read_state, rsqrt, silu, slice_by_size, tile
from ..preflight import ranges
from ..preflight.ane_route import pad_runtime_matmuls_for
from .sampling import Sampler
from .speed import estimate_generation
from .. import dialects
from ..quantization import DEFAULT_MIN_SIZE, FORMATS, placeholder_weight, quantize
from ..runtime import compile as ak_compile
from ..runtime import resolve_target

MASK = -1e4          # additive mask; finite so fp16 arithmetic stays in range (softmax -> 0)
NUMERICS = ("profile", "strict", "exact")
NORM_FLOOR = 2.0 ** -7   # RMS norm scale floor: 1 / floor^2 = 16384, so eps / floor^2 stays finite in fp16


@dataclass(frozen=True)
class Arch:
    """The shapes and variants a decoder graph needs."""
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    head_dim: int = 0             # 0: dim // n_heads
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    qk_norm: bool = False         # Qwen3: RMSNorm of q and k per head before RoPE
    # RoPE frequency scaling: () none; ("linear", factor); ("llama3", factor, low_freq_factor,
    # high_freq_factor, original context) as Llama 3.1+ checkpoints declare it.
    rope_scaling: tuple = ()

    @property
    def hd(self) -> int:
        return self.head_dim or self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.hd


def rope_frequencies(arch: Arch) -> np.ndarray:
    """Angular frequency of each rotated pair i: base^(-2i/head_dim), then the checkpoint's
    scaling. "linear" divides every frequency by the factor (position interpolation);
    "llama3" divides only those whose wavelength 2 pi / f passes original_context /
    low_freq_factor, keeps those below original_context / high_freq_factor, and blends
    the two in between by where original_context / wavelength falls between the factors."""
    freq = arch.rope_base ** (-np.arange(arch.hd // 2, dtype=np.float64) * 2 / arch.hd)
    kind, *p = arch.rope_scaling or ("default",)
    if kind == "linear":
        return freq / p[0]
    if kind == "llama3":
        factor, low, high, context = p
        wavelength = 2 * np.pi / freq
        blend = np.clip((context / wavelength - low) / (high - low), 0.0, 1.0)
        return freq * (blend + (1.0 - blend) / factor)
    return freq


def rope_tables(arch: Arch, positions) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [1, 1, head_dim/2, len(positions)] of each pair's angle at each position."""
    half = arch.hd // 2
    ang = np.outer(rope_frequencies(arch), np.asarray(positions, dtype=np.float64))
    return np.cos(ang).reshape(1, 1, half, -1), np.sin(ang).reshape(1, 1, half, -1)


@dataclass
class GenerationStats:
    """Timing of the last `generate` call (compute only, not the consumer's time)."""
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    compile_s: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s else 0.0


# --- graph ---------------------------------------------------------------------------------

def map_matrices(weights: dict, fn) -> dict:
    """`weights` (a decoder's weight dict) with fn applied to the classifier and to every layer's
    entries (fn leaves vectors as they are); the embedding stays on the host, as it is."""
    return {**weights, "wcls": fn(weights["wcls"]),
            "layers": [{k: fn(v) for k, v in layer.items()} for layer in weights["layers"]]}


def shape_only(fmt: str | None):
    """fn for map_matrices: each matrix as a placeholder of its shape (anekit.quantization:
    zero-stride, priced like the real weight), stored as `fmt` where ak.quantize would compress it
    (at least its min_size elements)."""
    def matrix(w):
        w = np.asarray(w)
        if w.ndim != 2:
            return w
        stored = fmt if fmt is not None and w.size >= DEFAULT_MIN_SIZE else "fp16"
        return placeholder_weight((w.shape[0], w.shape[1], 1, 1), stored)
    return matrix


def _conv(x, w, b: np.ndarray | None = None):
    """A linear layer on [1, C, 1, S] as a 1x1 conv (the ANE's fast path, guide ch. 17). `w` is an
    array [out, in] or a prebuilt weight tensor [out, in, 1, 1] (e.g. a shape-only placeholder
    from anekit.quantization for cost estimates)."""
    if not isinstance(w, ir.Tensor):
        # kept as it is when it already is a read-only array of the graph's dtype (Decoder.weights_as):
        # the programs of one model then share their weights instead of copying them each
        w = ir.make_const(w if w.ndim == 4 else w.reshape(w.shape[0], w.shape[1], 1, 1), x.dtype, copy=False)
    return conv(x, w, bias=b)


def _rmsnorm(x, w: np.ndarray, eps: float, axis: int = 1):
    """x / sqrt(mean(x^2) + eps) * w over `axis`, in the scaled form the engine can hold: with
    s = 1 / max(max|x|, NORM_FLOOR), (x s) / sqrt(mean((x s)^2) + eps s^2) is the same value, but
    no square exceeds 1. Squaring x itself overflows fp16 from |x| = 256 on (guide ch. 3), and
    a trained model's residual stream can hold such values (a sum of squares would overflow
    sooner still, from a vector norm of 256). The floor keeps s and eps s^2 finite for an all-zero
    vector; any s > 0 gives the same value, so it costs no accuracy."""
    shape = [1] * x.rank
    shape[axis] = -1
    s = inverse(maximum(abs(x).max(axes=[axis], keep_dims=True), NORM_FLOOR), epsilon=0.0)
    xs = x * s
    inv = rsqrt((xs * xs).mean(axes=[axis], keep_dims=True) + s * s * eps, epsilon=0.0)
    return xs * inv * w.reshape(shape)


def _rope(t, cos, sin):
    """Rotate-half RoPE on t [1, heads, hd, S]: (lo, hi) -> (lo cos - hi sin, lo sin + hi cos)."""
    _, h, hd, s = t.shape
    lo = slice_by_size(t, begin=[0, 0, 0, 0], size=[1, h, hd // 2, s])
    hi = slice_by_size(t, begin=[0, 0, hd // 2, 0], size=[1, h, hd // 2, s])
    return concat([lo * cos - hi * sin, lo * sin + hi * cos], axis=2)


def _expand_heads(kv, rep: int):
    """[1, kv_heads, hd, T] -> [1, kv_heads * rep, hd, T], query head h reading kv head h // rep."""
    if rep == 1:
        return kv
    _, n, hd, t = kv.shape
    return tile(kv.reshape(1, n, 1, hd * t), reps=[1, 1, rep, 1]).reshape(1, n * rep, hd, t)


def _attention(q, k, v, mask, arch: Arch):
    """q [1, H, hd, S] against k, v [1, KV, hd, T] with additive mask [1, 1, S, T]."""
    rep = arch.n_heads // arch.n_kv_heads
    k, v = _expand_heads(k, rep), _expand_heads(v, rep)
    scores = matmul(q, k, transpose_x=True) * (1.0 / np.sqrt(arch.hd)) + mask   # [1, H, S, T]
    probs = scores.softmax(axis=-1)
    att = matmul(v, probs, transpose_y=True)                                    # [1, H, hd, S]
    return att.reshape(1, arch.n_heads * arch.hd, 1, q.shape[3])


def _qkv(h, w: dict, arch: Arch, cos, sin):
    s = h.shape[3]
    q = _conv(h, w["wq"], w.get("bq")).reshape(1, arch.n_heads, arch.hd, s)
    k = _conv(h, w["wk"], w.get("bk")).reshape(1, arch.n_kv_heads, arch.hd, s)
    v = _conv(h, w["wv"], w.get("bv")).reshape(1, arch.n_kv_heads, arch.hd, s)
    if arch.qk_norm:
        q, k = _rmsnorm(q, w["q_norm"], arch.norm_eps, axis=2), _rmsnorm(k, w["k_norm"], arch.norm_eps, axis=2)
    return _rope(q, cos, sin), _rope(k, cos, sin), v


def _ffn(x, w: dict, arch: Arch):
    h = _rmsnorm(x, w["ffn_norm"], arch.norm_eps)
    return x + _conv(silu(_conv(h, w["w1"])) * _conv(h, w["w3"]), w["w2"])


def _head(x, weights: dict, arch: Arch):
    return _conv(_rmsnorm(x, weights["final_norm"], arch.norm_eps), weights["wcls"])


def _for_target(outs: dict, target) -> dict:
    """The graph behind `outs` as `target` runs it: on M1 the attention matmuls (two runtime
    operands) over a head_dim or a length that is not a multiple of 32 are zero-padded along
    it, which leaves every output as it was (preflight/ane_route.py)."""
    return outs if target is None else pad_runtime_matmuls_for(outs, target)


def build_prefill(arch: Arch, weights: dict, seq: int, dtype: str = "fp16", target=None) -> ir.Program:
    """Causal forward over `seq` tokens: inputs x [1, dim, 1, seq] (embedded tokens), cos / sin
    [1, 1, hd/2, seq]; outputs logits [1, vocab, 1, seq] and each layer's k / v
    [1, kv_heads, hd, seq] (RoPE applied to k) to seed the cache. `target` (a chip record or
    name, None for any) pads the attention matmuls where that chip needs it."""
    x = ir.input("x", (1, arch.dim, 1, seq), dtype)
    cos, sin = (ir.input(n, (1, 1, arch.hd // 2, seq), dtype) for n in ("cos", "sin"))
    mask = np.triu(np.full((seq, seq), MASK, np.float32), k=1).reshape(1, 1, seq, seq)
    outs = {}
    for i, w in enumerate(weights["layers"]):
        q, k, v = _qkv(_rmsnorm(x, w["attn_norm"], arch.norm_eps), w, arch, cos, sin)
        x = _ffn(x + _conv(_attention(q, k, v, mask, arch), w["wo"], w.get("bo")), w, arch)
        outs[f"k{i}"], outs[f"v{i}"] = k, v
    return ir.program(_for_target({"logits": _head(x, weights, arch), **outs}, target))


def build_decode(arch: Arch, weights: dict, dtype: str = "fp16", state: bool = True, target=None) -> ir.Program:
    """One token at a runtime position: inputs x [1, dim, 1, 1], cos / sin [1, 1, hd/2, 1],
    mask [1, 1, 1, T] (0 up to the position, MASK after), onehot [1, 1, 1, T] (1 at the
    position) and the caches k_cache{i} / v_cache{i} [1, kv_heads, hd, T], T = seq_len.
    Output logits [1, vocab, 1, 1]; with state=False also the updated caches k{i} / v{i}.
    `target` as in build_prefill."""
    t = arch.seq_len
    x = ir.input("x", (1, arch.dim, 1, 1), dtype)
    cos, sin = (ir.input(n, (1, 1, arch.hd // 2, 1), dtype) for n in ("cos", "sin"))
    mask = ir.input("mask", (1, 1, 1, t), dtype)
    onehot = ir.input("onehot", (1, 1, 1, t), dtype)
    keep = 1.0 - onehot
    outs = {}
    for i, w in enumerate(weights["layers"]):
        q, k, v = _qkv(_rmsnorm(x, w["attn_norm"], arch.norm_eps), w, arch, cos, sin)
        caches = []
        for name, new in (("k", k), ("v", v)):
            buf = ir.input(f"{name}_cache{i}", (1, arch.n_kv_heads, arch.hd, t), dtype, state=state)
            old = read_state(buf) if state else buf
            cache = old * keep + new * onehot
            if state:
                cache = coreml_update_state(buf, cache)
            else:
                outs[f"{name}{i}"] = cache
            caches.append(cache)
        x = _ffn(x + _conv(_attention(q, caches[0], caches[1], mask, arch), w["wo"], w.get("bo")), w, arch)
    return ir.program(_for_target({"logits": _head(x, weights, arch), **outs}, target))


# --- declared input ranges (for ak.check's fp16 range analysis) ----------------------------

def declare_ranges(prog: ir.Program, embed: np.ndarray) -> ir.Program:
    """Declare the ranges a prefill or decode program's inputs take in use, in place (returns
    `prog`): x within the embedding table's min..max, cos / sin in [-1, 1], mask in [MASK, 0],
    onehot in [0, 1], and each KV cache within the bound of the k / v written into it (the
    cache starts at zeros and only ever holds those values: the same per-token function in the
    prefill and decode programs). A layer's new k / v depends on the caches of the layers before
    it only, so one walk settles every cache bound, visiting a cache's readers after its source."""
    fn = prog.main
    lo, hi = float(np.min(embed)), float(np.max(embed))
    fixed = {"x": (lo, hi), "cos": (-1.0, 1.0), "sin": (-1.0, 1.0), "mask": (MASK, 0.0), "onehot": (0.0, 1.0)}
    for t in fn.inputs:
        if t.name in fixed:
            t.range = fixed[t.name]
    written = _cache_sources(fn)
    caches = {id(t): t for t in fn.inputs if id(t) in written}
    for t in caches.values():
        t.range = None
    res = ranges.start(fn)
    for op in _sources_first(fn, written):
        for t in op.inputs.values():
            if isinstance(t, ir.Tensor) and id(t) in caches and t.range is None:
                b = res.of(written[id(t)])
                if ranges.bounded(b):   # a source the analysis cannot bound leaves the cache undeclared
                    t.range = (min(b[0], 0.0), max(b[1], 0.0))
                    res.intervals[id(t)] = t.range
        ranges.step(op, res)
    return prog


def _sources_first(fn, written: dict) -> list:
    """fn's ops in an order where every op comes after its inputs' producers and, for a cache
    input, after the producer of the tensor written into that cache."""
    producer = {id(o): op for op in fn.ops for o in op.outputs}
    done, order = set(), []
    for root in fn.ops:
        stack = [(root, False)]
        while stack:
            op, ready = stack.pop()
            if id(op) in done:
                continue
            if ready:
                done.add(id(op))
                order.append(op)
                continue
            stack.append((op, True))
            for t in op.inputs.values():
                for u in (t if isinstance(t, tuple) else (t,)):
                    for dep in (u, written.get(id(u))):
                        p = None if dep is None else producer.get(id(dep))
                        if p is not None and id(p) not in done:
                            stack.append((p, False))
    return order


def _cache_sources(fn) -> dict:
    """id(cache input) -> the new k / v tensor build_decode writes into it
    (`old * keep + new * onehot`, old the input or read_state of it)."""
    caches = {id(t): t for t in fn.inputs if t.name.startswith(("k_cache", "v_cache"))}
    old = dict(caches)
    kept, out = {}, {}
    for op in fn.ops:
        ins = op.inputs
        if op.type == "read_state" and id(ins["input"]) in caches:
            old[id(op.outputs[0])] = ins["input"]
        elif op.type == "mul" and id(ins["x"]) in old:
            kept[id(op.outputs[0])] = old[id(ins["x"])]
        elif op.type == "add" and id(ins["x"]) in kept:
            written = ins["y"].op          # new * onehot
            if written is not None and written.type == "mul":
                out[id(kept[id(ins["x"])])] = written.inputs["x"]
    return out


# --- the model -----------------------------------------------------------------------------

class Decoder:
    """A decoder-only language model whose forward passes run as anekit programs.

    `weights`: embed [vocab, dim], final_norm [dim], wcls [vocab, dim] and `layers`, a list of
    dicts with attn_norm, wq [H*hd, dim], wk / wv [KV*hd, dim], wo [dim, H*hd], ffn_norm,
    w1 / w3 [hidden, dim], w2 [dim, hidden] (+ bq/bk/bv/bo, q_norm/k_norm by variant), float32,
    q / k rows in rotate-half order.

    `quantize` ("int8", "lut4", "lut6" or None): store the programs' large weights compressed
    (anekit.quantization; the embedding table stays on the CPU in float32).
    """

    def __init__(self, arch: Arch, weights: dict, quantize: str | None = None, shapes_only: bool = False):
        self.arch = arch
        self.shapes_only = shapes_only      # placeholder weights (llama2c / hf `skeleton`): estimates only
        self.graph_weights = weights
        self.stats = GenerationStats()
        self._compiled: dict[tuple, object] = {}
        self._quant_cache: dict = {}       # compressed arrays, shared by all programs built
        self._as_dtype: dict[str, dict] = {}   # weights_as: the weights in a graph dtype, shared
        self.quantize = quantize

    @property
    def quantize(self) -> str | None:
        return self._quantize

    @quantize.setter
    def quantize(self, fmt: str | None) -> None:
        if fmt is not None and fmt not in FORMATS:
            raise UsageError(f"quantize must be one of {', '.join(FORMATS)} or None, got {fmt!r}")
        self._quantize = fmt

    def _compress(self, prog: ir.Program) -> ir.Program:
        if self._quantize is None:
            return prog
        return quantize(prog, self._quantize, cache=self._quant_cache)

    @property
    def vocab_size(self) -> int:
        return self.arch.vocab_size

    # --- checks --------------------------------------------------------------------------

    def check_tokens(self, tokens, what: str = "tokens") -> list[int]:
        try:
            ids = [int(t) for t in tokens]
        except (TypeError, ValueError):
            raise UsageError(f"{what} must be a sequence of integer token ids") from None
        if not ids:
            raise UsageError(f"{what} is empty: give at least one token id")
        bad = [t for t in ids if not 0 <= t < self.arch.vocab_size]
        if bad:
            raise UsageError(f"{what}: unknown token id {bad[0]} (the vocabulary is 0..{self.arch.vocab_size - 1})")
        if len(ids) > self.arch.seq_len:
            raise UsageError(f"{what}: {len(ids)} tokens exceed the model's context of {self.arch.seq_len}")
        return ids

    # --- programs ------------------------------------------------------------------------

    def _exe(self, key: tuple, build, numerics: str, target, backend: str):
        """The executable for `key`, compiled on first use; returns (exe, seconds spent compiling)."""
        if numerics not in NUMERICS:
            raise UsageError(f"numerics must be one of {', '.join(NUMERICS)}, got {numerics!r}")
        if self.shapes_only:
            raise UsageError("this model holds shapes only (a skeleton, for estimates): load its weights "
                             "with llama2c.load / hf.load to run it")
        full = key + (numerics, str(target), backend, self._quantize)
        if full in self._compiled:
            return self._compiled[full], 0.0
        t0 = time.perf_counter()
        # Exact numerics build an fp32 graph so weights keep their float32 values.
        prog = build("fp32" if numerics == "exact" else "fp16", resolve_target(target))
        options = {"numerics": numerics} if backend == "sim" else {}
        self._compiled[full] = exe = ak_compile(prog, backend=backend, target=target, **options)
        return exe, time.perf_counter() - t0

    def prefill_program(self, seq: int, dtype: str = "fp16", target=None) -> ir.Program:
        """The prefill program; with a `target`, in the form that chip runs (build_prefill)."""
        return self._compress(build_prefill(self.arch, self.weights_as(dtype), seq, dtype, target))

    def decode_program(self, dtype: str = "fp16", state: bool = True, target=None) -> ir.Program:
        """The decode program; with a `target`, in the form that chip runs (build_decode)."""
        return self._compress(build_decode(self.arch, self.weights_as(dtype), dtype, state, target))

    def weights_as(self, dtype: str) -> dict:
        """graph_weights with every matrix as a read-only C-contiguous [out, in, 1, 1] array of
        `dtype` (the 1x1 conv's weight), made once per dtype and shared by every program built
        from it, so the simulator also prepares each weight once (sim/shared.py); an fp16
        checkpoint's memory-mapped views are not copied at all."""
        if dtype not in self._as_dtype:
            np_dtype = np.float16 if dtype == "fp16" else np.float32

            def matrix(w):
                if not isinstance(w, np.ndarray) or w.ndim != 2 or w.strides == (0, 0):
                    return w            # vectors, and zero-stride placeholders (skeletons)
                if np_dtype is np.float16 and w.dtype != np.float16:
                    a = to_fp16(w)      # numpy's cast without its warnings (and fast on fp16 subnormals)
                else:
                    a = np.ascontiguousarray(w, dtype=np_dtype)
                a = a.reshape(w.shape[0], w.shape[1], 1, 1)
                a.flags.writeable = False       # a new view even when no copy was needed
                return a
            self._as_dtype[dtype] = map_matrices(self.graph_weights, matrix)
        return self._as_dtype[dtype]

    def estimate(self, target=None, prompt_tokens: int = 1, route: str = "standard"):
        """The cost model's price of this model's generation on `target`'s engine: prefill over
        `prompt_tokens` and decode tokens/s, with intervals (anekit.models.speed). An estimate
        from shapes and weight formats, not a measurement."""
        return estimate_generation(self.arch, map_matrices(self.graph_weights, shape_only(self._quantize)),
                                   self._quantize, build_prefill, build_decode, target, prompt_tokens, route)

    def declare_ranges(self, prog: ir.Program) -> ir.Program:
        """`prog` (a prefill or decode program of this model) with its inputs' ranges declared
        (see decoder.declare_ranges), ready for `ak.check`'s fp16 range analysis."""
        return declare_ranges(prog, self.graph_weights["embed"])

    def _embed(self, tokens) -> np.ndarray:
        rows = np.asarray(self.graph_weights["embed"][np.asarray(tokens)], np.float32)   # stored fp16 too (hf)
        return rows.T.reshape(1, self.arch.dim, 1, -1)

    def _prefill(self, ids, numerics, target, backend):
        """Run the prefill program; outputs cut to len(ids) positions. Prompts are padded to a
        power-of-two length so few programs are compiled: attention is causal, so the padding
        after the prompt changes nothing before it (and decode overwrites those cache slots)."""
        s = len(ids)
        n = min(self.arch.seq_len, 1 << (s - 1).bit_length())
        exe, compile_s = self._exe(("prefill", n), lambda dt, tgt: self.prefill_program(n, dt, tgt),
                                   numerics, target, backend)
        cos, sin = rope_tables(self.arch, range(n))
        out = exe({"x": self._embed(list(ids) + [0] * (n - s)), "cos": cos, "sin": sin})
        return compile_s, {k: v[..., :s] for k, v in out.items()}

    def logits(self, tokens, numerics: str = "profile", target=None, backend: str = "sim") -> np.ndarray:
        """Logits [len(tokens), vocab] (float32) of a causal forward over `tokens`."""
        ids = self.check_tokens(tokens)
        _, out = self._prefill(ids, numerics, target, backend)
        return np.asarray(out["logits"], np.float32).reshape(self.arch.vocab_size, len(ids)).T.copy()

    def generate(self, prompt_tokens, steps: int, temperature: float = 0.0, top_p: float | None = None,
                 seed: int | None = None, numerics: str = "profile", target=None, backend: str = "sim",
                 cache: str | None = None):
        """Yield up to `steps` new token ids as they are produced: one prefill run over the
        prompt, then one decode run per token with the KV cache (stops early when the context
        of seq_len positions is full). `cache`: "state" (iOS 18 state buffers; the default for
        targets whose dialect has them) or "io" (caches passed in and out every step)."""
        ids = self.check_tokens(prompt_tokens, "prompt")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise UsageError(f"steps must be a non-negative integer, got {steps!r}")
        if cache is None:     # state needs the iOS 18 dialect (A15/M3 on, guide ch. 34); else I/O buffers
            cache = "state" if backend == "sim" and dialects.has_states(resolve_target(target).dialect) else "io"
        if cache not in ("state", "io"):
            raise UsageError(f"cache must be 'state' or 'io', got {cache!r}")
        sampler = Sampler(self.arch.vocab_size, temperature, top_p, seed)
        return self._generate(ids, int(steps), sampler, numerics, target, backend, cache == "state")

    def _generate(self, ids, steps, sampler, numerics, target, backend, state):
        arch, t_max = self.arch, self.arch.seq_len
        stats = self.stats = GenerationStats(prompt_tokens=len(ids))
        if steps == 0:
            return
        t0 = time.perf_counter()
        stats.compile_s, out = self._prefill(ids, numerics, target, backend)
        stats.prefill_s = time.perf_counter() - t0 - stats.compile_s
        logits = np.asarray(out["logits"], np.float32)[0, :, 0, -1]
        s = len(ids)
        caches = {}
        for i in range(arch.n_layers):
            for name in ("k", "v"):
                buf = np.zeros((1, arch.n_kv_heads, arch.hd, t_max), np.float32)
                buf[..., :s] = out[f"{name}{i}"]
                caches[f"{name}_cache{i}"] = buf
        decode, compile_s = self._exe(("decode", state), lambda dt, tgt: self.decode_program(dt, state, tgt),
                                      numerics, target, backend)
        stats.compile_s += compile_s
        pos = s
        for produced in range(steps):
            token = sampler(logits)
            yield token
            if produced == steps - 1 or pos >= t_max:
                return
            t1 = time.perf_counter()
            cos, sin = rope_tables(arch, [pos])
            mask = np.where(np.arange(t_max) <= pos, 0.0, MASK).astype(np.float32).reshape(1, 1, 1, t_max)
            onehot = (np.arange(t_max) == pos).astype(np.float32).reshape(1, 1, 1, t_max)
            feeds = {"x": self._embed([token]), "cos": cos, "sin": sin, "mask": mask, "onehot": onehot}
            if caches:                       # state: seeded on the first call, kept after
                feeds.update(caches)
            out = decode(feeds)
            caches = {f"{n[0]}_cache{n[1:]}": out[n] for n in out if n != "logits"} if not state else {}
            logits = np.asarray(out["logits"], np.float32).reshape(-1)
            pos += 1
            stats.decode_tokens += 1
            stats.decode_s += time.perf_counter() - t1
