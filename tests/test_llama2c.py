"""llama2.c checkpoints: the file format, logits against run.c's semantics (float64 numpy written
here, and PyTorch), KV-cache generation against full recompute and against run.c itself."""
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

import anekit as ak
from anekit.errors import AnekitError, ModelFormatError, UsageError
from anekit.models import llama2c
from anekit.models.decoder import rope_tables
from anekit.models.tokenizer import Tokenizer

REF = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "llama2c")
RUN_C = os.path.join(REF, "run.c")
TOKENIZER_BIN = os.path.join(REF, "tokenizer.bin")

TINY = llama2c.Config(dim=32, hidden_dim=72, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, seq_len=24)
TOKENS = [1, 5, 100, 7, 250, 3, 42, 299, 17]


def tiny(config=TINY, seed=1):
    return llama2c.new(config, seed=seed)


# --- an independent float64 transcription of run.c's forward() ------------------------------

def runc_forward(t: dict, c: llama2c.Config, tokens) -> np.ndarray:
    """run.c's token-by-token forward with its KV cache, in float64; logits [len, vocab]."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    hs, kv_dim, kv_mul = c.dim // c.n_heads, c.n_kv_heads * (c.dim // c.n_heads), c.n_heads // c.n_kv_heads
    kc = np.zeros((c.n_layers, c.seq_len, kv_dim))
    vc = np.zeros((c.n_layers, c.seq_len, kv_dim))
    wcls = t["embed"] if c.shared_classifier else t["wcls"]

    def rms(x, w):
        return w * (x / np.sqrt(np.mean(x * x) + 1e-5))

    out = []
    for pos, tok in enumerate(tokens):
        x = t["embed"][tok].copy()
        for layer in range(c.n_layers):
            xb = rms(x, t["rms_att"][layer])
            q, k, v = t["wq"][layer] @ xb, t["wk"][layer] @ xb, t["wv"][layer] @ xb
            for i in range(0, c.dim, 2):            # interleaved pairs, frequency by i % head_size
                freq = 1.0 / 10000.0 ** ((i % hs) / hs)
                fcr, fci = np.cos(pos * freq), np.sin(pos * freq)
                for vec in ((q, k) if i < kv_dim else (q,)):
                    v0, v1 = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = v0 * fcr - v1 * fci, v0 * fci + v1 * fcr
            kc[layer, pos], vc[layer, pos] = k, v
            att_out = np.zeros(c.dim)
            for h in range(c.n_heads):
                kh = (h // kv_mul) * hs
                scores = kc[layer, :pos + 1, kh:kh + hs] @ q[h * hs:(h + 1) * hs] / np.sqrt(hs)
                p = np.exp(scores - scores.max())
                p /= p.sum()
                att_out[h * hs:(h + 1) * hs] = p @ vc[layer, :pos + 1, kh:kh + hs]
            x = x + t["wo"][layer] @ att_out
            xb = rms(x, t["rms_ffn"][layer])
            a, b = t["w1"][layer] @ xb, t["w3"][layer] @ xb
            x = x + t["w2"][layer] @ (a / (1 + np.exp(-a)) * b)
        out.append(wcls @ rms(x, t["rms_final"]))
    return np.array(out)


def rel_err(a, ref):
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("config", [TINY, llama2c.Config(dim=48, hidden_dim=96, n_layers=2, n_heads=3, n_kv_heads=3,
                                                         vocab_size=260, seq_len=16, shared_classifier=False)],
                         ids=["gqa-shared", "mha-unshared"])
def test_logits_match_a_float64_transcription_of_run_c(config):
    m = tiny(config, seed=3)
    toks = [t % config.vocab_size for t in TOKENS]
    ref = runc_forward(m.tensors, config, toks)
    got = m.logits(toks, numerics="exact")
    assert got.shape == (len(toks), config.vocab_size)
    assert rel_err(got, ref) <= 1e-3
    # The chip's fp16 numerics stay close too (activation tables, fp16 storage).
    assert rel_err(m.logits(toks, numerics="profile", target="m4"), ref) <= 3e-2


def test_logits_match_pytorch():
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs the torch extra")
    m = tiny(seed=4)
    c, t = TINY, {k: torch.from_numpy(v.astype(np.float32)) for k, v in m.tensors.items()}
    hs = c.dim // c.n_heads
    toks = torch.tensor(TOKENS)
    s = len(TOKENS)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    freqs = 1.0 / (10000.0 ** (torch.arange(0, hs, 2).float() / hs))
    ang = torch.outer(torch.arange(s).float(), freqs)
    rot = torch.polar(torch.ones_like(ang), ang)                              # [s, hs/2] complex

    def rope(x):                                                               # [s, heads, hs], pairs (2i, 2i+1)
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * rot[:, None, :]).flatten(-2)

    x = t["embed"][toks]
    mask = torch.full((s, s), float("-inf")).triu(1)
    for i in range(c.n_layers):
        h = rms(x, t["rms_att"][i])
        q = rope((h @ t["wq"][i].T).view(s, c.n_heads, hs))
        k = rope((h @ t["wk"][i].T).view(s, c.n_kv_heads, hs))
        v = (h @ t["wv"][i].T).view(s, c.n_kv_heads, hs)
        rep = c.n_heads // c.n_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.softmax(torch.einsum("shd,thd->hst", q, k) / hs ** 0.5 + mask, -1)
        x = x + torch.einsum("hst,thd->shd", att, v).reshape(s, c.dim) @ t["wo"][i].T
        h = rms(x, t["rms_ffn"][i])
        x = x + (torch.nn.functional.silu(h @ t["w1"][i].T) * (h @ t["w3"][i].T)) @ t["w2"][i].T
    ref = (rms(x, t["rms_final"]) @ t["embed"].T).double().numpy()
    assert rel_err(m.logits(TOKENS, numerics="exact"), ref) <= 1e-3


# --- the file format -------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [True, False])
def test_save_load_round_trip_is_byte_exact(tmp_path, shared):
    c = llama2c.Config(dim=16, hidden_dim=40, n_layers=2, n_heads=2, n_kv_heads=1, vocab_size=50, seq_len=8,
                       shared_classifier=shared)
    m = tiny(c, seed=2)
    m.save(tmp_path / "a.bin")
    raw = (tmp_path / "a.bin").read_bytes()
    assert len(raw) == c.file_size()
    header = struct.unpack("<7i", raw[:28])
    assert header == (16, 40, 2, 2, 1, 50 if shared else -50, 8)        # negative vocab: unshared classifier
    # the embedding follows the header, then rms_att, as run.c maps them
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4", 50 * 16, 28).reshape(50, 16), m.tensors["embed"])
    back = llama2c.load(tmp_path / "a.bin")
    assert back.config == c
    for k in m.tensors:
        np.testing.assert_array_equal(back.tensors[k], m.tensors[k])
    back.save(tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == raw
    np.testing.assert_array_equal(back.logits([1, 2, 3], numerics="exact"), m.logits([1, 2, 3], numerics="exact"))


def _write(path, header, n_floats):
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header))
        f.write(np.zeros(n_floats, "<f4").tobytes())


def test_bad_files_are_refused_before_any_large_allocation(tmp_path):
    c = llama2c.Config(dim=16, hidden_dim=40, n_layers=1, n_heads=2, n_kv_heads=2, vocab_size=30, seq_len=8)
    n = (c.file_size() - 28) // 4
    hdr = (16, 40, 1, 2, 2, 30, 8)
    p = tmp_path / "m.bin"
    _write(p, hdr, n - 1)
    with pytest.raises(ModelFormatError, match="truncated"):
        llama2c.load(p)
    _write(p, hdr, n + 5)
    with pytest.raises(ModelFormatError, match="longer than its header"):
        llama2c.load(p)
    p.write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFormatError, match="too short"):
        llama2c.load(p)
    # Absurd dimensions: a tiny file claiming terabytes, negative or inconsistent shapes.
    for bad, what in [((1 << 30, 40, 1, 2, 2, 30, 8), "plausible"), ((16, 40, 1, 2, 2, 30, -8), "plausible"),
                      ((16, 40, 1, 3, 3, 30, 8), "multiple of n_heads"), ((16, 40, 1, 2, 0, 30, 8), "plausible"),
                      ((16, 40, 1, 4, 3, 30, 8), "multiple of n_kv_heads"),
                      ((1 << 20, 1 << 20, 1 << 20, 2, 2, 30, 8), "truncated")]:
        _write(p, bad, 100)
        with pytest.raises(ModelFormatError, match=what):
            llama2c.load(p)
    p.write_bytes(struct.pack("<7i", *hdr) + np.full(n, np.nan, "<f4").tobytes())
    with pytest.raises(ModelFormatError, match="NaN"):
        llama2c.load(p)
    with pytest.raises(ModelFormatError, match="cannot open checkpoint .*missing.bin"):
        llama2c.load(tmp_path / "missing.bin")


def test_presets_and_api():
    assert (llama2c.STORIES15M.dim, llama2c.STORIES42M.dim, llama2c.STORIES110M.dim) == (288, 512, 768)
    assert llama2c.STORIES110M.n_layers == 12 and llama2c.STORIES15M.seq_len == 256
    m = ak.models.llama2c.new(llama2c.Config(dim=8, hidden_dim=16, n_layers=1, n_heads=2, n_kv_heads=2,
                                             vocab_size=20, seq_len=4))
    assert "params=" in repr(m)
    with pytest.raises(UsageError):
        llama2c.new("15M")
    with pytest.raises(UsageError, match="unknown token id 20"):
        m.logits([1, 20])
    with pytest.raises(UsageError, match="exceed the model's context of 4"):
        m.logits([1, 2, 3, 4, 5])
    with pytest.raises(UsageError, match="empty"):
        m.logits([])
    with pytest.raises(UsageError, match="numerics"):
        m.logits([1], numerics="fast")


# --- generation ------------------------------------------------------------------------------

def full_recompute_greedy(m, prompt, steps, numerics):
    seq = list(prompt)
    for _ in range(steps):
        seq.append(int(np.argmax(m.logits(seq, numerics=numerics)[-1])))
    return seq[len(prompt):]


@pytest.mark.parametrize("cache", ["state", "io"])
def test_greedy_decode_with_cache_equals_full_recompute(cache):
    m = tiny(seed=5)
    prompt = [1, 17, 200, 33]
    steps = TINY.seq_len - len(prompt) + 1                    # fills the context exactly
    got = list(m.generate(prompt, steps, numerics="exact", cache=cache))
    assert got == full_recompute_greedy(m, prompt, steps, "exact")
    assert len(set(got)) > 3                                    # a sequence, not one repeated token
    assert m.stats.decode_tokens == steps - 1 and m.stats.prompt_tokens == 4
    # and past the context it stops instead of failing
    assert len(list(m.generate(prompt, steps + 5, numerics="exact", cache=cache))) == steps


def test_greedy_decode_with_cache_in_fp16_numerics():
    m = tiny(seed=5)
    prompt = [1, 17, 200, 33]
    got = list(m.generate(prompt, 8, numerics="profile", target="m4"))
    assert got == full_recompute_greedy(m, prompt, 8, "profile")


def test_decode_program_keeps_the_cache_as_state_and_runs_every_position():
    m = tiny()
    prog = m.decode_program()
    fn = prog.main
    assert sorted(fn.states) == sorted(f"{n}_cache{i}" for n in "kv" for i in range(TINY.n_layers))
    types = {op.type for op in fn.ops}
    assert {"read_state", "coreml_update_state", "conv", "softmax"} <= types
    assert "slice_update" not in types          # the position is data, not a compile-time constant
    text, _ = ak.mil.emit(prog)
    assert "state<tensor<fp16, [1, 2, 8, 24]>> k_cache0" in text
    io = m.decode_program(state=False, target="m1")
    assert not io.main.states and "k0" in io.main.output_names
    # the checker accepts both programs and the prefill in the form built for the chips that
    # would run them (M1: attention over head_dim 8 and 24 positions zero-padded to 32)
    assert ak.check(prog, target="m4").ok and ak.check(m.prefill_program(8), target="m4").ok
    assert ak.check(io, target="m1").ok and ak.check(m.prefill_program(8, target="m1"), target="m1").ok
    flagged = ak.check(m.decode_program(state=False), target="m1").findings
    assert {f.value for f in flagged if f.rule == "m1-runtime-matmul"} == {TINY.dim // TINY.n_heads, TINY.seq_len}


def test_generation_compiles_two_programs_and_picks_the_cache_by_target():
    m = tiny(seed=5)
    list(m.generate([1, 2, 3], 12, numerics="exact", target="m4"))
    list(m.generate([1, 9, 3, 4], 12, numerics="exact", target="m4"))    # same length bucket: no new compile
    assert sorted(k[:2] for k in m._compiled) == [("decode", True), ("prefill", 4)]
    # the padding after a prompt changes none of its logits
    exe = ak.compile(m.prefill_program(3), backend="sim", target="m4")
    cos, sin = rope_tables(m.arch, range(3))
    x = m.graph_weights["embed"][[1, 2, 3]].T.reshape(1, TINY.dim, 1, 3)
    unpadded = exe({"x": x, "cos": cos, "sin": sin})["logits"].reshape(TINY.vocab_size, 3).T
    np.testing.assert_array_equal(m.logits([1, 2, 3], numerics="profile", target="m4"), unpadded)
    list(m.generate([1, 2, 3], 4, numerics="exact", target="m1"))        # ios16 target: caches as I/O buffers
    assert ("decode", False) in {k[:2] for k in m._compiled}


def test_sampling_is_seeded_and_top_p_restricts_choices():
    m = tiny(seed=6)
    a = list(m.generate([1, 5], 10, temperature=0.9, top_p=0.9, seed=7, numerics="exact"))
    b = list(m.generate([1, 5], 10, temperature=0.9, top_p=0.9, seed=7, numerics="exact"))
    assert a == b
    from anekit.models.sampling import Sampler
    logits = np.array([5.0, 4.9, 0.0, -1.0, -3.0], np.float32)
    picks = {Sampler(5, 1.0, 0.8, seed=s)(logits) for s in range(1, 200)}
    assert picks == {0, 1}                          # top-p 0.8 keeps the two likely tokens
    assert {Sampler(5, 1.0, 0.5, seed=s)(logits) for s in range(1, 50)} == {0}   # p0 = 0.52 > 0.5
    assert {Sampler(5, 1.0, None, seed=s)(logits) for s in range(1, 400)} >= {0, 1, 2}
    assert Sampler(5, 0.0)(logits) == 0
    with pytest.raises(UsageError):
        Sampler(5, -1.0)
    with pytest.raises(UsageError):
        m.generate([1], -1)


def test_generate_rejects_bad_prompts():
    m = tiny()
    with pytest.raises(UsageError, match="exceed"):
        m.generate(list(range(1, 30)), 3)
    with pytest.raises(UsageError, match="unknown token id 300"):
        m.generate([1, 300], 3)
    with pytest.raises(AnekitError):
        m.generate(["a"], 3)


# --- run.c itself ------------------------------------------------------------------------------

HARNESS = r"""
#define TESTING
#include "run.c"
/* encode TOKENIZER VOCAB TEXT   -> prompt ids
   greedy MODEL TOKENIZER STEPS TEXT -> prompt ids, a line, then greedy ids (run.c's loop, temperature 0) */
