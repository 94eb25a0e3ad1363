"""`Decoder.estimate` and `anekit generate`'s engine estimate: the cost model's price of the very
programs generation runs, built from shape-only weights."""
import json
import tracemalloc

import numpy as np
import pytest

import anekit as ak
from anekit.cli import main
from anekit.errors import UsageError
from anekit.models import llama2c
from anekit.models.decoder import Arch, Decoder

from test_generate_cli import synthetic_tokenizer


def small_decoder(quantize=None, seed=0) -> Decoder:
    rng = np.random.default_rng(seed)
    arch = Arch(dim=64, hidden_dim=160, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=96, seq_len=32)
    d, h, kv = arch.dim, arch.hidden_dim, arch.kv_dim

    def m(o, i):
        return (rng.standard_normal((o, i)) * 0.1).astype(np.float32)

    layers = [dict(attn_norm=np.ones(d, np.float32), ffn_norm=np.ones(d, np.float32), wq=m(d, d), wk=m(kv, d),
                   wv=m(kv, d), wo=m(d, d), w1=m(h, d), w2=m(d, h), w3=m(h, d)) for _ in range(arch.n_layers)]
    embed = m(arch.vocab_size, d)
    return Decoder(arch, dict(embed=embed, final_norm=np.ones(d, np.float32), wcls=embed, layers=layers), quantize)


@pytest.mark.parametrize("fmt", [None, "int8", "lut4", "lut6"])
@pytest.mark.parametrize("chip", ["m1", "m4"])
def test_estimate_prices_the_programs_generate_runs(fmt, chip):
    """Shape-only weights price exactly like the real (compressed) programs: same shapes, formats
    and the min_size rule (wk / wv, 32x64, stay fp16 when the rest is compressed)."""
    dec = small_decoder(fmt)
    target = ak.targets.get(chip)
    state = ak.dialects.has_states(target.dialect)
    est = dec.estimate(chip, prompt_tokens=5)
    decode = ak.cost.estimate_decode(dec.decode_program("fp16", state, target), chip)
    prefill = ak.estimate(dec.prefill_program(8, "fp16", target), chip)
    assert est.prefill_positions == 8 and est.prompt_tokens == 5 and est.quantize == fmt
    assert est.decode.ms_per_token == pytest.approx(decode.ms_per_token, rel=1e-12)
    assert (est.decode.low_ms, est.decode.high_ms) == pytest.approx((decode.low_ms, decode.high_ms), rel=1e-12)
    assert est.prefill.total_us == pytest.approx(prefill.total_us, rel=1e-12)
    assert est.prefill_tokens_per_s == pytest.approx(5 / prefill.total_us * 1e6, rel=1e-12)
    d = est.to_dict()
    assert d["decode"]["tokens_per_s"] == pytest.approx(1e3 / decode.ms_per_token)
    assert "not a measurement" in d["note"]


