"""The ```python blocks of README.md and docs/ run as a new user would run them.

Each block is taken from the file as it is now and executed in a fresh namespace, in tmp_path,
after a short prelude that makes what the text leaves to the reader (a model file, `prog`, `x`,
`torch_module`, ...). Substitutions are minimal and listed per block; each must still match the
text, so a doc edit that breaks one fails here rather than going stale. Sizes: training and
generation steps are cut (300 -> 20, 64 -> 8 or 4) and the model files are tiny, to keep the
whole file under ~20 s. Lines that need an extra that is not installed (torch, coremltools,
onnx) are dropped so the numpy-only part still runs; CI installs every extra, so there nothing
is dropped or skipped. The hwx block reads a compiled program from ../shared and skips, saying
so, without it, like tests/test_hwx.py.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):       # blocked in sys.modules (a numpy-only run)
        return False


def blocks(page: str) -> list[str]:
    found = BLOCK.findall((ROOT / page).read_text(encoding="utf-8"))
    assert found, f"{page} has no ```python block any more"
    return found


def run(code: str, where: str, tmp_path, monkeypatch, prelude: str = "", subs=(), needs=None) -> dict:
    """Execute `prelude + code` in tmp_path. subs: (old, new) replacements that must match;
    needs: {module: [substrings]}: lines containing a substring are dropped when the module
    (an optional extra) is not installed."""
    for old, new in subs:
        assert old in code, f"{where}: the text no longer contains {old!r}; update this test's substitution"
        code = code.replace(old, new)
    for module, marks in (needs or {}).items():
        if not have(module):
            code = "\n".join(line for line in code.splitlines() if not any(m in line for m in marks))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(prelude + "\n" + code, where, "exec"), namespace)
    return namespace


# what the text leaves to the reader: a small program, its input, two weight arrays
PROG = """
import numpy as np, anekit as ak
prog = ak.program({"y": ak.relu(ak.conv(ak.input("x", (1, 64, 1, 32)),
                                        np.random.default_rng(0).standard_normal((64, 64, 1, 1)) / 8))})
x = np.random.default_rng(1).standard_normal((1, 64, 1, 32)).astype(np.float16)
w1, w2 = np.arange(10, dtype=np.float16), np.ones((3, 4), np.float32)
"""

# a tiny llama2.c model and a byte-level tokenizer under the names the text uses
LLAMA = """
import anekit as ak
from anekit.train.pipelines.corpus import byte_tokenizer
_c = ak.models.llama2c.Config(dim=32, hidden_dim=64, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=259,
                              seq_len=32)