int main(int argc, char **argv) {
    if (strcmp(argv[1], "encode") == 0) {
        Tokenizer tok; build_tokenizer(&tok, argv[2], atoi(argv[3]));
        int *ids = malloc((strlen(argv[4]) + 3) * sizeof(int)); int n;
        encode(&tok, argv[4], 1, 0, ids, &n);
        for (int i = 0; i < n; i++) printf("%d ", ids[i]);
        printf("\n"); return 0;
    }
    Transformer tr; build_transformer(&tr, argv[2]);
    Tokenizer tok; build_tokenizer(&tok, argv[3], tr.config.vocab_size);
    int steps = atoi(argv[4]);
    int *ids = malloc((strlen(argv[5]) + 3) * sizeof(int)); int n;
    encode(&tok, argv[5], 1, 0, ids, &n);
    for (int i = 0; i < n; i++) printf("%d ", ids[i]);
    printf("\n");
    int token = ids[0];
    for (int pos = 0; pos < steps; pos++) {
        float *logits = forward(&tr, token, pos);
        int next = pos < n - 1 ? ids[pos + 1] : sample_argmax(logits, tr.config.vocab_size);
        if (pos >= n - 1) printf("%d ", next);
        token = next;
    }
    printf("\n"); return 0;
}
"""


@pytest.fixture(scope="module")
def runc(tmp_path_factory):
    if not os.path.exists(RUN_C) or not os.path.exists(TOKENIZER_BIN):
        pytest.skip("llama2.c's run.c and tokenizer.bin (../shared/reference/llama2c) are not present")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build run.c")
    d = tmp_path_factory.mktemp("runc")
    shutil.copy(RUN_C, d / "run.c")
    (d / "harness.c").write_text(HARNESS)
    subprocess.run([cc, "-O2", "-o", str(d / "harness"), str(d / "harness.c"), "-lm"], cwd=d, check=True,
                   capture_output=True)
    return str(d / "harness")


@pytest.mark.parametrize("text", ["Once upon a time, there was a little girl named Lily.",
                                  "héllo wörld — 日本語 🙂 tabs\tand  spaces", "a", "", "Zyxw 123 !!?"])
def test_tokenizer_encode_matches_run_c(runc, text):
    tok = Tokenizer.load(TOKENIZER_BIN)
    assert tok.vocab_size == 32000
    out = subprocess.run([runc, "encode", TOKENIZER_BIN, "32000", text], capture_output=True, check=True)
    expected = [int(v) for v in out.stdout.split()]
    assert tok.encode(text) == expected
    # decode inverts encode (the dummy-prefix space is dropped after BOS, as run.c does)
    assert tok.decode_all(expected[1:]).decode("utf-8") == text


def test_greedy_generation_matches_run_c(runc, tmp_path):
    c = llama2c.Config(dim=64, hidden_dim=160, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=32000, seq_len=48)
    m = llama2c.new(c, seed=11)
    m.save(tmp_path / "m.bin")
    prompt = "Once upon a time"
    steps = 40
    out = subprocess.run([runc, "greedy", str(tmp_path / "m.bin"), TOKENIZER_BIN, str(steps), prompt],
                         capture_output=True, check=True).stdout.decode().splitlines()
    ids = [int(v) for v in out[0].split()]
    expected = [int(v) for v in out[1].split()]
    tok = Tokenizer.load(TOKENIZER_BIN)
    assert tok.encode(prompt) == ids
    got = list(llama2c.load(tmp_path / "m.bin").generate(ids, steps - len(ids) + 1, numerics="exact"))
    assert got == expected and len(set(got)) > 3
