"""Every converted model runs (issue 15 item 1): the corpus in coreml_corpus.py (CNNs,
ViT/Swin, MobileViT, Hugging Face encoders and decoders with padding masks, LSTM/GRU,
detection and segmentation heads), converted by coremltools 9 once per session, loads with
ak.load and runs on the simulator (M4 numerics) with a relative L2 error against PyTorch fp32
of at most max(1.2 x PyTorch's own fp16 error on the same model and inputs, 2e-2).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import available

pytestmark = [pytest.mark.torch, pytest.mark.coremltools, pytest.mark.transformers]

if all(available(m) for m in ("torch", "torchvision", "transformers", "coremltools")):
    import coreml_corpus as corpus
    ENTRIES = corpus.CORPUS
else:                                    # the markers skip every test, naming the extra
    corpus, ENTRIES = None, []
    if not available("torchvision"):
        pytestmark.append(pytest.mark.skip(reason="needs torchvision (pip install anekit[test])"))


def _param(entry):
    marks = []
    if entry.missing_op:
        marks.append(pytest.mark.xfail(strict=True, reason=f"{entry.missing_op} not implemented (issue 15)"))
    if entry.known_error:
        marks.append(pytest.mark.xfail(strict=True, reason=entry.known_error))
    return pytest.param(entry, id=entry.name, marks=marks)


@pytest.fixture(scope="session")
def packages(tmp_path_factory):
    """Converted packages, made on first use and kept for the session."""
    folder = tmp_path_factory.mktemp("corpus")
    return lambda entry: corpus.convert(entry, folder)


def test_corpus_covers_the_issue_families():
    assert len(ENTRIES) >= 25
    families = {e.family for e in ENTRIES}
    assert {"cnn", "vit", "hf", "rnn", "seg", "det"} <= families
    names = {e.name for e in ENTRIES}
    assert {"mobilevit", "swin", "vit", "bert", "gpt2", "llama", "qwen2", "mistral", "clip_text", "lstm", "gru"} <= names


@pytest.mark.parametrize("entry", [_param(e) for e in ENTRIES])
def test_model_runs_within_fp16_error(entry, packages):
    res = corpus.evaluate(entry, packages(entry))
    assert np.isfinite(res.error), res
    assert res.error <= res.bound, (f"{entry.name}: relative L2 {res.error:.2e} > bound {res.bound:.2e} "
                                    f"(torch {res.low_dtype} {res.torch_low:.2e})")


def _one_ulp_up(kernel_fn):
    """`kernel_fn` with its output rounded to fp16 and then moved up one ulp: a small,
    systematic numerics bug of the kind the spread test must catch."""
    from anekit.sim.fp16 import F32, round_fp16

    def biased(c, *args, **kwargs):
        y = round_fp16(np.asarray(kernel_fn(c, *args, **kwargs), F32))
        return y + np.spacing(np.abs(y).astype(np.float16)).astype(F32)
    return biased


def test_mobilenet_v3_small_typical_error_and_a_one_ulp_bug(packages, monkeypatch):
    """MobileNetV3-small misses the issue's bound on the one input the corpus test uses (a
    strict xfail above), but over 16 inputs its error is within 1.2x PyTorch fp16's
    (geometric means; measured 0.86x, 0.91x over 48 inputs). The statistic still catches a
    real numerics bug: one ulp of upward bias in sigmoid_hard (the hardswish and SE gate)
    takes it to about 3.5x."""
    import dataclasses
    from anekit.ir.spec import lookup
    entry = corpus.BY_NAME["mobilenet_v3_small"]
    path, seeds = packages(entry), range(1, 17)
    sim, low = corpus.input_spread(entry, path, seeds)
    ratio = corpus.geometric_mean(sim) / corpus.geometric_mean(low)
    assert ratio <= corpus.FACTOR, f"simulator / torch fp16 error over {len(sim)} inputs: {ratio:.2f}"
    spec = lookup("sigmoid_hard")
    monkeypatch.setattr(spec, "kernel", dataclasses.replace(spec.kernel, fn=_one_ulp_up(spec.kernel.fn)))
    buggy, _ = corpus.input_spread(entry, path, seeds, torch_low=False)
    assert corpus.geometric_mean(buggy) / corpus.geometric_mean(low) > 2 * corpus.FACTOR


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_padding_mask_reaches_the_output(name, packages):
    """The mask is honoured: the simulator's output moves when padding positions change."""
    import anekit as ak
    entry = corpus.BY_NAME[name]
    prog = ak.load(packages(entry))
    feeds = corpus.numpy_feeds(entry.sample())
    with ak.compile(prog, backend="sim", target=corpus.TARGET) as exe:
        masked = np.asarray(exe(feeds)["y0"], np.float64)
        unmasked = np.asarray(exe({**feeds, "mask": np.ones_like(feeds["mask"])})["y0"], np.float64)
    ref = corpus.torch_outputs(entry.make(), entry.sample())[0]
    err = np.linalg.norm(masked - ref) / np.linalg.norm(ref)
    assert np.linalg.norm(masked - unmasked) / np.linalg.norm(ref) > 2 * err


