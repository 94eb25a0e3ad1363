"""Flexible input shapes (issue 15): Core ML models converted by coremltools with ct.RangeDim and
ct.EnumeratedShapes load once the user pins a shape (ak.load(path, shapes=...), --shape on
run/check/estimate), run on the simulator like PyTorch at that shape, and a missing or
undeclared shape is a ShapeError naming the input and what the model declares.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import optional

import anekit as ak
from anekit import cli
from anekit.cli.check import parse_shapes
from anekit.errors import ShapeError, UsageError

torch = optional("torch")
REL_L2 = 2e-2          # fp16 compute against PyTorch fp32


def _net():
    torch.manual_seed(0)

    class Net(torch.nn.Module):      # spatial size free: conv, relu, global mean, linear
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
    return Net().eval()


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    import coremltools as ct
    net = _net()
    traced = torch.jit.trace(net, torch.randn(1, 3, 16, 16))
    kinds = {"range": ct.Shape(shape=(1, 3, ct.RangeDim(8, 64, default=16), ct.RangeDim(8, 64, default=16))),
             "enum": ct.EnumeratedShapes(shapes=[(1, 3, 16, 16), (1, 3, 32, 24)], default=(1, 3, 16, 16))}
    out = {}
    for kind, shape in kinds.items():
        ml = ct.convert(traced, inputs=[ct.TensorType("x", shape=shape)], outputs=[ct.TensorType("y")],
                        minimum_deployment_target=ct.target.iOS18, compute_precision=ct.precision.FLOAT16,
                        convert_to="mlprogram")
        path = tmp_path_factory.mktemp(kind) / f"{kind}.mlpackage"
        ml.save(str(path))
        out[kind] = str(path)
    return net, out


def _run_and_compare(net, path, shape):
    prog = ak.load(path, shapes={"x": shape})
    assert prog.main.inputs[0].shape == shape
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float16)
    with ak.compile(prog, backend="sim", target="m4") as exe:
        got = np.asarray(exe({"x": x})["y"], np.float64)
    with torch.no_grad():
        ref = net(torch.from_numpy(x.astype(np.float32))).double().numpy()
    assert got.shape == ref.shape
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < REL_L2


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (1, 3, 40, 24), (1, 3, 64, 64)])
@pytest.mark.torch
@pytest.mark.coremltools
def test_range_dim_runs_at_a_pinned_shape(packages, shape):
    net, paths = packages
    _run_and_compare(net, paths["range"], shape)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (1, 3, 32, 24)])
@pytest.mark.torch
@pytest.mark.coremltools
def test_enumerated_shapes_run_at_each_shape(packages, shape):
    net, paths = packages
    _run_and_compare(net, paths["enum"], shape)


@pytest.mark.torch
@pytest.mark.coremltools
@pytest.mark.parametrize("kind, shapes, message", [
    ("range", None, r"input 'x': a flexible shape \[1, 3, 8\.\.64, 8\.\.64\]; pick one"),
    ("enum", None, r"input 'x': a flexible shape one of \[1, 3, 16, 16\], \[1, 3, 32, 24\]"),
    ("range", {"x": (1, 3, 80, 24)}, r"input 'x': shape \[1, 3, 80, 24\] is outside .* \[1, 3, 8\.\.64, 8\.\.64\]"),
    ("range", {"x": (1, 3, 7, 24)}, r"input 'x': shape \[1, 3, 7, 24\] is outside"),
    ("enum", {"x": (1, 3, 24, 32)}, r"input 'x': shape \[1, 3, 24, 32\] is outside .* one of"),
    ("range", {"x": (1, 4, 16, 16)}, r"input 'x': shape \[1, 4, 16, 16\] does not fit its declared shape \[1, 3, \?, \?\]"),
    ("range", {"x": (1, 3, 16)}, r"does not fit its declared shape"),
    ("range", {"x": (1, 3, 16, 16), "z": (2,)}, r"shapes name no input of the model: z \(inputs: x\)"),
    ("range", {"x": (1, 3, 0, 16)}, r"shape for input 'x' must be positive"),
    ("range", {"x": "1,3"}, r"shape for input 'x' must be a sequence of ints"),
])
def test_missing_or_undeclared_shapes_name_the_input(packages, kind, shapes, message):
    with pytest.raises(ShapeError, match=message):
        ak.load(packages[1][kind], shapes=shapes)


@pytest.mark.torch
@pytest.mark.coremltools
def test_cli_run_check_estimate_take_shape(packages, tmp_path, capsys):
    path = packages[1]["range"]
    x = np.random.default_rng(2).standard_normal((1, 3, 40, 24)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["run", path, "-i", f"x={tmp_path / 'x.npy'}", "--backend", "sim", "-t", "m4",
                     "--shape", "x=1,3,40,24", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["shape"] == [1, 4]
    assert cli.main(["check", path, "-t", "m4", "--shape", "x=1,3,40,24", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)
    assert cli.main(["estimate", path, "-t", "m4", "--shape", "x=1,3,40,24"]) == 0
    capsys.readouterr()
    for cmd in (["run", path, "-i", f"x={tmp_path / 'x.npy'}", "--backend", "sim"], ["check", path], ["estimate", path]):
        assert cli.main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "input 'x': a flexible shape" in err and "Traceback" not in err


def test_shape_option_parsing():
    assert parse_shapes([]) is None
    assert parse_shapes(["x=1,3,224,224", "mask=1,8"]) == {"x": (1, 3, 224, 224), "mask": (1, 8)}
    for bad in ("x", "x=", "=1,2", "x=1,a", "x=1,-2", "x=1,0"):
        with pytest.raises(UsageError, match="--shape"):
            parse_shapes([bad])
    with pytest.raises(UsageError, match="given twice"):
        parse_shapes(["x=1", "x=2"])


def test_mil_text_takes_only_its_own_static_shapes(tmp_path):
    path = ak.save(ak.program({"y": ak.relu(ak.input("x", (2, 3)))}), str(tmp_path / "m.mil"))
    assert ak.load(path, shapes={"x": (2, 3)}).main.inputs[0].shape == (2, 3)
    with pytest.raises(ShapeError, match=r"input 'x' differs from its static shape \[2, 3\]"):
        ak.load(path, shapes={"x": (4, 3)})
    with pytest.raises(ShapeError, match="shapes name no input of the model: y"):
        ak.load(path, shapes={"y": (1,)})
