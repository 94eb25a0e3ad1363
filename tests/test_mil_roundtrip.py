"""emit(parse(emit(p))) == emit(p), byte for byte, in both dialects, over a corpus that covers
every declared op, a Stories transformer layer, multi-output ops, several functions and every
const dtype; plus save/load of model folders and structural equality of parsed programs."""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.ir.declared import F as OPS   # the MIL quantize op (ak.quantize quantizes weights)
from anekit.ir import REGISTRY
from anekit.ir.builder import make_const
from anekit.ir.dtypes import DTYPES
from anekit.ir.graph import Op
from anekit.models import stories

DIALECTS = ("ios18", "ios16")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x(shape=(1, 4, 2, 8), dtype="fp16", name="x"):
    return ak.input(name, shape, dtype)


def _f(shape, seed=0):
    return _rng(seed).standard_normal(shape).astype(np.float32)


# One builder per op (or family); each returns {output name: tensor}.
def _op_graphs() -> dict:
    g: dict = {}
    for n in ("add", "sub", "mul", "real_div", "pow", "maximum", "minimum", "floor_div", "mod"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x(), _f((1, 4, 1, 1)))}
    g["add_int"] = lambda: {"y": ak.add(_x((2, 3), "int32"), np.arange(3, dtype=np.int32))}
    for n in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x(), 0.5)}
    for n in ("logical_and", "logical_or", "logical_xor"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x((2, 5), "bool"), _x((2, 5), "bool", "b"))}
    g["logical_not"] = lambda: {"y": ak.logical_not(_x((2, 5), "bool"))}
    for n in ("abs", "square", "sqrt", "exp", "exp2", "floor", "ceil", "round", "sign", "sin", "cos",
              "tan", "atan", "erf", "relu", "relu6", "sigmoid", "tanh", "silu", "softplus", "softsign",
              "identity"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x())}
    g["rsqrt"] = lambda: {"y": ak.rsqrt(_x(), epsilon=1e-6)}
    g["inverse"] = lambda: {"y": ak.inverse(_x((3,), "fp32"))}
    g["log"] = lambda: {"y": ak.log(_x())}
    g["leaky_relu"] = lambda: {"y": ak.leaky_relu(_x(), alpha=0.1)}
    g["elu"] = lambda: {"y": ak.elu(_x(), alpha=0.75)}
    g["gelu"] = _gelu_graph
    g["sigmoid_hard"] = lambda: {"y": ak.sigmoid_hard(_x(), alpha=0.25, beta=0.4)}
    g["linear_activation"] = lambda: {"y": ak.linear_activation(_x(), alpha=2.0, beta=-1.5)}
    g["clip"] = lambda: {"y": ak.clip(_x(), alpha=-1.0, beta=6.0)}
    g["select"] = lambda: {"y": ak.select(_x((4, 8), "bool", "c"), _x((4, 8)), _f((8,)))}
    g["cast"] = lambda: {"y": ak.cast(_x(), "fp32"), "z": ak.cast(_x((3,), "int32", "i"), "bool")}
    g["conv"] = lambda: {"y": ak.conv(_x((1, 4, 9, 9)), _f((6, 2, 3, 3)), bias=_f((6,)), strides=(2, 1),
                                      pad_type="custom", pad=(1, 0, 2, 1), dilations=(1, 2), groups=2)}
    g["conv_transpose"] = lambda: {"y": ak.conv_transpose(_x((1, 4, 5, 5)), _f((4, 3, 3, 3)), strides=(2, 2),
                                                          output_shape=(1, 3, 12, 12))}
    g["matmul"] = lambda: {"y": ak.matmul(_x((2, 3, 4)), _x((2, 5, 4), name="w"), transpose_y=True)}
    g["linear"] = lambda: {"y": ak.linear(_x((3, 8)), _f((5, 8)), bias=_f((5,)))}
    g["scaled_dot_product_attention"] = lambda: {"y": ak.scaled_dot_product_attention(
        _x((1, 2, 4, 8), name="q"), _x((1, 2, 6, 8), name="k"), _x((1, 2, 6, 3), name="v"),
        attn_mask=np.triu(np.full((4, 6), -1e4), 1).astype(np.float32))}
    g["softmax"] = lambda: {"y": ak.softmax(_x(), axis=1)}
    g["layer_norm"] = lambda: {"y": ak.layer_norm(_x(), axes=[1], gamma=_f((4,)), beta=_f((4,), 1), epsilon=1e-3)}
    g["batch_norm"] = lambda: {"y": ak.batch_norm(_x(), _f((4,)), np.abs(_f((4,), 2)) + 1, gamma=_f((4,), 3))}
    g["instance_norm"] = lambda: {"y": ak.instance_norm(_x(), gamma=_f((4,)), beta=_f((4,), 1))}
    for n in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l2_norm",
              "reduce_l1_norm", "reduce_sum_square", "reduce_log_sum_exp"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x(), axes=[1, -1], keep_dims=True),
                            "all": getattr(ak, n)(_x(name="x2"))}
    g["reduce_argmax"] = lambda: {"y": ak.reduce_argmax(_x(), axis=1)}
    g["reduce_argmin"] = lambda: {"y": ak.reduce_argmin(_x(), axis=-1, keep_dims=True)}
    g["reshape"] = lambda: {"y": ak.reshape(_x(), [1, -1, 2, 4])}
    g["transpose"] = lambda: {"y": ak.transpose(_x(), [0, 3, 2, 1])}
    g["concat"] = lambda: {"y": ak.concat([_x(), _x(name="b")], axis=1, interleave=True),
                           "z": ak.concat([_x(name="c"), _f((1, 2, 2, 8))], axis=1)}
    g["split"] = lambda: _split_graph()
    g["stack"] = lambda: {"y": ak.stack([_x(), _x(name="b"), _x(name="c")], axis=0)}
    g["slice_by_index"] = lambda: {"y": ak.slice_by_index(
        _x(), begin=[0, 1, 0, 1], end=[1, 4, 1, 7], stride=[1, 2, 1, 3], begin_mask=[True, False, False, False],
        end_mask=[False, False, False, True], squeeze_mask=[False, False, True, False])}
    g["slice_by_size"] = lambda: {"y": ak.slice_by_size(_x(), begin=[0, 1, 0, 2], size=[1, 2, -1, 4])}
    g["squeeze"] = lambda: {"y": ak.squeeze(_x(), axes=[0]), "z": ak.squeeze(_x((1, 3, 1), name="s"))}
    g["expand_dims"] = lambda: {"y": ak.expand_dims(_x((4, 8)), axes=[0, -2])}
    g["pad"] = lambda: {"y": ak.pad(_x(), [1, 2, 0, 3], mode="constant", constant_val=-2.5),
                        "r": ak.pad(_x(name="x2"), [1, 1], mode="reflect")}
    g["tile"] = lambda: {"y": ak.tile(_x(), [1, 2, 1, 3])}
    g["gather"] = lambda: {"y": ak.gather(_x((10, 6)), np.array([[0, 3], [9, 1]], np.int32), axis=0)}
    g["avg_pool"] = lambda: {"y": ak.avg_pool(_x((1, 2, 7, 7)), kernel_sizes=[3, 3], strides=[2, 2],
                                              pad_type="custom", pad=[1, 1, 1, 1], exclude_padding_from_average=True,
                                              ceil_mode=True)}
    g["max_pool"] = lambda: {"y": ak.max_pool(_x((1, 2, 8, 8)), kernel_sizes=[2, 2], strides=[2, 2])}
    g["upsample_nearest_neighbor"] = lambda: {"y": ak.upsample_nearest_neighbor(_x(), scale_factor_height=2,
                                                                                  scale_factor_width=3)}
    g["constexpr_affine_dequantize"] = lambda: {"w": ak.constexpr_affine_dequantize(
        quantized_data=_rng().integers(-128, 128, (4, 8)).astype(np.int8), zero_point=np.arange(4, dtype=np.int8),
        scale=np.array([0.5, 0.25, 0.125, 1.0], np.float16), axis=0)}
    g["constexpr_lut_to_dense"] = lambda: {"w": ak.constexpr_lut_to_dense(
        make_const(_rng().integers(0, 16, (4, 8)).astype(np.uint8), "uint4"),
        _f((1, 1, 16, 1)).astype(np.float16))}
    g["constexpr_sparse_to_dense"] = lambda: _sparse_graph()
    g["constexpr_blockwise_shift_scale"] = lambda: {"w": ak.constexpr_blockwise_shift_scale(
        make_const(_rng().integers(-8, 8, (4, 8)).astype(np.int8), "int4"), _f((4, 2)).astype(np.float16),
        offset=make_const(np.array([[1, -2], [0, 3], [7, -8], [2, 2]], np.int8), "int4"))}
    g["thresholded_relu"] = lambda: {"y": ak.thresholded_relu(_x(), alpha=0.5)}
    g["crop"] = lambda: {"y": ak.crop(_x((1, 2, 6, 7)), crop_height=[1, 2], crop_width=[0, 3])}
    g["upsample_bilinear"] = lambda: {"y": ak.upsample_bilinear(_x(), scale_factor_height=2.0, scale_factor_width=1.5,
                                                                align_corners=False, half_pixel_centers=True)}
    g["pixel_shuffle"] = lambda: {"y": ak.pixel_shuffle(_x((1, 8, 2, 3)), upscale_factor=2)}
    g["reverse"] = lambda: {"y": ak.reverse(_x(), axes=[1, 3])}
    g["cumsum"] = lambda: {"y": ak.cumsum(_x(), axis=3, exclusive=True, reverse=True)}
    g["gather_nd"] = lambda: {"y": ak.gather_nd(_x((2, 6, 5)), np.array([[[0, 3], [5, 1]], [[1, 1], [2, 4]]], np.int32),
                                                batch_dims=1)}
    g["fill_like"] = lambda: (lambda x: {"y": ak.fill_like(x, value=1.5), "n": ak.fill_like(x, value=np.int32(-4))})(_x((2, 3)))
    g["lstm"] = lambda: dict(zip("yhc", ak.lstm(
        _x((3, 1, 4)), np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32),
        np.ones((8, 4), np.float32) * 0.5, np.ones((8, 2), np.float32) * 0.25, bias=np.arange(8, dtype=np.float32),
        output_sequence=True, direction="reverse")))
    g["gather_along_axis"] = lambda: {"y": ak.gather_along_axis(
        _x((3, 4)), _rng().integers(0, 3, (2, 4)).astype(np.int32), axis=0)}
    g["topk"] = lambda: dict(zip(("values", "indices"), ak.topk(_x(), k=2, axis=-1)))
    g["slice_update"] = lambda: {"y": ak.slice_update(_x(), _f((1, 4, 3)).astype(np.float16), begin=[0, 0, 1, 2],
                                                      end=[1, 4, 2, 5], squeeze_mask=[False, False, True, False])}
    # ir/ops/more.py (issue 15 audit)
    g["scatter"] = lambda: {"y": ak.scatter(_x((3, 4)), np.array([2, 0], np.int32), _f((3, 2)).astype(np.float16),
                                            axis=1, mode="add")}
    g["scatter_along_axis"] = lambda: {"y": ak.scatter_along_axis(
        _x((3, 4)), np.array([[0, 2, 1, 1]], np.int32), _f((1, 4)).astype(np.float16), axis=0, mode="max")}
    g["scatter_nd"] = lambda: {"y": ak.scatter_nd(_x((3, 4)), np.array([[0, 1], [2, 3]], np.int32),
                                                  _f((2,)).astype(np.float16), mode="update")}
    g["fill"] = lambda: {"y": ak.fill(shape=[2, 3], value=np.float16(1.5)), "n": ak.fill(shape=[4], value=np.int32(7))}
    g["shape"] = lambda: {"y": ak.shape(_x())}
    g["range_1d"] = lambda: {"y": ak.range_1d(end=np.float16(2.0), start=np.float16(-1.0), step=np.float16(0.5))}
    g["one_hot"] = lambda: {"y": ak.one_hot(_x((2, 3), "int32"), one_hot_vector_size=5, axis=1)}
    g["band_part"] = lambda: {"y": ak.band_part(_x((3, 5)), lower=0, upper=2)}
    g["argsort"] = lambda: {"y": ak.argsort(_x(), axis=1, ascending=True)}
    g["prelu"] = lambda: {"y": ak.prelu(_x(), alpha=_f((4,)))}
    g["softplus_parametric"] = lambda: {"y": ak.softplus_parametric(_x(), alpha=_f((4,)), beta=_f((4,), 1))}
    g["threshold"] = lambda: {"y": ak.threshold(_x(), alpha=0.25)}
    g["pixel_unshuffle"] = lambda: {"y": ak.pixel_unshuffle(_x((1, 2, 4, 6)), downscale_factor=2)}
    for n in ("sinh", "cosh", "asin", "acos", "atanh", "asinh", "acosh"):
        g[n] = lambda n=n: {"y": getattr(ak, n)(_x())}
    g["rnn"] = lambda: dict(zip("yh", ak.rnn(_x((3, 1, 4)), np.zeros((1, 2), np.float32), np.ones((2, 4), np.float32),
                                             np.ones((2, 2), np.float32) * 0.5, bias=np.ones(2, np.float32),
                                             output_sequence=True, activation="relu")))
    g["quantize"] = lambda: (lambda q: {"q": q, "d": ak.dequantize(
        q, scale=np.array([0.5, 0.25, 0.125, 1.0], np.float16), zero_point=np.array([1, -2, 0, 3], np.int8), axis=1)})(
        OPS.quantize(_x(), scale=np.float16(0.05), zero_point=np.int8(-3), output_dtype="int8"))
    g["einsum"] = lambda: {"y": ak.einsum((_x((3, 4, 5)), _f((5, 4, 2)).astype(np.float16)), equation="chw,whu->chu")}
    g["resample"] = lambda: {"y": ak.resample(
        _x((1, 2, 4, 5)), _f((1, 3, 2, 2)).astype(np.float16), sampling_mode="bilinear", padding_mode="border",
        padding_value=np.float16(0.0), coordinates_mode="normalized_minus_one_to_one", align_corners=False)}
    g["affine"] = lambda: {"y": ak.affine(
        _x((1, 2, 4, 5)), _f((1, 6)).astype(np.float16), output_height=3, output_width=2, sampling_mode="bilinear",
        padding_mode="constant", padding_value=np.float16(0.0), coordinates_mode="normalized_minus_one_to_one",
        align_corners=True)}
    g["constexpr_lut_to_sparse"] = lambda: (lambda m: {"w": ak.constexpr_sparse_to_dense(
        *reversed(ak.constexpr_lut_to_sparse(m, make_const(np.array([0, 3, 1, 2, 2], np.uint8), "uint2"),
                                             _f((1, 1, 4, 2)).astype(np.float16), vector_axis=0)))})(
        make_const(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.uint8), "uint1"))
    g["constexpr_sparse_blockwise_shift_scale"] = lambda: (lambda m: {"w": ak.constexpr_sparse_to_dense(
        *reversed(ak.constexpr_sparse_blockwise_shift_scale(m, make_const(np.array([3, -2, 7, 1], np.int8), "int4"),
                                                            _f((2, 1)).astype(np.float16))))})(
        make_const(np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.uint8), "uint1"))
    g["clamped_relu"] = lambda: {"y": ak.clamped_relu(_x(), alpha=0.1, beta=1.5)}
    g["scaled_tanh"] = lambda: {"y": ak.scaled_tanh(_x(), alpha=2.0, beta=0.5)}
    g["reduce_log_sum"] = lambda: {"y": ak.reduce_log_sum(ak.abs(_x()), axes=[1], keep_dims=True)}
    g["flatten2d"] = lambda: {"y": ak.flatten2d(_x(), axis=2)}
    g["while_loop"] = _while_loop_graph
    g["cond"] = _cond_graph
    return g


