"""llama2.c checkpoints (`run.c`'s legacy .bin format) as anekit models.

    m = ak.models.llama2c.load("stories15M.bin")
    m = ak.models.llama2c.new(ak.models.llama2c.STORIES15M, seed=0)
    m.logits(tokens, numerics="exact")          # [len(tokens), vocab]
    for t in m.generate(prompt, steps=64): ...  # KV-cache decode
    m.save("out.bin")                           # readable by run.c

Format (run.c `read_checkpoint` / `memory_map_weights`, export.py `legacy_export`): seven int32
(dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
means the classifier is not the embedding), then float32 tensors: embedding [vocab, dim],
rms_att [L, dim], wq [L, dim, dim], wk / wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], the legacy
freq_cis cos / sin tables [seq_len, head_size/2] each (skipped), and wcls [vocab, dim] when
unshared. Semantics: RMSNorm eps 1e-5, RoPE on interleaved pairs (2i, 2i+1) with frequency
10000^(-2i/head_size), grouped-query attention, SwiGLU FFN.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .._files import open_regular
from ..errors import ModelFormatError, UsageError
from .decoder import Arch, Decoder

HEADER = struct.Struct("<7i")
_MAX_DIM = 1 << 20                # any single dimension beyond this is a corrupt header


@dataclass(frozen=True)
class Config:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int = 32000
    seq_len: int = 256
    shared_classifier: bool = True

    def __post_init__(self):
        _validate(self, "config")

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_size

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Every float32 tensor of the file, in run.c's order (freq_cis included)."""
        d, h, n, v, hs = self.dim, self.hidden_dim, self.n_layers, self.vocab_size, self.head_size
        shapes = [("embed", (v, d)), ("rms_att", (n, d)), ("wq", (n, d, d)), ("wk", (n, self.kv_dim, d)),
                  ("wv", (n, self.kv_dim, d)), ("wo", (n, d, d)), ("rms_ffn", (n, d)),
                  ("w1", (n, h, d)), ("w2", (n, d, h)), ("w3", (n, h, d)), ("rms_final", (d,)),
                  ("freq_cis_real", (self.seq_len, hs // 2)), ("freq_cis_imag", (self.seq_len, hs // 2))]
        return shapes + ([] if self.shared_classifier else [("wcls", (v, d))])

    def file_size(self) -> int:
        return HEADER.size + 4 * sum(int(np.prod(s, dtype=object)) for _, s in self.tensor_shapes())

    def arch(self) -> Arch:
        return Arch(self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads,
                    self.vocab_size, self.seq_len, norm_eps=1e-5, rope_base=10000.0)


def _validate(c, where: str) -> None:
    fields = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    for f in fields:
        v = getattr(c, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ModelFormatError(f"{where}: {f} must be an integer, got {v!r}")
        if not 0 < v <= _MAX_DIM:
            raise ModelFormatError(f"{where}: {f} = {v} is not a plausible model dimension (1..{_MAX_DIM})")
    if c.dim % c.n_heads:
        raise ModelFormatError(f"{where}: dim {c.dim} is not a multiple of n_heads {c.n_heads}")
    if c.n_heads % c.n_kv_heads:
        raise ModelFormatError(f"{where}: n_heads {c.n_heads} is not a multiple of n_kv_heads {c.n_kv_heads}")
    if (c.dim // c.n_heads) % 2:
        raise ModelFormatError(f"{where}: head size {c.dim // c.n_heads} is odd; RoPE rotates pairs")


STORIES15M = Config(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6, vocab_size=32000, seq_len=256)
STORIES42M = Config(dim=512, hidden_dim=1376, n_layers=8, n_heads=8, n_kv_heads=8, vocab_size=32000, seq_len=1024)
STORIES110M = Config(dim=768, hidden_dim=2048, n_layers=12, n_heads=12, n_kv_heads=12, vocab_size=32000,
                     seq_len=1024)


def _deinterleave(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q / k projection from run.c's interleaved RoPE pairs (0,1), (2,3), ... to the
    rotate-half order (even rows, then odd rows) per head; q.k per head is unchanged."""
    out, hs = w.shape[0], w.shape[0] // heads
    perm = (np.arange(heads)[:, None] * hs + np.concatenate([np.arange(0, hs, 2), np.arange(1, hs, 2)])).reshape(-1)
    assert perm.size == out
    return w[perm]


class Model(Decoder):
    """A llama2.c model: `tensors` holds the file's float32 arrays by name (run.c's shapes)."""

    def __init__(self, config: Config, tensors: dict[str, np.ndarray], quantize: str | None = None):
        self.config = config
        self.tensors = tensors
        n = config.n_layers
        layers = [dict(attn_norm=tensors["rms_att"][i],
                       wq=_deinterleave(tensors["wq"][i], config.n_heads),
                       wk=_deinterleave(tensors["wk"][i], config.n_kv_heads),
                       wv=tensors["wv"][i], wo=tensors["wo"][i], ffn_norm=tensors["rms_ffn"][i],
                       w1=tensors["w1"][i], w2=tensors["w2"][i], w3=tensors["w3"][i]) for i in range(n)]
        weights = dict(embed=tensors["embed"], final_norm=tensors["rms_final"],
                       wcls=tensors["embed"] if config.shared_classifier else tensors["wcls"], layers=layers)
        super().__init__(config.arch(), weights, quantize)

    def __repr__(self) -> str:
        c = self.config
        return (f"<llama2c.Model dim={c.dim} hidden={c.hidden_dim} layers={c.n_layers} heads={c.n_heads}/"
                f"{c.n_kv_heads} vocab={c.vocab_size} seq_len={c.seq_len} params={self.n_params():,}>")

    def n_params(self) -> int:
        return sum(a.size for k, a in self.tensors.items() if not k.startswith("freq_cis"))

    def save(self, path) -> None:
        """Write run.c's legacy format (header, tensors in order, freq_cis tables, wcls)."""
        c = self.config
        vocab = c.vocab_size if c.shared_classifier else -c.vocab_size
        with open(path, "wb") as f:
            f.write(HEADER.pack(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.seq_len))
            for name, shape in c.tensor_shapes():
                f.write(np.ascontiguousarray(self.tensors[name], dtype="<f4").reshape(shape).tobytes())


def _freq_cis(c: Config) -> tuple[np.ndarray, np.ndarray]:
    freqs = 1.0 / (10000.0 ** (np.arange(0, c.head_size, 2, dtype=np.float32) / c.head_size))
    ang = np.outer(np.arange(c.seq_len, dtype=np.float32), freqs)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def read_header(path) -> Config:
    """The Config of a checkpoint, checked against the file size (nothing large is read)."""
    handle, size = open_regular(path, ModelFormatError, "checkpoint")   # no FIFO, device or folder
    try:
        with handle:
            head = handle.read(HEADER.size)
    except OSError as e:
        raise ModelFormatError(f"'{path}': cannot read ({e.strerror or e})") from None
    if len(head) < HEADER.size:
        raise ModelFormatError(f"'{path}': {size} bytes, too short for the 28-byte llama2.c header")
    dim, hidden, layers, heads, kv, vocab, seq = HEADER.unpack(head)
    try:
        c = Config(dim, hidden, layers, heads, kv, abs(vocab), seq, shared_classifier=vocab > 0)
    except ModelFormatError as e:
        raise ModelFormatError(f"'{path}': not a llama2.c checkpoint: {str(e).split(': ', 1)[1]}") from None
    want = c.file_size()
    if size != want:
        what = "truncated" if size < want else "longer than its header says"
        raise ModelFormatError(f"'{path}': {what}: the header (dim {dim}, hidden {hidden}, layers {layers}, "
                               f"heads {heads}/{kv}, vocab {vocab}, seq_len {seq}) needs {want:,} bytes, "
                               f"the file has {size:,}")
    return c


def load(path, quantize: str | None = None) -> Model:
    """Read a run.c checkpoint (header validated against the file size before any tensor);
    `quantize` ("int8", "lut4", "lut6") compresses the programs' weights (anekit.quantization)."""
    c = read_header(path)
    tensors = {}
    handle, _ = open_regular(path, ModelFormatError, "checkpoint")
    with handle as f:
        f.seek(HEADER.size)
        for name, shape in c.tensor_shapes():
            count = int(np.prod(shape))
            a = np.fromfile(f, dtype="<f4", count=count)
            if a.size != count:
                raise ModelFormatError(f"'{path}': truncated while reading {name}")
            tensors[name] = a.astype(np.float32, copy=False).reshape(shape)
    if not all(np.isfinite(tensors[n]).all() for n in tensors):
        bad = next(n for n in tensors if not np.isfinite(tensors[n]).all())
        raise ModelFormatError(f"'{path}': tensor {bad} holds NaN or infinite values")
    return Model(c, tensors, quantize)


def skeleton(path) -> Decoder:
    """The checkpoint's model with every tensor a zero-stride placeholder of its shape, from the
    header alone (validated against the file size; no tensor is read): for cost estimates
    (`.estimate(target)`) of models of any size. It cannot generate."""
    c = read_header(path)
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim

    def zeros(*shape):
        return np.broadcast_to(np.float32(0), shape)

    layers = [dict(attn_norm=zeros(d), wq=zeros(d, d), wk=zeros(kv, d), wv=zeros(kv, d), wo=zeros(d, d),
                   ffn_norm=zeros(d), w1=zeros(h, d), w2=zeros(d, h), w3=zeros(h, d)) for _ in range(c.n_layers)]
    embed = zeros(c.vocab_size, d)
    weights = dict(embed=embed, final_norm=zeros(d), layers=layers,
                   wcls=embed if c.shared_classifier else zeros(c.vocab_size, d))
    return Decoder(c.arch(), weights, shapes_only=True)


def new(config: Config, seed: int = 0, quantize: str | None = None) -> Model:
    """A randomly initialised model of `config`, scaled so fp16 activations stay in range."""
    if not isinstance(config, Config):
        raise UsageError(f"new() takes a llama2c.Config (e.g. STORIES15M), got {type(config).__name__}")
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in config.tensor_shapes():
        if name.startswith("freq_cis"):
            continue
        if name.startswith("rms"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name in ("embed", "wcls"):
            a = rng.standard_normal(shape) * config.dim ** -0.25
        else:   # residual projections a little larger, so a random model mixes tokens visibly
            a = rng.standard_normal(shape) * ((3.0 if name in ("wo", "w2") else 1.0) / np.sqrt(shape[-1]))
        tensors[name] = a.astype(np.float32)
    tensors["freq_cis_real"], tensors["freq_cis_imag"] = _freq_cis(config)
    return Model(config, tensors, quantize)