def test_estimate_of_a_7b_shaped_model_allocates_nothing():
    """Weights that are zero-stride views (Llama-2-7B's shapes, 4 of its 32 layers: 1.6 GB as fp16)
    price without being copied or palettized: the peak allocation stays below one FFN matrix."""
    arch = Arch(dim=4096, hidden_dim=11008, n_layers=4, n_heads=32, n_kv_heads=32, vocab_size=32000, seq_len=512)

    def w(o, i):
        return np.broadcast_to(np.float32(0.01), (o, i))

    d, h = arch.dim, arch.hidden_dim
    layer = dict(attn_norm=np.ones(d, np.float32), ffn_norm=np.ones(d, np.float32), wq=w(d, d), wk=w(d, d),
                 wv=w(d, d), wo=w(d, d), w1=w(h, d), w2=w(d, h), w3=w(h, d))
    dec = Decoder(arch, dict(embed=w(arch.vocab_size, d), final_norm=np.ones(d, np.float32),
                             wcls=w(arch.vocab_size, d), layers=[layer] * arch.n_layers))
    tracemalloc.start()
    try:
        fp16 = dec.estimate("m1max", prompt_tokens=16)
        dec.quantize = "lut4"
        lut4 = dec.estimate("m1max", prompt_tokens=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak              # one fp16 FFN matrix alone is 90 MB
    # batch-1 decode streams every weight once: a quarter of the bytes must be faster
    assert lut4.decode.tokens_per_s > 1.5 * fp16.decode.tokens_per_s


def test_estimate_bad_prompt_length_is_a_usage_error():
    dec = small_decoder()
    for bad in (0, 33, 2.5, True, "4"):
        with pytest.raises(UsageError, match="prompt_tokens"):
            dec.estimate("m4", prompt_tokens=bad)


@pytest.fixture
def model(tmp_path):
    c = llama2c.Config(dim=32, hidden_dim=72, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, seq_len=32)
    llama2c.new(c, seed=5).save(tmp_path / "m.bin")
    synthetic_tokenizer().save(tmp_path / "tokenizer.bin")
    return tmp_path


def test_generate_prints_the_engine_estimate(model, capsys):
    assert main(["generate", str(model / "m.bin"), "--prompt", "hello", "--steps", "4", "--seed", "1",
                 "-t", "m1", "--quantize", "int8"]) == 0
    err = capsys.readouterr().err
    m = llama2c.load(model / "m.bin")
    m.quantize = "int8"
    est = m.estimate("m1", prompt_tokens=2)
    assert "estimate on the M1's engine (cost model, not a measurement)" in err
    assert f"decode {est.decode.tokens_per_s:.0f} tok/s" in err
    assert f"prefill {est.prefill_tokens_per_s:.0f} tok/s over 2 tokens" in err


def test_generate_json_carries_the_estimate(model, capsys):
    assert main(["generate", str(model / "m.bin"), "--prompt", "hello world", "--steps", "3", "--temperature", "0",
                 "--json", "-t", "m4"]) == 0
    rep = json.loads(capsys.readouterr().out)
    est = llama2c.load(model / "m.bin").estimate("m4", prompt_tokens=len(rep["prompt_tokens"]))
    assert rep["estimate"] == json.loads(json.dumps(est.to_dict()))
    assert rep["estimate"]["target"] == "M4"


# --- skeletons: a checkpoint's shapes without its tensors ----------------------------------

def test_llama2c_skeleton_prices_like_the_loaded_model_and_reads_no_tensor(model):
    """The skeleton comes from the header alone: a checkpoint whose tensors are all NaN (which
    load refuses) still prices, and exactly like the real model's programs."""
    path = model / "m.bin"
    real = llama2c.load(path)
    skel = llama2c.skeleton(path)
    for fmt in (None, "lut4"):
        real.quantize = skel.quantize = fmt
        for chip in ("m1", "m4"):
            a, b = real.estimate(chip, prompt_tokens=7), skel.estimate(chip, prompt_tokens=7)
            assert b.decode.ms_per_token == pytest.approx(a.decode.ms_per_token, rel=1e-12)
            assert b.prefill.total_us == pytest.approx(a.prefill.total_us, rel=1e-12)
    raw = bytearray(path.read_bytes())
    raw[28:] = np.full((len(raw) - 28) // 4, np.nan, "<f4").tobytes()
    (model / "nan.bin").write_bytes(bytes(raw))
    with pytest.raises(ak.errors.ModelFormatError, match="NaN"):
        llama2c.load(model / "nan.bin")
    assert llama2c.skeleton(model / "nan.bin").estimate("m4").decode.ms_per_token == \
        pytest.approx(skel.estimate("m4").decode.ms_per_token)
    with pytest.raises(UsageError, match="shapes only"):
        list(skel.generate([1, 2], 3))


def _hf_folder(folder, biases: bool, tied: bool, drop: str | None = None, bad_shape: str | None = None):
    """A Qwen2-style folder written with numpy alone: config.json and one safetensors file."""
    st = pytest.importorskip("safetensors.numpy", reason="the hf extra (safetensors) is not installed")
    cfg = dict(model_type="qwen2", vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
               rope_theta=1e6, tie_word_embeddings=tied)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(1)
    d, h, kv = 64, 128, 32
    shapes = {"model.embed_tokens.weight": (96, d), "model.norm.weight": (d,)}
    if not tied:
        shapes["lm_head.weight"] = (96, d)
    for i in range(2):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                       p + "mlp.gate_proj.weight": (h, d), p + "mlp.up_proj.weight": (h, d),
                       p + "mlp.down_proj.weight": (d, h)})
        if biases:
            shapes.update({p + "self_attn.q_proj.bias": (d,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    if bad_shape:
        shapes[bad_shape] = (3, 3)
    tensors = {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items() if k != drop}
    st.save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("biases,tied", [(True, True), (False, False)])
def test_hf_skeleton_prices_like_the_loaded_model(tmp_path, biases, tied):
    from anekit.models import hf
    folder = _hf_folder(tmp_path / "m", biases, tied)
    real, skel = hf.load(folder), hf.skeleton(folder)
    assert ("bq" in skel.graph_weights["layers"][0]) == biases
    assert (skel.graph_weights["wcls"] is skel.graph_weights["embed"]) == tied
    for fmt in (None, "int8"):
        real.quantize = skel.quantize = fmt
        a, b = real.estimate("m4", prompt_tokens=5), skel.estimate("m4", prompt_tokens=5)
        assert b.decode.ms_per_token == pytest.approx(a.decode.ms_per_token, rel=1e-12)
        assert b.prefill.total_us == pytest.approx(a.prefill.total_us, rel=1e-12)


def test_hf_skeleton_still_checks_names_and_shapes(tmp_path):
    from anekit.models import hf
    with pytest.raises(ak.errors.ModelFormatError, match="mlp.up_proj.weight' is missing"):
        hf.skeleton(_hf_folder(tmp_path / "a", True, True, drop="model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ak.errors.ModelFormatError, match=r"has shape \[3, 3\], the config needs \[32, 64\]"):
        hf.skeleton(_hf_folder(tmp_path / "b", True, True, bad_shape="model.layers.0.self_attn.k_proj.weight"))


def test_estimate_cli_prices_a_checkpoint_across_chips(model, capsys):
    path = str(model / "m.bin")
    assert main(["estimate", path, "-t", "m1,m4", "--prompt-tokens", "12", "--quantize", "lut4"]) == 0
    out = capsys.readouterr().out
    skel = llama2c.skeleton(path)
    skel.quantize = "lut4"
    for chip, name in (("m1", "M1"), ("m4", "M4")):
        e = skel.estimate(chip, prompt_tokens=12)
        row = next(line for line in out.splitlines() if line.startswith(name + " ")).split()
        assert float(row[2]) == pytest.approx(e.decode.tokens_per_s, rel=1e-3)        # decode tok/s
        assert float(row[6]) == pytest.approx(e.prefill_tokens_per_s, rel=1e-3)       # prefill tok/s
    assert "lut4 weights; prompt 12 tokens" in out and "not measurements" in out
    assert main(["estimate", path, "--compare", "--json", "--prompt-tokens", "1000"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep["estimates"]) == len(list(ak.targets.all_chips())) and rep["weights"] == "fp16"
    assert {e["prompt_tokens"] for e in rep["estimates"]} == {32}         # capped at the context
    assert rep["arch"]["layers"] == 2


@pytest.mark.parametrize("extra,message", [
    (["--plot", "r.png"], "--plot does not apply to a language model"),
    (["--prompt-tokens", "0"], "--prompt-tokens must be >= 1"),
    (["--shape", "x=1,2"], "--shape does not apply to a language model"),
])
def test_estimate_cli_checkpoint_bad_options_are_one_line(model, capsys, extra, message):
    assert main(["estimate", str(model / "m.bin")] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_estimate_cli_quantize_is_for_checkpoints_only(tmp_path, capsys):
    x = ak.input("x", (1, 64, 1, 16))
    ak.mil.save(ak.program({"y": ak.relu(x)}), str(tmp_path / "p"))
    assert main(["estimate", str(tmp_path / "p"), "--quantize", "int8"]) == 2
    assert "--quantize applies to language models" in capsys.readouterr().err