ak.models.llama2c.new(_c, seed=0).save("stories15M.bin")
byte_tokenizer().save("tokenizer.bin")
"""


# --- README.md ---------------------------------------------------------------------------------

def test_readme_short_example(tmp_path, monkeypatch):
    code = blocks("README.md")[0]
    prelude = ""
    if have("torch"):
        prelude = "import torch\ntorch_module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())\n" \
                  "example = torch.randn(2, 8)\n"
    ns = run(code, "README.md: a short example", tmp_path, monkeypatch, prelude,
             needs={"coremltools": ["mlpackage"], "torch": ["from_torch", "prog3"]})
    assert (tmp_path / "model" / "model.mil").is_file() and (tmp_path / "model" / "weights" / "weight.bin").is_file()
    assert ns["out"].shape == (1, 128, 1, 256) and ns["out"].dtype == np.float16
    np.testing.assert_allclose(ns["out"].astype(np.float32).sum(axis=1), 1.0, atol=2e-2)   # a softmax over C
    if have("coremltools"):
        assert ns["prog2"].main.inputs[0].shape == (1, 64, 1, 256)
    if have("torch"):
        assert ns["small"].main.outputs


def test_readme_language_models(tmp_path, monkeypatch):
    code = blocks("README.md")[1]
    ns = run(code, "README.md: language models", tmp_path, monkeypatch, LLAMA,
             subs=[("steps=64", "steps=8")])
    assert 1 <= len(ns["ids"]) <= 8 and all(0 <= t < 259 for t in ns["ids"])


def test_readme_training(tmp_path, monkeypatch):
    for extra in ("sklearn", "safetensors"):
        if not have(extra):
            pytest.importorskip(extra, reason="the train extra is not installed")
    code = blocks("README.md")[2]
    ns = run(code, "README.md: training", tmp_path, monkeypatch, subs=[("steps=300", "steps=20")])
    assert ns["trainer"].step == 20 and (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()


def test_readme_has_the_blocks_this_file_runs():
    assert len(blocks("README.md")) == 3, "README.md gained or lost a ```python block: run it here too"


# --- docs/ -------------------------------------------------------------------------------------

def test_mil_api_block(tmp_path, monkeypatch):
    ns = run(blocks("docs/mil.md")[0], "docs/mil.md", tmp_path, monkeypatch, PROG)
    assert list(ns["files"]) == ["weights/weight.bin"] and ns["text"].startswith("program(1.3)")
    assert (tmp_path / "model" / "model.mil").read_text().startswith("program(1.0)")
    assert len(ns["offsets"]) == 2 and ns["offsets"][1] > ns["offsets"][0]


def test_mil_emission_example_is_what_emit_writes():
    """The 'what emission writes' listing shows real lines of ak.mil.emit for the program it names."""
    import anekit as ak
    text = (ROOT / "docs" / "mil.md").read_text(encoding="utf-8")
    shown = text[text.index("## What emission writes"):].split("```")[1]
    prog = ak.program({"y": ak.conv(ak.input("x", (1, 64, 1, 32)), np.ones((64, 64, 1, 1), np.float16))})
    emitted = ak.mil.emit(prog, dialect="ios18")[0].splitlines()
    lines = [line for line in shown.strip("\n").splitlines() if line.strip() != "..."]
    assert lines and all(line in emitted for line in lines), [line for line in lines if line not in emitted]


def test_coreml_block(tmp_path, monkeypatch):
    pytest.importorskip("coremltools", reason="the coreml extra is not installed")
    prelude = PROG + 'ak.save(prog, "model.mlpackage")\n'
    ns = run(blocks("docs/coreml.md")[0], "docs/coreml.md", tmp_path, monkeypatch, prelude)
    assert ns["out"]["y"].shape == (1, 64, 1, 32)
    assert (tmp_path / "copy.mlpackage" / "Manifest.json").is_file()


def test_hardware_blocks(tmp_path, monkeypatch):
    from anekit.errors import BackendUnavailableError
    from anekit.runtime.ane.machine import ane_availability
    ane, fake = blocks("docs/hardware.md")
    if not ane_availability().available:                   # off a Mac the first block must refuse, saying why
        with pytest.raises(BackendUnavailableError, match="Apple Silicon macOS"):
            run(ane, "docs/hardware.md: ane backend", tmp_path, monkeypatch, PROG)
    ns = run(fake, "docs/hardware.md: FakeTransport", tmp_path, monkeypatch, PROG)
    assert ns["t"].calls and not ns["t"].problems


def test_hwx_block(tmp_path, monkeypatch):
    conv = SHARED / "vectors" / "hwx" / "h13_conv.hwx"
    if not conv.is_file():
        pytest.skip(f"hwx vector {conv} not found (set ANEKIT_SHARED to the shared folder)")
    (tmp_path / "conv.hwx").write_bytes(conv.read_bytes())
    ns = run(blocks("docs/hwx.md")[0], "docs/hwx.md", tmp_path, monkeypatch)
    h = ns["h"]
    assert (h.generation, h.compiler_version) == ("h13", "zin_ane_compiler v4.2.1")      # as the text shows
    assert [(b.name, b.role, b.shape, b.strides) for b in h.buffers] == [
        ("image", "input", (1, 3, 1, 1), (192, 64, 64, 2)), ("probs", "output", (1, 3, 1, 1), (192, 64, 64, 2))]
    assert ns["td"].fields["Common.Cin"] == 3
    assert (tmp_path / "patched.hwx").stat().st_size == conv.stat().st_size


def test_llm_block(tmp_path, monkeypatch):
    prelude = PROG + LLAMA + "tokens, prompt_tokens = [1, 72, 105], [1, 72]\n"
    subs = [("steps=64", "steps=4"),
            # a random STORIES15M-shaped model costs seconds to build; the tiny Config stands in for it
            ("ak.models.llama2c.new(ak.models.llama2c.STORIES15M)", "ak.models.llama2c.new(_c)"),
            # a Hugging Face folder needs transformers to make; tests/test_hf_import.py runs hf.load
            ('m = ak.models.hf.load("qwen3-folder")', "pass")]
    ns = run(blocks("docs/llm.md")[0], "docs/llm.md", tmp_path, monkeypatch, prelude, subs)
    assert (tmp_path / "out.bin").is_file() and ns["m"].quantize == "int8"
    assert ns["q"].main.outputs


def test_training_blocks(tmp_path, monkeypatch):
    for extra in ("sklearn", "safetensors", "matplotlib"):
        if not have(extra):
            pytest.importorskip(extra, reason="the train and plot extras are not installed")
    fit, *_, api = blocks("docs/training.md")
    ns = run(fit, "docs/training.md: fit", tmp_path, monkeypatch, subs=[("steps=300", "steps=20")])
    assert ns["result"].steps == 20 and (tmp_path / "loss.png").stat().st_size > 0
    prelude = """
import numpy as np, anekit as ak
init_array = np.full((1, 4, 1, 8), 0.5, np.float16)
w2 = ak.param("w2", init_array)
"""
    # the block's `loss` is the reader's: one made from w1 and w2 stands in (after w1 exists)
    subs = [("w1.init holds the initial value\n",
             "w1.init holds the initial value\nloss = ((w1 * w2) * (w1 * w2)).sum(axes=[1, 3], keep_dims=True)\n")]
    ns = run(api, "docs/training.md: autodiff API", tmp_path, monkeypatch, prelude, subs)
    assert [p.name for p in ns["params"]] == ["w2", "w1"] and set(ns["outs"]) == {"loss", "g1"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")    # the TorchScript exporter says it is old
def test_importers_block(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    prelude = """
import torch

class Model(torch.nn.Module):                      # forward's argument is `x`, the feed's name
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 8)

    def forward(self, x):
        return torch.relu(self.fc(x))

torch.manual_seed(0)
model, x = Model(), torch.randn(2, 16)
"""
    code = blocks("docs/importers.md")[0]
    needs = {}
    if have("onnx"):
        prelude += 'torch.onnx.export(model, (x,), "model.onnx", input_names=["x"], dynamo=False)\n'
    else:
        needs = {"onnx": ["from_onnx"]}
    ns = run(code, "docs/importers.md", tmp_path, monkeypatch, prelude, needs=needs)
    ref = torch.relu(ns["model"].fc(ns["x"])).detach().numpy()
    (y,) = ns["out"].values()             # "output" from torch; the graph's output name from ONNX
    np.testing.assert_allclose(y.astype(np.float32), ref, atol=2e-2, rtol=2e-2)
