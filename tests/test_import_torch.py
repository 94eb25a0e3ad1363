"""ak.from_torch: torchvision ResNet-18 / MobileNetV3, a BERT encoder and a Llama block against
PyTorch itself; the table against the op registry; unmapped ops named with their model line."""
import inspect

import numpy as np

import pytest

torch = pytest.importorskip("torch", reason="the torch importer needs PyTorch (the torch extra)")

import anekit as ak  # noqa: E402
import import_models as zoo  # noqa: E402
from anekit.errors import ModelImportError, UnmappedOpError, UsageError  # noqa: E402
from anekit.importers.aten_table import ATEN  # noqa: E402


@pytest.fixture(scope="module", params=list(zoo.MODELS))
def case(request):
    """(name, model, example inputs, PyTorch's output), built once per model."""
    model, example = zoo.MODELS[request.param]()
    with torch.no_grad():
        return request.param, model, example, model(*example).numpy()


@pytest.mark.parametrize("dtype", sorted(zoo.TOLERANCES))
def test_model_matches_pytorch(case, dtype):
    name, model, example, ref = case
    prog = ak.from_torch(model, example, dtype=dtype)
    numerics, tol = zoo.TOLERANCES[dtype]
    out = ak.compile(prog, backend="sim", target="m4", numerics=numerics)(zoo.feeds_for(prog, example))
    assert out["output"].shape == ref.shape
    err = zoo.rel_l2(out["output"], ref)
    assert err <= tol, f"{name} {dtype}: relative L2 error {err:.2e} > {tol:.0e}"
    # Only ops the table says it emits reach the program (plus the consts it makes).
    emitted = {op for r in ATEN.values() for op in r.emits} | {"const", "identity"}
    assert {op.type for op in prog.main.ops} <= emitted



def test_model_through_core_aten_matches_pytorch(case):
    """decompose=True: the Core ATen graph (addmm, bmm, _softmax, where, any, full_like, ...)."""
    name, model, example, ref = case
    prog = ak.from_torch(model, example, dtype="fp32", decompose=True)
    out = ak.compile(prog, backend="sim", numerics="exact")(zoo.feeds_for(prog, example))
    err = zoo.rel_l2(out["output"], ref)
    assert err <= 1e-4, f"{name} via Core ATen: relative L2 error {err:.2e}"
    assert "linear" not in {op.type for op in prog.main.ops}


def test_weights_are_fp16_by_default_and_fp32_on_request():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 4).eval()
    x = torch.randn(2, 8)
    for dtype in ("fp16", "fp32"):
        prog = ak.from_torch(lin, (x,), dtype=dtype)
        consts = [op.outputs[0] for op in prog.main.ops if op.type == "const" and op.outputs[0].size > 1]
        assert consts and {c.dtype for c in consts} == {dtype}
        assert [t.dtype for t in prog.main.inputs] == [dtype]
        assert prog.main.inputs[0].name == "input" and prog.main.inputs[0].shape == (2, 8)


class _Bessel(torch.nn.Module):
    def forward(self, x):
        y = torch.relu(x)
        return torch.special.bessel_j0(y)      # no anekit op computes Bessel functions


def test_unmapped_op_names_the_aten_op_and_the_source_line():
    with pytest.raises(UnmappedOpError) as info:
        ak.from_torch(_Bessel(), (torch.randn(3, 4),))
    err = info.value
    line = inspect.getsourcelines(_Bessel.forward)[1] + 2
    assert err.op == "aten.special_bessel_j0.default"
    assert "aten.special_bessel_j0" in str(err)
    assert f"test_import_torch.py:{line}" in str(err) and "bessel_j0(y)" in str(err)
    assert isinstance(err, ModelImportError)


class _ConvBnPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        y = torch.nn.functional.hardswish(self.bn(self.conv(x)))
        return self.fc(y.mean(dim=(2, 3))).softmax(-1)


@pytest.mark.parametrize("decompose", [False, True])
def test_core_aten_decomposition_path(decompose):
    """decompose=True lowers to Core ATen first (convolution, addmm, ...): both paths agree."""
    torch.manual_seed(1)
    m = _ConvBnPool().eval()
    with torch.no_grad():
        m.bn.running_mean.normal_(0, 0.1)
        m.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = m(x).numpy()
    prog = ak.from_torch(m, (x,), dtype="fp32", decompose=decompose)
    out = ak.compile(prog, backend="sim", numerics="exact")({"x": x.numpy()})["output"]
    assert zoo.rel_l2(out, ref) <= 1e-5
    types = {op.type for op in prog.main.ops}
    assert ("matmul" in types) == decompose and ("linear" in types) != decompose


def test_bad_arguments_are_usage_errors():
    lin = torch.nn.Linear(2, 2)
    with pytest.raises(UsageError, match="dtype"):
        ak.from_torch(lin, (torch.randn(1, 2),), dtype="bf16")
    with pytest.raises(UsageError, match="torch.nn.Module"):
        ak.from_torch(lambda x: x, (torch.randn(1, 2),))
    with pytest.raises(UsageError, match="example_inputs"):
        ak.from_torch(lin, "not inputs")


def test_training_mode_dropout_is_refused():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).train()
    with pytest.raises(ModelImportError, match="eval"):
        ak.from_torch(m, (torch.randn(1, 4),))


def test_scaled_attention_variants():
    """sdpa with an explicit scale, is_causal and GQA heads (composed around the declared op)."""
    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3,
                                                                 enable_gqa=True)
            return a + torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    torch.manual_seed(2)
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    ref = Attn()(q, k, v).numpy()
    prog = ak.from_torch(Attn(), (q, k, v), dtype="fp32")
    out = ak.compile(prog, backend="sim", numerics="exact")({"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})
    assert zoo.rel_l2(out["output"], ref) <= 1e-5


def test_bfloat16_module_imports_as_fp16():
    """bf16 weights and inputs (no numpy type) become the program's float type."""
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU()).to(torch.bfloat16).eval()
    x = torch.randn(2, 16, dtype=torch.bfloat16)
    prog = ak.from_torch(m, (x,))
    assert prog.main.inputs[0].dtype == "fp16"
    out = ak.compile(prog, backend="sim", target="m4")({"input": x.float().numpy()})["output"]
    assert zoo.rel_l2(out, m(x).float().detach().numpy()) <= 2e-2


def test_imported_program_checks_estimates_and_round_trips(tmp_path):
    """An imported program is an ordinary Program: preflight, cost model, MIL save / load."""
    model, example = zoo.llama_block()
    prog = ak.from_torch(model, example)
    assert ak.check(prog, target="m4").ops and ak.estimate(prog, target="m4").total_us > 0
    ak.save(prog, tmp_path / "block")
    again = ak.load(tmp_path / "block")
    feeds = zoo.feeds_for(prog, example)
    a = ak.compile(prog, backend="sim", target="m4")(feeds)["output"]
    b = ak.compile(again, backend="sim", target="m4")(feeds)["output"]
    np.testing.assert_array_equal(a, b)
