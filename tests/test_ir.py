"""The graph IR: op declarations, builders, shape rules against numpy/torch, naming, errors."""
import inspect

import numpy as np
import pytest

import anekit as ak
from anekit.errors import AnekitError, DTypeError, ShapeError, UnknownOpError
from anekit.ir import REGISTRY, build

REQUIRED_OPS = """const conv conv_transpose matmul linear add sub mul real_div pow maximum minimum abs
square sqrt rsqrt inverse exp log relu relu6 leaky_relu elu gelu silu sigmoid sigmoid_hard tanh
softplus erf clip softmax layer_norm batch_norm instance_norm reduce_sum reduce_mean reduce_max
reduce_min reduce_l2_norm reshape transpose concat split stack slice_by_index slice_by_size squeeze
expand_dims pad tile gather cast select equal greater greater_equal less less_equal avg_pool
max_pool upsample_nearest_neighbor scaled_dot_product_attention constexpr_affine_dequantize
constexpr_lut_to_dense constexpr_sparse_to_dense constexpr_blockwise_shift_scale""".split()


def test_version_and_error_base():
    assert ak.__version__ == "0.1.0"
    for name in dir(ak.errors):
        obj = getattr(ak.errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == "anekit.errors":
            assert issubclass(obj, AnekitError), name


def test_required_op_set_declared_and_exposed():
    missing = [n for n in REQUIRED_OPS if n not in REGISTRY]
    assert not missing
    from anekit.ir.declared import F
    for name, spec in REGISTRY.items():
        # a top-level function owns a few names (ak.quantize quantizes weights): the op is F.<name>
        fn = getattr(F, name) if name in ak._LAZY_FUNCS else getattr(ak, name)
        assert callable(fn) and fn.__name__ == name
        # the builder's signature is the declaration's parameter list, in order
        params = [p for p in inspect.signature(fn).parameters if p != "name"]
        assert params == [p.name for p in spec.params]


def test_gelu_modes_declared():
    assert REGISTRY["gelu"].param("mode").choices == ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")
    x = ak.input("x", (2, 3))
    with pytest.raises(ShapeError, match="gelu: argument 'mode'"):
        ak.gelu(x, mode="FAST")


rng = np.random.default_rng(0)
BCAST = [((2, 3, 4), (4,)), ((1, 3, 1), (2, 1, 5)), ((5,), (3, 1)), ((), (2, 2))]


@pytest.mark.parametrize("xs,ys", BCAST)
def test_broadcast_matches_numpy(xs, ys):
    x, y = ak.input("x", xs, "fp32") if xs else 2.0, ak.input("y", ys, "fp32")
    assert ak.add(x, y).shape == np.broadcast_shapes(xs, ys)
    assert ak.greater(y, 1.0).dtype == "bool"


def test_broadcast_error_names_op_argument_and_shapes():
    with pytest.raises(ShapeError) as e:
        ak.mul(ak.input("a", (2, 3)), ak.input("b", (4, 3)))
    assert "mul" in str(e.value) and "[2, 3]" in str(e.value) and "[4, 3]" in str(e.value)


def test_dtype_mismatch_names_op_argument():
    with pytest.raises(DTypeError, match=r"add: argument 'y' has dtype fp32, expected fp16"):
        ak.add(ak.input("a", (2,)), ak.input("b", (2,), "fp32"))
    with pytest.raises(DTypeError, match="relu: argument .x. has dtype int32; relu accepts fp16, fp32"):
        ak.relu(ak.input("i", (2,), "int32"))


@pytest.mark.parametrize("shape,w,kw", [
    ((1, 3, 17, 19), (8, 3, 3, 3), dict()),
    ((2, 4, 16, 16), (6, 2, 3, 5), dict(groups=2, strides=(2, 1), pad_type="custom", pad=(1, 2, 0, 3))),
    ((1, 8, 15, 15), (8, 1, 3, 3), dict(groups=8, pad_type="same", strides=(2, 2))),
    ((1, 3, 20, 20), (4, 3, 3, 3), dict(dilations=(2, 3), pad_type="custom", pad=(2, 2, 3, 3))),
    ((1, 3, 30), (5, 3, 4), dict(strides=(3,))),
])
def test_conv_shape_matches_torch(shape, w, kw):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y = ak.conv(ak.input("x", shape), np.zeros(w, np.float32), **kw)
    pad_type = kw.get("pad_type", "valid")
    n = len(shape) - 2
    strides, dil = kw.get("strides", (1,) * n), kw.get("dilations", (1,) * n)
    xt = torch.zeros(shape)
    if pad_type == "custom":
        p = kw["pad"]
        pads = []
        for i in reversed(range(n)):
            pads += [p[2 * i], p[2 * i + 1]]
        xt = F.pad(xt, pads)
    conv = {1: F.conv1d, 2: F.conv2d}[n]
    if pad_type == "same":   # MIL "same": out = ceil(in / stride)
        want = [-(-s // st) for s, st in zip(shape[2:], strides)]
        assert y.shape == (shape[0], w[0], *want)
        return
    ref = conv(xt, torch.zeros(w), stride=strides, dilation=dil, groups=kw.get("groups", 1))
    assert y.shape == tuple(ref.shape)


def test_conv_transpose_shape_matches_torch():
    torch = pytest.importorskip("torch")
    y = ak.conv_transpose(ak.input("x", (1, 4, 7, 9)), np.zeros((4, 3, 3, 2)), strides=(2, 3),
                          pad_type="custom", pad=(1, 1, 0, 0))
    ref = torch.nn.functional.conv_transpose2d(torch.zeros(1, 4, 7, 9), torch.zeros(4, 3, 3, 2),
                                               stride=(2, 3), padding=(1, 0))
    assert y.shape == tuple(ref.shape)


def test_conv_errors_name_argument_and_shapes():
    x = ak.input("x", (1, 64, 1, 256))
    with pytest.raises(ShapeError, match=r"conv: argument 'weight': shape \[3, 5, 1, 1\].*\[1, 64, 1, 256\]"):
        ak.conv(x, np.zeros((3, 5, 1, 1)))
    with pytest.raises(ShapeError, match="conv: argument 'bias'"):
        ak.conv(x, np.zeros((8, 64, 1, 1)), bias=np.zeros(7))
    with pytest.raises(ShapeError, match="conv: argument 'strides'"):
        ak.conv(x, np.zeros((8, 64, 1, 1)), strides=(1, 1, 1))


@pytest.mark.parametrize("xs,ys,tx,ty", [((3, 4), (4, 5), False, False), ((2, 1, 3, 4), (5, 3, 6), True, False),
                                         ((7, 4), (6, 4), False, True), ((4,), (4, 2), False, False),
                                         ((2, 3, 4), (4,), False, False)])
def test_matmul_shape_matches_numpy(xs, ys, tx, ty):
    a, b = np.zeros(xs), np.zeros(ys)
    if tx:
        a = np.swapaxes(a, -1, -2)
    if ty:
        b = np.swapaxes(b, -1, -2)
    y = ak.matmul(ak.input("x", xs), ak.input("y", ys), transpose_x=tx, transpose_y=ty)
    assert y.shape == np.matmul(a, b).shape


def test_matmul_inner_mismatch():
    with pytest.raises(ShapeError, match="matmul: argument 'y': inner dimensions differ"):
        ak.matmul(ak.input("x", (3, 4)), ak.input("y", (5, 6)))


def test_movement_shapes_match_numpy():
    a = np.zeros((2, 3, 4, 5))
    x = ak.input("x", a.shape)
    assert ak.reshape(x, shape=[6, -1]).shape == a.reshape(6, -1).shape
    assert ak.reshape(x, shape=[0, 0, 20]).shape == (2, 3, 20)
    assert ak.transpose(x, perm=[3, 1, 0, 2]).shape == a.transpose(3, 1, 0, 2).shape
    assert ak.concat([x, x], axis=-1).shape == np.concatenate([a, a], -1).shape
    assert ak.concat([x, x], axis=1, interleave=True).shape == (2, 6, 4, 5)
    assert [t.shape for t in ak.split(x, split_sizes=[1, 3], axis=2)] == [s.shape for s in np.split(a, [1], 2)]
    assert ak.stack([x, x, x], axis=-1).shape == np.stack([a] * 3, -1).shape
    assert ak.slice_by_index(x, begin=[0, 1, 0, 4], end=[2, 3, 4, 0], stride=[1, 1, 2, -1]).shape == \
        a[0:2, 1:3, 0:4:2, 4:0:-1].shape
    assert ak.slice_by_index(x, begin=[1, 0, 0, 0], end=[0, 3, 4, 5], squeeze_mask=[True, False, False, False],
                             end_mask=[False, True, True, True]).shape == a[1].shape
    assert ak.slice_by_size(x, begin=[0, 1, 2, 0], size=[2, -1, 2, 5]).shape == (2, 2, 2, 5)
    assert ak.expand_dims(x, axes=[0, -1]).shape == (1, 2, 3, 4, 5, 1)
    assert ak.squeeze(ak.input("s", (1, 3, 1)), axes=[0]).shape == (3, 1)
    assert ak.pad(x, pad=[1, 2, 0, 3]).shape == np.pad(a, [(0, 0), (0, 0), (1, 2), (0, 3)]).shape
    assert ak.tile(x, reps=[1, 2, 1, 3]).shape == np.tile(a, (1, 2, 1, 3)).shape
    idx = ak.input("i", (7, 2), "int32")
    assert ak.gather(x, idx, axis=1).shape == np.take(a, np.zeros((7, 2), int), axis=1).shape
    assert ak.reduce_sum(x, axes=[1, -1], keep_dims=True).shape == a.sum((1, 3), keepdims=True).shape
    assert ak.reduce_mean(x).shape == ()
    assert ak.reduce_argmax(x, axis=2).dtype == "int32"
    assert ak.upsample_nearest_neighbor(x, scale_factor_height=2, scale_factor_width=3).shape == (2, 3, 8, 15)
    assert ak.max_pool(x, kernel_sizes=[2, 2], strides=[2, 2]).shape == (2, 3, 2, 2)
    assert ak.avg_pool(x, kernel_sizes=[3, 3], strides=[2, 2], ceil_mode=True).shape == (2, 3, 2, 2)


def test_movement_errors():
    x = ak.input("x", (2, 3))
    with pytest.raises(ShapeError, match="reshape: argument 'shape'"):
        ak.reshape(x, shape=[4, 2])
    with pytest.raises(ShapeError, match="transpose: argument 'perm'"):
        ak.transpose(x, perm=[0, 0])
    with pytest.raises(ShapeError, match="concat: argument 'values'"):
        ak.concat([x, ak.input("y", (3, 3))], axis=1)
    with pytest.raises(ShapeError, match="split: argument 'num_splits'"):
        ak.split(x, num_splits=2, axis=1)
    with pytest.raises(ShapeError, match="squeeze: argument 'axes'"):
        ak.squeeze(x, axes=[1])
    with pytest.raises(ShapeError, match="axis 5 is out of range"):
        ak.softmax(x, axis=5)


def test_attention_and_norm_shapes():
    q = ak.input("q", (1, 4, 16, 8))
    k = ak.input("k", (1, 4, 32, 8))
    v = ak.input("v", (1, 4, 32, 6))
    assert ak.scaled_dot_product_attention(q, k, v).shape == (1, 4, 16, 6)
    with pytest.raises(ShapeError, match="scaled_dot_product_attention: argument 'value'"):
        ak.scaled_dot_product_attention(q, k, ak.input("v2", (1, 4, 31, 6)))
    x = ak.input("x", (2, 5, 7))
    assert ak.layer_norm(x, axes=[-1], gamma=np.ones(7), beta=np.zeros(7)).shape == (2, 5, 7)
    with pytest.raises(ShapeError, match="layer_norm: argument 'gamma'"):
        ak.layer_norm(x, axes=[-1], gamma=np.ones(5))
    assert ak.batch_norm(x, np.zeros(5), np.ones(5)).shape == (2, 5, 7)
    assert ak.linear(x, np.zeros((3, 7)), np.zeros(3)).shape == (2, 5, 3)


def test_constexpr_shapes():
    w = ak.constexpr_affine_dequantize(quantized_data=np.zeros((4, 8), np.int8), zero_point=np.int8(0),
                                       scale=np.ones(4, np.float16), axis=0)
    assert (w.dtype, w.shape) == ("fp16", (4, 8))
    lut = ak.constexpr_lut_to_dense(ak.const(np.zeros((8, 4), np.uint8), "uint4"),
                                    np.zeros((2, 1, 16, 1), np.float16))
    assert (lut.dtype, lut.shape) == ("fp16", (8, 4))
    mask = np.zeros((3, 5), np.uint8)
    mask[0, :2] = 1
    sp = ak.constexpr_sparse_to_dense(np.ones(2, np.float16), ak.const(mask, "uint1"))
    assert sp.shape == (3, 5)
    with pytest.raises(ShapeError, match="constexpr_sparse_to_dense: argument 'nonzero_data'"):
        ak.constexpr_sparse_to_dense(np.ones(3, np.float16), ak.const(mask, "uint1"))
    bs = ak.constexpr_blockwise_shift_scale(ak.const(np.zeros((8, 6), np.int8)), np.ones((2, 3), np.float16))
    assert (bs.dtype, bs.shape) == ("fp16", (8, 6))


def test_literals_take_the_ops_type_and_defaults_are_materialized():
    x = ak.input("x", (1, 4, 1, 8))
    y = ak.conv(x, np.ones((2, 4, 1, 1), np.float64))
    assert y.op.inputs["weight"].dtype == "fp16"
    assert y.op.inputs["weight"].const.dtype == np.float16
    assert y.op.attr("strides") == (1, 1) and y.op.attr("pad_type") == "valid" and y.op.attr("groups") == 1
    assert set(y.op.inputs) == {"x", "weight", "strides", "pad_type", "pad", "dilations", "groups"}
    z = x * 3
    assert z.op.inputs["y"].const.dtype == np.float16


def test_const_param_must_be_constant():
    x = ak.input("x", (2, 3))
    with pytest.raises(ShapeError, match="clip: argument 'alpha' must be a compile-time constant"):
        ak.clip(x, alpha=ak.reduce_min(x), beta=1.0)


def test_unknown_op_and_argument():
    with pytest.raises(UnknownOpError, match="unknown op 'frobnicate'"):
        build("frobnicate", 1)
    with pytest.raises(ShapeError, match="relu: unknown argument 'alpha'"):
        ak.relu(ak.input("x", (2,)), alpha=1.0)
    with pytest.raises(ShapeError, match="conv: missing required argument 'weight'"):
        ak.conv(ak.input("x", (1, 2, 3, 3)))


def test_program_names_are_deterministic_and_graph_is_copied():
    def make():
        x = ak.input("x", (1, 8, 1, 4))
        h = ak.relu(ak.conv(x, np.ones((8, 8, 1, 1))))
        return x, h, ak.softmax(h + 1.0, axis=1)
    x, h, y = make()
    p1 = ak.program({"out": y})
    p2 = ak.program({"out": y, "hidden": h})
    names1 = [o.name for o in p1.main.ops]
    assert names1 == [o.name for o in ak.program({"out": make()[2]}).main.ops]
    assert "out" in names1 and p1.main.output_names == ["out"]
    assert p2.main.output_names == ["out", "hidden"]
    assert h.name is None                     # the user's graph is untouched
    assert len({id(o) for o in p1.main.ops} & {id(o) for o in p2.main.ops}) == 0
    assert [t.name for t in p1.main.inputs] == ["x"]
    assert "conv_0_weight" in names1          # consts named after consumer and parameter
    for o in p1.main.ops:                     # topological: every input defined earlier
        seen = {t.name for prev in p1.main.ops[:p1.main.ops.index(o)] for t in prev.outputs} | {"x"}
        assert all(t.name in seen for t in o.tensor_inputs())


def test_program_rejects_duplicate_names_and_bad_outputs():
    x = ak.input("x", (2,))
    with pytest.raises(ShapeError, match="duplicate name 'x'"):
        ak.program({"x": ak.relu(x)})
    with pytest.raises(ShapeError, match="same tensor"):
        r = ak.relu(x)
        ak.program({"a": r, "b": r})
    with pytest.raises(ShapeError, match="not a Tensor"):
        ak.program({"a": 3})


def test_inputs_in_declaration_order_and_multiple_functions():
    b = ak.input("b", (3,))
    a = ak.input("a", (3,))
    p = ak.program({"y": a + b}, functions={"other": {"z": ak.relu(a)}})
    assert [t.name for t in p.main.inputs] == ["b", "a"]
    assert list(p.functions) == ["main", "other"]
    assert [t.name for t in p.functions["other"].inputs] == ["a"]


def test_input_validation():
    with pytest.raises(ShapeError):
        ak.input("x", (1, 0, 3))
    with pytest.raises(DTypeError, match="dtype 'fp64' not allowed"):
        ak.input("x", (2,), dtype="fp64")
    with pytest.raises(ShapeError, match="shape must be a sequence"):
        ak.input("q", None)
    assert ak.input("x", (2,), range=(-3, 3)).range == (-3.0, 3.0)
    for bad in [("a", "b"), (1, 2, 3), 5, (float("nan"), 1), (2, 1)]:
        with pytest.raises(ShapeError, match="input 'x': range"):
            ak.input("x", (2,), range=bad)


def test_tensor_operators():
    x = ak.input("x", (2, 3))
    assert (x + 1).op.type == "add" and (1 - x).op.type == "sub" and (x / 2).op.type == "real_div"
    assert (-x).op.type == "mul" and (x @ ak.input("w", (3, 4))).shape == (2, 4)
    assert x.T.shape == (3, 2) and x.reshape(3, 2).shape == (3, 2) and x.sum(axes=[1]).shape == (2,)
    assert (x > 0).dtype == "bool"


def test_state_inputs_are_recorded_on_the_function():
    cache = ak.input("cache", (1, 4, 1, 8), state=True)
    x = ak.input("x", (1, 4, 1, 8))
    p = ak.program({"y": ak.coreml_update_state(cache, ak.add(ak.read_state(cache), x))})
    assert p.main.states == ("cache",)
    text, _ = ak.mil.emit(p)
    assert "state<tensor<fp16, [1, 4, 1, 8]>> cache" in text
    assert ak.mil.parse(text).main.states == ("cache",)


def test_variadic_arguments_take_any_iterable():
    a, b = ak.input("a", (2,)), ak.input("b", (2,))
    assert ak.concat((t for t in (a, b)), axis=0).shape == (4,)
    with pytest.raises(ShapeError, match="concat: argument 'values' must be a non-empty list"):
        ak.concat([], axis=0)


def test_const_arguments_must_have_the_declared_kind():
    x = ak.input("x", (2, 3))
    with pytest.raises(DTypeError, match="clip: argument 'alpha' must be fp16"):
        ak.clip(x, alpha="a", beta=1.0)
    with pytest.raises(DTypeError, match="softmax: argument 'axis' must be int32"):
        ak.softmax(x, axis=ak.const(np.float16(1)))
    with pytest.raises(DTypeError, match="leaky_relu: argument 'alpha' must be fp16, got bool"):
        ak.leaky_relu(x, alpha=ak.const(True))
    # fp32 scalars on fp16 ops are legal MIL (iOS 17+); ints stand for floats in Python
    assert ak.leaky_relu(x, alpha=ak.const(np.float32(0.5))).op.attr("alpha") == 0.5
    assert ak.leaky_relu(x, alpha=1).op.attr("alpha") == 1.0


def test_window_arguments_must_be_positive():
    x = ak.input("x", (1, 3, 8, 8))
    w = np.zeros((4, 3, 3, 3))
    with pytest.raises(ShapeError, match="conv: argument 'strides': values must be >= 1"):
        ak.conv(x, w, strides=(0, 1))
    with pytest.raises(ShapeError, match="avg_pool: argument 'kernel_sizes': values must be >= 1"):
        ak.avg_pool(x, kernel_sizes=[0, 1])
    with pytest.raises(ShapeError, match="conv: argument 'pad': values must be >= 0"):
        ak.conv(x, w, pad_type="custom", pad=(-1, 0, 0, 0))
    with pytest.raises(ShapeError, match="upsample_nearest_neighbor: .*empty"):
        ak.upsample_nearest_neighbor(x, scale_factor_height=0.01)
