"""Hugging Face import: tiny random Llama / Mistral / Qwen2 / Qwen3 models made with transformers,
saved with save_pretrained; greedy tokens and logits against transformers itself."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference models are transformers (PyTorch) models")
transformers = pytest.importorskip("transformers", reason="the hf test extra (transformers) is not installed")
pytest.importorskip("safetensors", reason="the hf extra (safetensors) is not installed")

from anekit.cli import main  # noqa: E402
from anekit.errors import ModelFormatError  # noqa: E402
from anekit.models import hf  # noqa: E402

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.15, rms_norm_eps=1e-6,
              bos_token_id=0, eos_token_id=95, pad_token_id=0)
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=False, rope_theta=10000.0),
    # Llama 3.1+ frequency scaling, with an original context of 16 so that the 4 rotated pairs
    # (wavelengths 6.3, 20, 63, 199) fall in all three bands: kept, blended, divided.
    "llama3": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=True, rope_parameters=dict(
        rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16)),
    "llama_linear": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=False, rope_parameters=dict(
        rope_type="linear", rope_theta=10000.0, factor=4.0)),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=None, rope_theta=1e6),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=True, rope_theta=1e6),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True, rope_theta=1e6),
}
MODELS = {"llama": "LlamaForCausalLM", "llama3": "LlamaForCausalLM", "llama_linear": "LlamaForCausalLM",
          "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
PROMPT = [0, 17, 42, 5, 88, 23]


def make(kind, folder, seed=0):
    torch.manual_seed(seed)
    ref = getattr(transformers, MODELS[kind])(CONFIGS[kind]()).eval()
    if kind == "qwen2":                            # Qwen2's q/k/v biases start at zero; make them count
        with torch.no_grad():
            for layer in ref.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.3)
    ref.save_pretrained(folder)
    return ref


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_greedy_tokens_and_logits_match_transformers(kind, tmp_path):
    ref = make(kind, tmp_path)
    m = hf.load(tmp_path)
    assert m.arch.qk_norm == (kind == "qwen3")
    assert ("bq" in m.graph_weights["layers"][0]) == (kind == "qwen2")
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        want = ref(ids).logits[0].double().numpy()
        out = ref.generate(ids, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(ids))
    theirs = out[0, len(PROMPT):].tolist()
    scale = np.abs(want).max()
    exact = m.logits(PROMPT, numerics="exact")
    assert np.abs(exact - want).max() / scale <= 1e-3
    fp16 = m.logits(PROMPT, numerics="profile", target="m4")
    assert np.abs(fp16 - want).max() / scale <= 3e-2            # fp16 storage, activation tables
    ours = list(m.generate(PROMPT, 12, numerics="exact"))
    assert ours[:len(theirs)] == theirs and len(set(theirs)) > 2
    assert len(theirs) == 12 or theirs[-1] == COMMON["eos_token_id"]
    assert m.stop_tokens == (95,)


def test_rope_scaling_changes_the_frequencies_as_transformers_does(tmp_path):
    """The scaled frequencies against transformers' own (a model that ignored the scaling would
    still pass the greedy test above only by luck); an unknown scaling type is an error."""
    for kind in ("llama3", "llama_linear"):
        ref = make(kind, tmp_path / kind)
        m = hf.load(tmp_path / kind)
        from anekit.models.decoder import rope_frequencies
        want = ref.model.rotary_emb.inv_freq.double().numpy()
        assert np.allclose(rope_frequencies(m.arch), want, rtol=1e-6)
        assert not np.allclose(rope_frequencies(m.arch), 10000.0 ** (-np.arange(4) * 2 / 8), rtol=1e-3)
    cfg = json.loads((tmp_path / "llama3" / "config.json").read_text())
    cfg["rope_parameters"] = {**cfg["rope_parameters"], "rope_type": "yarn"}
    (tmp_path / "llama3" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="rope scaling 'yarn' is not supported"):
        hf.load(tmp_path / "llama3")


def test_generation_config_adds_its_stop_tokens(tmp_path):
    """Chat checkpoints list their end-of-turn ids in generation_config.json: generation stops
    on any of them, config.json's first."""
    make("llama", tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [93, 95, 94]}))
    assert hf.load(tmp_path).stop_tokens == (95, 93, 94)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    with pytest.raises(ModelFormatError, match="eos_token_id 'x' must be an id"):
        hf.load(tmp_path)


