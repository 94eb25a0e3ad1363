"""Hugging Face decoder checkpoints (Llama, Mistral, Qwen2, Qwen3) as anekit models.

    m = ak.models.hf.load("path/to/folder")        # config.json, *.safetensors, tokenizer.json
    ids = m.encode("Hello")
    for t in m.generate(ids, 32): ...

Tensors are found through the safetensors library (`safe_open` validates the header); fp16 and
fp32 tensors are read-only views of the memory-mapped file, used as stored (the programs round
them to fp16 when built), so loading copies no weight; bf16 tensors, which numpy lacks, are
widened once to float32 from their memory-mapped bytes. The tokenizer is `tokenizer.json` through the tokenizers library. Needs
the `hf` extra (safetensors, tokenizers). Hugging Face already stores q / k projections in the
rotate-half RoPE order the decoder graph uses.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .._files import open_regular, read_regular
from ..errors import DependencyError, ModelFormatError
from .decoder import Arch, Decoder

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
DEFAULT_CONTEXT = 1024        # KV-cache length when the config allows more (memory: see load())


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise DependencyError(f"reading Hugging Face models needs '{module}': pip install 'anekit[hf]'") from None


_JSON_LIMIT = 64 << 20          # config / generation config / tokenizer JSON: far below this


def _read_json(path: str, what: str):
    """A JSON file of the folder, read only if it is a regular file (a FIFO would block, a device
    never end) of at most _JSON_LIMIT bytes."""
    data = read_regular(path, ModelFormatError, what, _JSON_LIMIT)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelFormatError(f"'{path}': not valid JSON ({e})") from None


def _config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    cfg = _read_json(path, "config.json")
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"'{path}': expected a JSON object")
    return cfg


def arch_from_config(cfg: dict, context: int | None = None) -> Arch:
    mt = cfg.get("model_type")
    if mt not in SUPPORTED:
        raise ModelFormatError(f"model_type '{mt}' is not supported (supported: {', '.join(SUPPORTED)})")
    try:
        dim, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        rope = {**(cfg.get("rope_scaling") or {}), **(cfg.get("rope_parameters") or {})}
        scaling = _rope_scaling(mt, rope, cfg)
        max_pos = int(cfg.get("max_position_embeddings", DEFAULT_CONTEXT))
        seq = min(max_pos, int(context or DEFAULT_CONTEXT))
        window = cfg.get("sliding_window") if cfg.get("use_sliding_window", mt == "mistral") else None
        if window:
            seq = min(seq, int(window))      # within the window, sliding attention is full attention
        arch = Arch(dim=dim, hidden_dim=int(cfg["intermediate_size"]), n_layers=int(cfg["num_hidden_layers"]),
                    n_heads=heads, n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                    vocab_size=int(cfg["vocab_size"]), seq_len=seq,
                    head_dim=int(cfg.get("head_dim") or dim // heads),
                    norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                    rope_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                    qk_norm=mt == "qwen3", rope_scaling=scaling)
    except KeyError as e:
        raise ModelFormatError(f"config.json of a {mt} model lacks {e}") from None
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"config.json of a {mt} model has a malformed field ({e})") from None
    if cfg.get("hidden_act", "silu") != "silu":
        raise ModelFormatError(f"{mt}: activation '{cfg.get('hidden_act')}' is not supported (silu only)")
    if min(arch.dim, arch.hidden_dim, arch.n_layers, arch.n_heads, arch.n_kv_heads, arch.vocab_size, seq) <= 0 \
            or arch.n_heads % arch.n_kv_heads or arch.hd % 2:
        raise ModelFormatError(f"{mt}: inconsistent dimensions in config.json ({arch})")
    return arch


def _rope_scaling(mt: str, rope: dict, cfg: dict) -> tuple:
    """decoder.Arch.rope_scaling from the config's rope parameters (transformers 5 writes
    `rope_parameters`, earlier versions `rope_scaling`; the type key was once `type`)."""
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in ("default", None):
        return ()
    if kind == "linear":
        return ("linear", float(rope["factor"]))
    if kind == "llama3":
        context = rope.get("original_max_position_embeddings", cfg.get("max_position_embeddings"))
        scaling = ("llama3", float(rope["factor"]), float(rope["low_freq_factor"]),
                   float(rope["high_freq_factor"]), float(context))
        if scaling[3] <= scaling[2] or min(scaling[1:]) <= 0:
            raise ModelFormatError(f"{mt}: llama3 rope scaling needs positive factors with high_freq_factor "
                                   f"above low_freq_factor, got {rope}")
        return scaling
    raise ModelFormatError(f"{mt}: rope scaling '{kind}' is not supported (default, linear and llama3 are)")


class _Tensors:
    """Tensors by name across the folder's safetensors files, read one at a time."""

    def __init__(self, folder: str, data: bool = True):
        self.data = data        # False: names and shapes only, each tensor a zero-stride placeholder
        st = _require("safetensors")
        files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        if not files:
            raise ModelFormatError(f"'{folder}': no *.safetensors files")
        self.where: dict[str, str] = {}
        self.handles = {}
        self.maps: dict[str, tuple] = {}        # path -> (memmap, data start, header)
        for f in files:
            path = os.path.join(folder, f)
            handle, _ = open_regular(path, ModelFormatError, "safetensors file")   # no FIFO or device
            handle.close()
            try:
                h = st.safe_open(path, framework="numpy")
            except Exception as e:          # the library's own error type varies by version
                raise ModelFormatError(f"'{path}': not a readable safetensors file ({e})") from None
            self.handles[path] = h
            for name in h.keys():
                self.where[name] = path

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        path = self.where.get(name)
        if path is None:
            raise ModelFormatError(f"tensor '{name}' is missing from the safetensors files")
        sl = self.handles[path].get_slice(name)
        got = tuple(sl.get_shape())
        if got != tuple(shape):
            raise ModelFormatError(f"tensor '{name}' in '{os.path.basename(path)}' has shape {list(got)}, "
                                   f"the config needs {list(shape)}")
        if not self.data:
            return np.broadcast_to(np.float32(0), tuple(shape))
        kind = sl.get_dtype()
        if kind in _MAPPED:
            return self._mapped(path, name, shape, _MAPPED[kind])
        if kind == "BF16":          # numpy has no bf16: its bits are a float32's top half, widened once
            return (self._mapped(path, name, shape, "<u2").astype(np.uint32) << 16).view(np.float32)
        return np.asarray(self.handles[path].get_tensor(name), dtype=np.float32)

    def _mapped(self, path: str, name: str, shape, dtype: str) -> np.ndarray:
        """A read-only view of the tensor's bytes in the memory-mapped file (one map and one parsed
        header per file): fp16 and fp32 weights are used as stored (the programs round them to
        fp16 when built), so loading copies nothing and the pages stay the file's."""
        if path not in self.maps:
            header_len, header = _header(path)
            self.maps[path] = (np.memmap(path, dtype=np.uint8, mode="r"), 8 + header_len, header)
        mm, base, header = self.maps[path]
        begin, end = header[name]["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * np.dtype(dtype).itemsize or base + end > mm.size:
            raise ModelFormatError(f"tensor '{name}' in '{os.path.basename(path)}': its data offsets "
                                   f"[{begin}, {end}) do not hold {list(shape)} {dtype} values inside the file")
        return np.frombuffer(mm, dtype=dtype, count=count, offset=base + begin).reshape(shape)

    def has(self, name: str) -> bool:
        return name in self.where


_MAPPED = {"F16": "<f2", "F32": "<f4"}


def _header(path: str) -> tuple[int, dict]:
    """(length, parsed JSON) of a safetensors file's header; safe_open has already validated it."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return n, json.loads(f.read(n))


class Model(Decoder):
    """A Hugging Face decoder with its tokenizer (`encode`, `decode`, `stop_tokens`)."""

    def __init__(self, arch: Arch, weights: dict, tokenizer=None, stop_tokens=(), model_type: str = ""):
        super().__init__(arch, weights)
        self.tokenizer, self.stop_tokens, self.model_type = tokenizer, tuple(stop_tokens), model_type

    def __repr__(self) -> str:
        a = self.arch
        return (f"<hf.Model {self.model_type} dim={a.dim} layers={a.n_layers} heads={a.n_heads}/{a.n_kv_heads} "
                f"vocab={a.vocab_size} context={a.seq_len}>")

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ModelFormatError("this model folder has no tokenizer.json")
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def text_stream(self, prefix=()):
        """piece(prev, token) -> bytes for streaming after the tokens `prefix`: the new suffix
        of the decoded text (held back while it ends in an incomplete character)."""
        ids = list(prefix)
        shown = [self.decode(ids) if ids else ""]

        def piece(prev, token):
            ids.append(token)
            text = self.decode(ids)
            if text.endswith("\ufffd"):
                return b""
            new, shown[0] = text[len(shown[0]):], text
            return new.encode("utf-8")
        return piece


def load(folder, context: int | None = None) -> Model:
    """Read a Llama / Mistral / Qwen2 / Qwen3 folder. `context` sets the KV-cache length
    (default min(max_position_embeddings, 1024))."""
    folder, cfg, arch = _open(folder, context)
    weights = _weights(_Tensors(folder), arch, cfg)
    tokenizer = None
    tok_path = os.path.join(folder, "tokenizer.json")
    if os.path.lexists(tok_path):
        text = read_regular(tok_path, ModelFormatError, "tokenizer.json", _JSON_LIMIT)
        tk = _require("tokenizers")
        try:
            tokenizer = tk.Tokenizer.from_str(text.decode("utf-8"))
        except Exception as e:
            raise ModelFormatError(f"'{tok_path}': not a readable tokenizer.json ({e})") from None
        if tokenizer.get_vocab_size(with_added_tokens=True) > arch.vocab_size:
            raise ModelFormatError(f"the tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens "
                                   f"but the model's vocabulary is {arch.vocab_size}: they do not belong together")
    return Model(arch, weights, tokenizer, _stop_tokens(folder, cfg), cfg.get("model_type", ""))


def skeleton(folder, context: int | None = None) -> Decoder:
    """The folder's model with every tensor a zero-stride placeholder of its checked shape, read
    from config.json and the safetensors headers alone (no tensor data): for cost estimates
    (`.estimate(target)`) of models of any size. It cannot generate."""
    folder, cfg, arch = _open(folder, context)
    return Decoder(arch, _weights(_Tensors(folder, data=False), arch, cfg), shapes_only=True)


def _open(folder, context):
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ModelFormatError(f"'{folder}' is not a model folder")
    cfg = _config(folder)
    return folder, cfg, arch_from_config(cfg, context)


def _weights(t: _Tensors, arch: Arch, cfg: dict) -> dict:
    """The decoder's weight dict from the folder's tensors, each checked against the config's shape."""
    d, hd, kvd = arch.dim, arch.hd, arch.kv_dim
    qd = arch.n_heads * hd
    layers = []
    for i in range(arch.n_layers):
        p = f"model.layers.{i}."
        w = dict(attn_norm=t.get(p + "input_layernorm.weight", (d,)),
                 wq=t.get(p + "self_attn.q_proj.weight", (qd, d)),
                 wk=t.get(p + "self_attn.k_proj.weight", (kvd, d)),
                 wv=t.get(p + "self_attn.v_proj.weight", (kvd, d)),
                 wo=t.get(p + "self_attn.o_proj.weight", (d, qd)),
                 ffn_norm=t.get(p + "post_attention_layernorm.weight", (d,)),
                 w1=t.get(p + "mlp.gate_proj.weight", (arch.hidden_dim, d)),
                 w3=t.get(p + "mlp.up_proj.weight", (arch.hidden_dim, d)),
                 w2=t.get(p + "mlp.down_proj.weight", (d, arch.hidden_dim)))
        for key, name, size in (("bq", "q_proj", qd), ("bk", "k_proj", kvd), ("bv", "v_proj", kvd), ("bo", "o_proj", d)):
            if t.has(p + f"self_attn.{name}.bias"):
                w[key] = t.get(p + f"self_attn.{name}.bias", (size,))
        if arch.qk_norm:
            w["q_norm"] = t.get(p + "self_attn.q_norm.weight", (hd,))
            w["k_norm"] = t.get(p + "self_attn.k_norm.weight", (hd,))
        layers.append(w)
    embed = t.get("model.embed_tokens.weight", (arch.vocab_size, d))
    tied = cfg.get("tie_word_embeddings", False) or not t.has("lm_head.weight")
    return dict(embed=embed, final_norm=t.get("model.norm.weight", (d,)),
                wcls=embed if tied else t.get("lm_head.weight", (arch.vocab_size, d)), layers=layers)


def _stop_tokens(folder: str, cfg: dict) -> list[int]:
    """The end-of-sequence ids of config.json and of generation_config.json, which is where
    chat checkpoints list theirs (Llama 3 instruct: 128001, 128008, 128009 against config's one)."""
    stop: list[int] = []
    sources = [cfg]
    path = os.path.join(folder, "generation_config.json")
    if os.path.lexists(path):
        gen = _read_json(path, "generation_config.json")
        if isinstance(gen, dict):
            sources.append(gen)
    for src in sources:
        eos = src.get("eos_token_id")
        for t in ([] if eos is None else [eos] if isinstance(eos, int) else eos):
            if not isinstance(t, int) or isinstance(t, bool):
                raise ModelFormatError(f"'{folder}': eos_token_id {eos!r} must be an id or a list of ids")
            if t not in stop:
                stop.append(t)
    return stop
