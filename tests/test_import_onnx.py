"""ak.from_onnx: the importer test models exported by torch.onnx, checked against onnxruntime;
the table against the op registry; unmapped ops and bad files as clear errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the test models are exported from PyTorch")
onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the reference is onnxruntime (the test extra)")
pytest.importorskip("onnxscript", reason="torch.onnx.export (dynamo) needs onnxscript (the test extra)")

import anekit as ak  # noqa: E402
import import_models as zoo  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from anekit.errors import ModelImportError, UnmappedOpError, UsageError  # noqa: E402
from anekit.importers.onnx_table import ONNX  # noqa: E402


@pytest.fixture(scope="module", params=list(zoo.MODELS))
def exported(request, tmp_path_factory):
    """(path, onnxruntime output, feeds) for one model, exported once per module."""
    model, example = zoo.MODELS[request.param]()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    torch.onnx.export(model, example, str(path), dynamo=True, verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), example)}
    return request.param, path, sess.run(None, feeds)[0], list(feeds.values())


@pytest.mark.parametrize("dtype", sorted(zoo.TOLERANCES))
def test_model_matches_onnxruntime(exported, dtype):
    name, path, ref, inputs = exported
    prog = ak.from_onnx(path, dtype=dtype)
    numerics, tol = zoo.TOLERANCES[dtype]
    feeds = {t.name: (x.astype(np.int32) if x.dtype.kind in "iu" else x) for t, x in zip(prog.main.inputs, inputs)}
    out = ak.compile(prog, backend="sim", target="m4", numerics=numerics)(feeds)
    (y,) = out.values()
    assert y.shape == ref.shape
    err = zoo.rel_l2(y, ref)
    assert err <= tol, f"{name} {dtype}: relative L2 error {err:.2e} > {tol:.0e}"
    emitted = {op for r in ONNX.values() for op in r.emits} | {"const", "identity"}
    assert {op.type for op in prog.main.ops} <= emitted



def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_unmapped_op_names_it(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    m = _model([helper.make_node("Relu", ["x"], ["r"], name="relu0"),
                helper.make_node("Det", ["r"], ["y"], name="det_node")], [x], [y])
    path = tmp_path / "det.onnx"
    onnx.save(m, str(path))
    with pytest.raises(UnmappedOpError, match="'Det' \\('det_node'\\)") as info:
        ak.from_onnx(path)
    assert info.value.op == "Det" and info.value.source == "det_node"


def test_constant_subgraphs_fold_and_shapes_come_from_constants():
    """Shape -> Concat -> Reshape on an initializer folds to a constant shape; fp32 keeps weights."""
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [2, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 2])
    w = onnx.numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(6, 2) / 10, "w")
    tail = onnx.numpy_helper.from_array(np.array([3, 2], dtype=np.int64), "tail")
    m = _model([helper.make_node("Shape", ["w"], ["ws"]),
                helper.make_node("Slice", ["ws", "zero", "one"], ["lead"]),
                helper.make_node("Constant", [], ["zero"], value_ints=[0]),
                helper.make_node("Constant", [], ["one"], value_ints=[1]),
                helper.make_node("Concat", ["two", "tail"], ["shape"], axis=0),
                helper.make_node("Constant", [], ["two"], value_ints=[2]),
                helper.make_node("Reshape", ["x2", "shape"], ["y"]),
                helper.make_node("Mul", ["input.1", "input.1"], ["x2"])],
               [x], [y], [w, tail])
    m.graph.node.sort(key=lambda n: ["Constant", "Shape", "Slice", "Concat", "Mul", "Reshape"].index(n.op_type))
    prog = ak.from_onnx(m, dtype="fp32")
    assert [t.name for t in prog.main.inputs] == ["input_1"]
    xs = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    out = ak.compile(prog, backend="sim", numerics="exact")({"input_1": xs})["y"]
    np.testing.assert_allclose(out, (xs * xs).reshape(2, 3, 2), rtol=1e-6)


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(ModelImportError, match="no such ONNX file"):
        ak.from_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(ModelImportError, match="not a readable ONNX model"):
        ak.from_onnx(bad)
    with pytest.raises(UsageError, match="dtype"):
        ak.from_onnx(bad, dtype="int8")
    with pytest.raises(UsageError):
        ak.from_onnx(42)


def test_fp16_constants_saturate_instead_of_overflowing():
    """An additive mask made with finfo(float32).min (as torch.onnx writes causal masks) stays
    finite in fp16, so the masked softmax is exact zeros, not NaN."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    mask = np.where(np.tril(np.ones((2, 3), dtype=bool)), 0, np.finfo(np.float32).min).astype(np.float32)
    m = _model([helper.make_node("Add", ["x", "mask"], ["s"]),
                helper.make_node("Mul", ["s", "zero"], ["z"]),
                helper.make_node("Add", ["s", "z"], ["t"]),
                helper.make_node("Softmax", ["t"], ["y"], axis=-1)],
               [x], [y], [onnx.numpy_helper.from_array(mask, "mask"),
                          onnx.numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    xs = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    prog = ak.from_onnx(m)
    consts = [op.outputs[0].const for op in prog.main.ops if op.type == "const" and op.outputs[0].shape == (2, 3)]
    assert consts and np.isfinite(consts[0]).all() and consts[0].min() == np.finfo(np.float16).min
    out = ak.compile(prog, backend="sim", numerics="exact")({"x": xs})["y"]
    ref = ort.InferenceSession(m.SerializeToString()).run(None, {"x": xs})[0]
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, atol=2e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_exporter_graph(tmp_path):
    """The older TorchScript exporter (dynamo=False) names inputs 'input.1' and writes constant
    chains (ConstantOfShape, GatherElements) that only folding handles; BERT from it matches too."""
    model, example = zoo.bert()
    path = tmp_path / "bert_ts.onnx"
    try:
        torch.onnx.export(model, example, str(path), dynamo=False)
    except Exception as e:   # the exporter is deprecated; a torch without it is not our failure
        pytest.skip(f"torch.onnx.export(dynamo=False) is unavailable here: {e}")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    sess = ort.InferenceSession(str(path))
    ref = sess.run(None, {sess.get_inputs()[0].name: example[0].numpy()})[0]
    prog = ak.from_onnx(path, dtype="fp32")
    assert [t.name for t in prog.main.inputs] == [sess.get_inputs()[0].name.replace(".", "_")]
    out = ak.compile(prog, backend="sim", numerics="exact")(zoo.feeds_for(prog, example))
    assert zoo.rel_l2(next(iter(out.values())), ref) <= 1e-4
    assert "ConstantOfShape" in ops and "ConstantOfShape" not in ONNX   # folded, never converted


class _RunningSum(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        return torch.cumsum(y, dim=-1)    # ONNX CumSum: no rule in the table


def test_unmapped_op_from_torch_onnx_names_the_model_line(tmp_path):
    import inspect
    path = tmp_path / "cumsum.onnx"
    torch.onnx.export(_RunningSum().eval(), (torch.randn(2, 5),), str(path), dynamo=True, verbose=False)
    with pytest.raises(UnmappedOpError) as info:
        ak.from_onnx(path)
    line = inspect.getsourcelines(_RunningSum.forward)[1] + 2
    assert info.value.op == "CumSum"
    assert f"test_import_onnx.py:{line}" in str(info.value) and "torch.cumsum(y, dim=-1)" in str(info.value)