def test_bad_folders_name_the_problem(tmp_path):
    make("llama", tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ModelFormatError, match="model_type 'gpt2' is not supported"):
        hf.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 80}))
    with pytest.raises(ModelFormatError, match=r"gate_proj.weight' .* has shape \[64, 32\], the config needs \[80, 32\]"):
        hf.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(ModelFormatError, match="model.layers.2.input_layernorm.weight' is missing"):
        hf.load(tmp_path)
    with pytest.raises(ModelFormatError, match="not a model folder"):
        hf.load(tmp_path / "nothing")
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    assert main(["generate", str(tmp_path), "--prompt", "x"]) == 2


def test_bf16_tensors_are_widened(tmp_path):
    ref = make("qwen3", tmp_path)
    ref.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    m = hf.load(tmp_path / "bf16")
    w = ref.model.layers[0].mlp.gate_proj.weight.detach().float().numpy()
    np.testing.assert_array_equal(m.graph_weights["layers"][0]["w1"], w)


def test_tokenizer_json_and_cli(tmp_path, capsys):
    tokenizers = pytest.importorskip("tokenizers", reason="the hf extra (tokenizers) is not installed")
    make("qwen2", tmp_path)
    words = ["<s>", "hello", "world", "the", "cat"] + [f"w{i}" for i in range(90)]
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tk.decoder = tokenizers.decoders.WordPiece()
    tk.save(str(tmp_path / "tokenizer.json"))
    m = hf.load(tmp_path)
    assert m.encode("hello world the cat") == [1, 2, 3, 4]
    assert main(["generate", str(tmp_path), "--prompt", "hello world", "--steps", "5", "--temperature", "0",
                 "--numerics", "exact", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["prompt_tokens"] == [1, 2]
    expected = list(m.generate([1, 2], 5, numerics="exact"))
    stop = expected.index(95) if 95 in expected else 5
    assert rep["tokens"] == expected[:stop]
    assert rep["text"] == m.decode([1, 2] + rep["tokens"])[len("hello world"):]   # the continuation, spaced
    words += ["extra", "more"]   # a tokenizer larger than the model's vocabulary (96)
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
    tk.save(str(tmp_path / "tokenizer.json"))
    assert main(["generate", str(tmp_path), "--prompt", "hello"]) == 2
    assert "do not belong together" in capsys.readouterr().err


def test_fp16_tensors_are_mapped_not_copied(tmp_path):
    """A checkpoint stored in fp16 loads as read-only views of the memory-mapped file (loading
    allocates a small fraction of the weights), and runs exactly like the same weights stored
    as float32: the programs round both to the same fp16 values."""
    import tracemalloc
    torch.manual_seed(0)           # wide enough (5 MB of fp16 weights) that loading overheads do not dominate
    ref = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        **{**COMMON, "hidden_size": 256, "intermediate_size": 1024}, tie_word_embeddings=True)).eval()
    ref.half().save_pretrained(tmp_path / "fp16")
    ref.float().save_pretrained(tmp_path / "fp32")        # the same fp16-representable values, widened
    tracemalloc.start()
    try:
        m16 = hf.load(tmp_path / "fp16")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    w1 = m16.graph_weights["layers"][0]["w1"]
    stored = sum(a.nbytes for layer in m16.graph_weights["layers"] for a in layer.values()) + \
        m16.graph_weights["embed"].nbytes
    assert w1.dtype == np.float16 and not w1.flags.writeable and not w1.flags.owndata
    assert peak < stored / 4, (peak, stored)
    m32 = hf.load(tmp_path / "fp32")
    assert m32.graph_weights["layers"][0]["w1"].dtype == np.float32
    np.testing.assert_array_equal(w1.astype(np.float32), m32.graph_weights["layers"][0]["w1"])
    for numerics in ("exact", "profile"):
        np.testing.assert_array_equal(m16.logits(PROMPT, numerics=numerics), m32.logits(PROMPT, numerics=numerics))
    assert list(m16.generate(PROMPT, 6)) == list(m32.generate(PROMPT, 6))


def test_a_tensor_whose_offsets_leave_the_file_is_refused(tmp_path):
    make("qwen3", tmp_path)
    path = tmp_path / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - 64])            # the last tensor's bytes cut short
    with pytest.raises(ModelFormatError):
        m = hf.load(tmp_path)
        for layer in m.graph_weights["layers"]:
            for a in layer.values():
                np.asarray(a).sum()
