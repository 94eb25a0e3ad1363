"""`anekit generate` and the llama2.c tokenizer on a synthetic vocabulary (no reference files)."""
import json

import numpy as np
import pytest

from anekit.cli import main
from anekit.errors import ModelFormatError
from anekit.models import llama2c
from anekit.models.tokenizer import Tokenizer, printable

MERGES = [b" ", b"h", b"e", b"l", b"o", b"w", b"r", b"d", b"t", b"he", b"ll", b"hell", b"hello", b" hello",
          b"or", b"wor", b"ld", b"world", b" world", b"\xc3\xa9"]


def synthetic_tokenizer(vocab: int = 300) -> Tokenizer:
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{i:02X}>".encode() for i in range(256)] + MERGES
    pieces += [f"x{i}".encode() for i in range(vocab - len(pieces))]
    scores = [0.0] * 259 + [-1.0 * i for i in range(len(MERGES))][::-1] + [-1e3] * (vocab - 259 - len(MERGES))
    return Tokenizer(pieces, scores, max_token_length=max(len(p) for p in pieces))


def test_encode_follows_run_c_rules():
    tok = synthetic_tokenizer()
    ids = tok.encode("hello world")
    assert [tok.pieces[i] for i in ids] == [b"\n<s>\n", b" hello", b" world"]
    # a code point with a piece stays whole; one without falls back to its bytes (+3)
    ids = tok.encode("é€", bos=False, eos=True)
    assert [tok.pieces[i] for i in ids[:2]] == [b" ", b"\xc3\xa9"]
    assert ids[2:5] == [0xE2 + 3, 0x82 + 3, 0xAC + 3] and ids[-1] == 2
    assert tok.encode("") == [1]
    assert tok.decode_all(tok.encode("hello é€ world")[1:]) == "hello é€ world".encode()
    assert tok.decode(1, tok.lookup(b" hello")) == b"hello"        # leading space dropped after BOS
    assert printable(b"\x07") == b"" and printable(b"\n") == b"\n"


def test_tokenizer_file_round_trip_and_corruption(tmp_path):
    tok = synthetic_tokenizer()
    tok.save(tmp_path / "t.bin")
    back = Tokenizer.load(tmp_path / "t.bin")
    assert back.pieces == tok.pieces and np.array_equal(back.scores, tok.scores)
    raw = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "bad.bin").write_bytes(raw[:-3])
    with pytest.raises(ModelFormatError, match="truncated"):
        Tokenizer.load(tmp_path / "bad.bin")
    (tmp_path / "bad.bin").write_bytes(b"\xff\xff\xff\x7f")
    with pytest.raises(ModelFormatError, match="max_token_length"):
        Tokenizer.load(tmp_path / "bad.bin")
    with pytest.raises(ModelFormatError, match="do not belong together"):
        tok.check_vocab(512)


@pytest.fixture
def model(tmp_path):
    c = llama2c.Config(dim=32, hidden_dim=72, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, seq_len=32)
    m = llama2c.new(c, seed=5)
    m.save(tmp_path / "m.bin")
    synthetic_tokenizer().save(tmp_path / "tokenizer.bin")
    return tmp_path


def test_generate_streams_text_and_reports_speed(model, capsys):
    assert main(["generate", str(model / "m.bin"), "--prompt", "hello", "--steps", "6", "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("hello") and out.endswith("\n")
    assert "prefill: 2 tokens" in err and "decode: 5 tokens" in err and "tok/s" in err


def test_generate_json_greedy_matches_the_api(model, capsys):
    args = ["generate", str(model / "m.bin"), "--prompt", "hello world", "--steps", "8", "--temperature", "0",
            "--tokenizer", str(model / "tokenizer.bin"), "--json", "-t", "m1", "--numerics", "exact"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    tok = synthetic_tokenizer()
    assert rep["prompt_tokens"] == tok.encode("hello world")
    m = llama2c.load(model / "m.bin")
    expected = list(m.generate(rep["prompt_tokens"], 8, numerics="exact"))
    stop = expected.index(1) if 1 in expected else len(expected)    # BOS ends a sequence, as in run.c
    assert rep["tokens"] == expected[:stop]
    assert rep["decode_tokens_per_s"] > 0 and rep["prefill_tokens_per_s"] > 0
    prevs = [rep["prompt_tokens"][-1]] + rep["tokens"][:-1]
    pieces = b"".join(printable(tok.decode(p, t)) for p, t in zip(prevs, rep["tokens"]))  # run.c's safe_printf
    assert rep["text"] == pieces.decode("utf-8", "replace")


@pytest.mark.parametrize("extra, tok_vocab, message", [
    (["--prompt", "hello " * 40], 300, "exceed the model's context of 32"),
    ([], 512, "do not belong together"),
    (["--tokenizer", "/nonexistent/tokenizer.bin"], 300, "no tokenizer"),
    (["--steps", "-1"], 300, "--steps"),
])
def test_generate_bad_input_is_one_line(model, capsys, extra, tok_vocab, message):
    synthetic_tokenizer(tok_vocab).save(model / "tokenizer.bin")
    assert main(["generate", str(model / "m.bin"), "--steps", "3", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_generate_bad_model_is_one_line(model, capsys):
    raw = (model / "m.bin").read_bytes()
    (model / "m.bin").write_bytes(raw[:-100])
    assert main(["generate", str(model / "m.bin"), "--steps", "3"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert main(["generate", str(model / "nothing.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_generate_quantized_matches_the_api(model, capsys):
    args = ["generate", str(model / "m.bin"), "--prompt", "hello world", "--steps", "6", "--temperature", "0",
            "--json", "--quantize", "int8", "--numerics", "exact"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["quantize"] == "int8"
    m = llama2c.load(model / "m.bin", quantize="int8")
    assert any(o.type == "constexpr_affine_dequantize" for o in m.decode_program().main.ops)
    expected = list(m.generate(rep["prompt_tokens"], 6, numerics="exact"))
    stop = expected.index(1) if 1 in expected else len(expected)
    assert rep["tokens"] == expected[:stop]
    assert main(["generate", str(model / "m.bin"), "--steps", "2", "--quantize", "lut4"]) == 0
    assert "lut4 weights" in capsys.readouterr().err


def test_generate_finds_the_tokenizer_train_stories_writes(model, capsys):
    # `anekit train stories --out m.bin` saves m.tokenizer.bin beside the model; generate must pick it
    # over a tokenizer.bin of another vocabulary in the same folder (a new user's walkthrough hit this).
    synthetic_tokenizer(512).save(model / "tokenizer.bin")
    synthetic_tokenizer(300).save(model / "m.tokenizer.bin")
    assert main(["generate", str(model / "m.bin"), "--prompt", "hello", "--steps", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_tokens"] == synthetic_tokenizer().encode("hello")