def test_lstm_is_reported_off_the_engine(packages):
    """The corpus LSTM converts to Core ML's `lstm` op, which ak.check puts on the host
    (guide Appendix A: no engine path), so its ANE coverage is below 1 and says why."""
    res = corpus.evaluate(corpus.BY_NAME["lstm"], packages(corpus.BY_NAME["lstm"]))
    assert "lstm" in res.op_types and res.coverage < 1 and "lstm" in res.off_reason


def test_benchmark_measures_and_writes_its_docs_section(tmp_path, monkeypatch, capsys):
    """benchmarks/real_models.py (what the simulator's speed is judged by) runs on one model
    and rewrites only its own section of the docs page, keeping the section's hand-written
    subsections."""
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "real_models", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "real_models.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    docs = tmp_path / "coreml.md"
    docs.write_text("# Core ML\n\nintro\n\n## Model corpus\n\nold table\n\n### Notes\n\nhand-written\n\n"
                    "## Later\n\nkept\n")
    monkeypatch.setattr(bench, "DOCS", docs)
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    # a model waiting for an op gets a row saying so instead of a measurement
    gru = dataclasses.replace(bench.corpus.BY_NAME["gru"], missing_op="while_loop")
    monkeypatch.setitem(bench.corpus.BY_NAME, "gru", gru)
    monkeypatch.setattr(bench.corpus, "CORPUS", [gru if e.name == "gru" else e for e in bench.corpus.CORPUS])
    assert bench.main(["--models", "fcn_head,gru", "--repeat", "1", "--min-time", "0",
                       "--cache", str(tmp_path / "cache"), "--write-docs"]) == 0
    out = capsys.readouterr().out
    assert "fcn_head" in out and "not run: `while_loop` not implemented" in out
    text = docs.read_text()
    assert "old table" not in text and text.startswith("# Core ML\n\nintro\n\n## Model corpus\n")
    assert text.endswith("\n### Notes\n\nhand-written\n\n## Later\n\nkept\n") and "| fcn_head | 11 |" in text
    # rows the table has: a run of some models replaces those rows only
    gru_row = next(line for line in text.split("\n") if line.startswith("| gru |"))
    edited = text.replace("| fcn_head | 11 |", "| fcn_head | 99 |").replace(gru_row, "| gru | kept as it was |")
    docs.write_text(edited)
    assert bench.main(["--models", "fcn_head", "--repeat", "1", "--min-time", "0",
                       "--cache", str(tmp_path / "cache"), "--write-docs"]) == 0
    again = docs.read_text()
    assert "| fcn_head | 11 |" in again and "| fcn_head | 99 |" not in again
    assert again.replace("| fcn_head | 11 |", "| fcn_head | 99 |").split("\n")[:3] == edited.split("\n")[:3]
    assert len(again.split("\n")) == len(edited.split("\n")) and "| gru | kept as it was |" in again