def _while_loop_graph():
    """acc <- 2 acc + x while i < 4, x captured; the body holds a weight-sized constant."""
    from anekit.ir.ops import control
    i, acc, x = _x((1,), "int32", "i"), _x((2, 16), name="acc"), _x((2, 16), name="x")
    cond = control.block("cond", [i, acc, x], [i < 4])
    body = control.block("body", [i, acc, x], [i + 1, acc * _f((16,)) + x])
    xo = _x((2, 16), name="xo")
    n, y = control.build("while_loop", {"loop_vars": (ak.fill(shape=[1], value=np.int32(0)), xo * 0.5),
                                        "captures": (xo,)}, {"cond": cond, "body": body})
    return {"n": n, "y": y}


def _cond_graph():
    from anekit.ir.ops import control
    a = _x((3,), name="a")
    t = control.block("true_block", [a], [ak.relu(a)])
    f = control.block("false_block", [a], [a * 2.0])
    xo = _x((3,), name="xo")
    return {"y": control.build("cond", {"pred": ak.reduce_sum(xo) > 0.0, "captures": (xo,)},
                               {"true_block": t, "false_block": f})}


def _gelu_graph():
    x = _x()
    return {f"y_{m.lower()}": ak.gelu(x, mode=m) for m in ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")}


def _state_program():
    """iOS 18 states: a `state<...>` input read, updated, and written by an op without outputs."""
    cache = ak.input("cache", (1, 4, 1, 8))
    updated = ak.coreml_update_state(cache, ak.add(ak.read_state(cache), _x((1, 4, 1, 8))))
    prog = ak.program({"out": updated})
    fn = prog.main
    write = Op(REGISTRY["write_state"], {"input": fn.input("cache"), "data": fn.outputs[0]}, {}, "store_cache")
    fn.ops.append(write)
    fn.states = ("cache",)
    return prog


def _split_graph():
    a, b = ak.split(_x(), num_splits=2, axis=1)
    p, q, r = ak.split(_x(name="x2"), split_sizes=[1, 2, 5], axis=-1)
    return {"a": a, "b": b, "pq": ak.concat([p, q], axis=3), "r": r}


def _sparse_graph():
    mask = (_rng().random((4, 8)) > 0.5).astype(np.uint8)
    return {"w": ak.constexpr_sparse_to_dense(_f((int(mask.sum()),)).astype(np.float16), make_const(mask, "uint1"))}


def _const_dtype_program():
    """Every const dtype, inline (small) and, where weight.bin can hold it, as a blob (large)."""
    rng = _rng(5)
    outs = {}
    for name, d in DTYPES.items():
        for n in (3, 12):
            if name == "string":
                val = np.array([f"s{i}\t\"q\"\\é" for i in range(n)])
            elif d.kind == "float":
                val = rng.standard_normal(n) * 100
                val[:3] = [0.1, -0.0, 65504.0]
                if name == "bf16":
                    from anekit.mil.minifloat import decode_bf16, encode_bf16
                    val = decode_bf16(encode_bf16(val))
            elif d.kind == "bool":
                val = rng.random(n) > 0.5
            elif name == "int4":
                val = rng.integers(-8, 8, n)
            elif name in ("uint1", "uint2", "uint3", "uint4", "uint6"):
                val = rng.integers(0, 1 << d.bits, n)
            else:
                info = np.iinfo(d.numpy)
                val = rng.integers(info.min, info.max, n, dtype=np.int64 if d.kind == "int" else np.uint64,
                                   endpoint=True)
            outs[f"c_{name}_{n}"] = make_const(np.asarray(val).astype(d.numpy), name)
    outs["s_scalar"] = make_const("valid \"quoted\" line\nbreak")
    outs["i_scalar"] = make_const(np.int32(-7))
    outs["b_scalar"] = make_const(np.bool_(True))
    outs["f_scalar"] = make_const(np.float16(np.inf))
    outs["g_scalar"] = make_const(np.float32(-np.inf))
    outs["n_scalar"] = make_const(np.float32(np.nan))
    outs["e_tensor"] = make_const(np.zeros((2, 0), np.float16))
    return ak.program(outs)


def _multi_function_program():
    x = _x((1, 8, 1, 4))
    w = _f((8, 8, 1, 1))
    first = {"y": ak.relu(ak.conv(x, w))}
    second = {"z": ak.softmax(ak.conv(_x((1, 8, 1, 4), name="x"), w * 2), axis=1),
              "t": ak.sigmoid(_x((2, 2), name="u"))}
    return ak.program(first, functions={"second": second})


def corpus() -> dict:
    """name -> Program: every op in REGISTRY, a Stories layer, multi-output, several functions,
    every const dtype."""
    progs = {f"op_{name}": ak.program(build()) for name, build in _op_graphs().items()}
    progs["stories_layer"] = stories.build_layer_program(dim=64, hidden=172, heads=4, seq=32)
    progs["multi_function"] = _multi_function_program()
    progs["const_dtypes"] = _const_dtype_program()
    progs["states"] = _state_program()
    return progs


CORPUS = corpus()


def _op_types(prog) -> set:
    return {op.type for fn in prog.functions.values() for op in fn.ops}


def test_corpus_covers_every_declared_op():
    covered = set().union(*(_op_types(p) for p in CORPUS.values()))
    assert covered == set(REGISTRY), sorted(set(REGISTRY) ^ covered)


def test_corpus_covers_every_const_dtype_and_multi_outputs():
    dtypes = {op.outputs[0].dtype for p in CORPUS.values() for fn in p.functions.values()
              for op in fn.ops if op.type == "const"}
    assert dtypes == set(DTYPES)
    assert any(len(op.outputs) > 1 for p in CORPUS.values() for fn in p.functions.values() for op in fn.ops)
    assert len(CORPUS["multi_function"].functions) == 2


def _spelled_in_ios16(op) -> bool:
    """An op newer than ios16 that has an iOS 16 spelling for these arguments (OlderForm)."""
    try:
        return op.spec.older_form is not None and op.spec.older_form.write(op) is not None
    except ak.errors.AnekitError:
        return False


def _needs_ios18(prog) -> bool:
    return any(fn.states or any(op.spec.since in ("ios17", "ios18") and not _spelled_in_ios16(op) for op in fn.ops)
               for fn in prog.functions.values())


CASES = [(name, d) for name in sorted(CORPUS) for d in DIALECTS if d == "ios18" or not _needs_ios18(CORPUS[name])]


@pytest.mark.parametrize("name,dialect", CASES)
def test_emit_parse_emit_is_byte_identical(name, dialect):
    prog = CORPUS[name]
    text, files = ak.mil.emit(prog, dialect)
    again_text, again_files = ak.mil.emit(ak.mil.parse(text, files), dialect)
    assert again_text == text
    assert again_files == files


@pytest.mark.parametrize("name", sorted(n for n in CORPUS if _needs_ios18(CORPUS[n])))
def test_ios18_only_ops_and_states_are_refused_in_ios16(name):
    with pytest.raises(ak.errors.MILEmitError, match="only from the ios1[78] op set; emit with dialect=.ios1[78]."):
        ak.mil.emit(CORPUS[name], "ios16")


def test_most_of_the_corpus_runs_in_both_dialects():
    assert sum(1 for _, d in CASES if d == "ios16") >= 0.8 * len(CORPUS)


def _same_structure(a, b):
    assert list(a.functions) == list(b.functions)
    for fa, fb in zip(a.functions.values(), b.functions.values()):
        assert [(t.name, t.dtype, t.shape) for t in fa.inputs] == [(t.name, t.dtype, t.shape) for t in fb.inputs]
        assert [t.name for t in fa.outputs] == [t.name for t in fb.outputs]
        assert [(o.type, o.name) for o in fa.ops] == [(o.type, o.name) for o in fb.ops]
        for oa, ob in zip(fa.ops, fb.ops):
            assert [(t.name, t.dtype, t.shape) for t in oa.outputs] == [(t.name, t.dtype, t.shape) for t in ob.outputs]
            assert {k: (v.name if not isinstance(v, tuple) else tuple(t.name for t in v)) for k, v in oa.inputs.items()} \
                == {k: (v.name if not isinstance(v, tuple) else tuple(t.name for t in v)) for k, v in ob.inputs.items()}
            for key in oa.attrs:
                va, vb = oa.attrs[key], ob.attrs[key]
                if isinstance(va, str):
                    assert va == vb
                    continue
                va, vb = np.asarray(va), np.asarray(vb)
                assert va.shape == vb.shape
                if va.dtype.kind == "f":
                    # identical bits, except that a NaN's payload is not kept inline
                    same = (va.view(f"u{va.itemsize}") == vb.astype(va.dtype).view(f"u{va.itemsize}")) | \
                           (np.isnan(va) & np.isnan(vb))
                    assert same.all(), (oa.name, key)
                else:
                    assert np.array_equal(va, vb), (oa.name, key)


@pytest.mark.parametrize("name", ["stories_layer", "const_dtypes", "multi_function", "op_split", "op_conv"])
def test_parsed_program_keeps_names_order_values_and_tags(name):
    prog = CORPUS[name]
    for dialect in DIALECTS:
        parsed = ak.mil.parse(*ak.mil.emit(prog, dialect))
        _same_structure(prog, parsed)
        assert parsed.dialect == dialect
        assert parsed.version == ak.mil.DIALECTS[dialect].version
        assert {fn.opset for fn in parsed.functions.values()} == {dialect}
        assert parsed.attributes["buildInfo"]["coremlc-version"]


def test_cross_dialect_conversion_equals_direct_emission():
    prog = CORPUS["stories_layer"]
    parsed = ak.mil.parse(*ak.mil.emit(prog, "ios18"))
    assert ak.mil.emit(parsed, "ios16") == ak.mil.emit(prog, "ios16")
    back = ak.mil.parse(*ak.mil.emit(prog, "ios16"))
    assert ak.mil.emit(back, "ios18") == ak.mil.emit(prog, "ios18")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_save_load_folder_roundtrip(tmp_path, dialect):
    prog = CORPUS["stories_layer"]
    ak.mil.save(prog, tmp_path / "m", dialect)
    text, files = ak.mil.emit(prog, dialect)
    assert (tmp_path / "m" / "model.mil").read_text(encoding="utf-8") == text
    assert (tmp_path / "m" / "weights" / "weight.bin").read_bytes() == files["weights/weight.bin"]
    for source in (tmp_path / "m", tmp_path / "m" / "model.mil", str(tmp_path / "m")):
        loaded = ak.mil.load(source)
        assert ak.mil.emit(loaded, dialect) == (text, files)
    _same_structure(prog, loaded)


def test_loaded_weights_are_read_only_views_not_copies(tmp_path):
    ak.mil.save(CORPUS["stories_layer"], tmp_path)
    loaded = ak.mil.load(tmp_path)
    weight = next(op.attrs["val"] for op in loaded.main.ops if op.name == "conv_0_weight")
    assert weight.dtype == np.float16 and weight.shape == (64, 64, 1, 1)
    assert not weight.flags.writeable and not weight.flags.owndata
    with pytest.raises(ValueError):
        weight[0, 0, 0, 0] = 1


def test_saving_a_program_over_the_folder_it_was_loaded_from(tmp_path):
    """The loaded weights are views of the old weight.bin; saving must not pull the file from
    under them (it writes beside and renames)."""
    prog = CORPUS["stories_layer"]
    ak.mil.save(prog, tmp_path)
    loaded = ak.mil.load(tmp_path)
    ak.mil.save(loaded, tmp_path, "ios16")
    ak.mil.save(loaded, tmp_path, "ios18")
    assert ak.mil.emit(ak.mil.load(tmp_path)) == ak.mil.emit(prog)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.mil", "weight.bin", "weights"]


def test_program_without_blobs_has_no_weight_file(tmp_path):
    prog = CORPUS["op_relu"]
    text, files = ak.mil.emit(prog)
    assert files == {}
    ak.mil.save(prog, tmp_path)
    assert not (tmp_path / "weights").exists()
    assert ak.mil.emit(ak.mil.load(tmp_path / "model.mil")) == (text, {})
