"""Gradient rules against PyTorch autograd (float64), in the simulator's exact numerics.

Each case is one line: an anekit function, the same function in torch, the input shapes
(broadcasting and batch axes included) and how to draw the values. The loss is the linear
probe the guide uses (ch. 15): L = sum(f(x) * r) for a fixed random r, whose gradient is
r pulled back through f. Exact numerics compute in float32, so the stated bound is cosine
>= 0.9999 and a relative error (||ours - torch|| / ||torch||) under 1e-4.
"""
from __future__ import annotations

import numpy as np
import pytest

import anekit as ak
from anekit.errors import GradientError, ShapeError
from anekit.ir import REGISTRY, topo_order
from anekit.train.autodiff import Parameter, params_of

COSINE_MIN = 0.9999
REL_ERR_MAX = 1e-4


def F():
    return pytest.importorskip("torch").nn.functional


def T():
    return pytest.importorskip("torch")


class Case:
    """fn(*tensors) in anekit, tfn(*torch tensors) in torch, inputs drawn per `kind`:
    "n" normal, "p" positive (0.5..2), "u" in (-0.9, 0.9), "i<V>" int32 indices below V,
    "b" bool, "causal" a lower-triangular bool mask; only float inputs are differentiated."""

    def __init__(self, id, fn, tfn, shapes, kinds=None):
        self.id, self.fn, self.tfn, self.shapes = id, fn, tfn, shapes
        self.kinds = kinds or ["n"] * len(shapes)

    def values(self, seed=0):
        rng = np.random.default_rng(seed)
        out = []
        for shape, kind in zip(self.shapes, self.kinds):
            if kind == "n":
                out.append(rng.standard_normal(shape))
            elif kind == "p":
                out.append(rng.uniform(0.5, 2.0, shape))
            elif kind == "u":
                out.append(rng.uniform(-0.9, 0.9, shape))
            elif kind == "b":
                out.append(rng.random(shape) < 0.5)
            elif kind == "causal":
                out.append(np.tril(np.ones(shape, bool)))
            else:
                out.append(rng.integers(0, int(kind[1:]), shape).astype(np.int32))
        return out

    def graph(self, values, dtype="fp32"):
        ins = []
        for i, v in enumerate(values):
            if v.dtype.kind == "f":
                ins.append(ak.input(f"in{i}", v.shape, dtype))
            else:
                ins.append(ak.input(f"in{i}", v.shape, "int32" if v.dtype.kind == "i" else "bool"))
        return ins, self.fn(*ins)


def _mp(k, s, **kw):
    return dict(kernel_sizes=[k, k], strides=[s, s], **kw)


C = Case
CASES = [
    # activations
    C("relu", ak.relu, lambda t, x: t.relu(x), [(3, 7)]),
    C("relu6", lambda x: ak.relu6(x * 4.0), lambda t, x: F().relu6(x * 4), [(3, 7)]),
    C("leaky_relu", lambda x: ak.leaky_relu(x, alpha=0.1), lambda t, x: F().leaky_relu(x, 0.1), [(4, 5)]),
    C("elu", ak.elu, lambda t, x: F().elu(x), [(4, 5)]),
    C("sigmoid", ak.sigmoid, lambda t, x: t.sigmoid(x), [(2, 3, 5)]),
    C("tanh", ak.tanh, lambda t, x: t.tanh(x), [(2, 3, 5)]),
    C("gelu", ak.gelu, lambda t, x: F().gelu(x), [(4, 9)]),
    C("gelu_tanh", lambda x: ak.gelu(x, mode="TANH_APPROXIMATION"),
      lambda t, x: F().gelu(x, approximate="tanh"), [(4, 9)]),
    C("gelu_sigmoid", lambda x: ak.gelu(x, mode="SIGMOID_APPROXIMATION"),
      lambda t, x: x * t.sigmoid(1.702 * x), [(4, 9)]),
    C("silu", ak.silu, lambda t, x: F().silu(x), [(4, 9)]),
    C("softplus", ak.softplus, lambda t, x: F().softplus(x), [(4, 9)]),
    C("softsign", ak.softsign, lambda t, x: F().softsign(x), [(4, 9)]),
    C("sigmoid_hard", ak.sigmoid_hard, lambda t, x: t.clamp(0.2 * x + 0.5, 0, 1), [(4, 9)]),
    C("linear_activation", lambda x: ak.linear_activation(x, alpha=1.5, beta=0.2),
      lambda t, x: 1.5 * x + 0.2, [(4, 9)]),
    C("identity", ak.identity, lambda t, x: x, [(4, 9)]),
    C("clip", lambda x: ak.clip(x, alpha=-0.5, beta=0.7), lambda t, x: t.clamp(x, -0.5, 0.7), [(6, 7)]),
    # elementwise binary, with broadcasting
    C("add", ak.add, lambda t, x, y: x + y, [(2, 3, 4), (3, 1)]),
    C("sub", ak.sub, lambda t, x, y: x - y, [(3, 1), (2, 3, 4)]),
    C("mul", ak.mul, lambda t, x, y: x * y, [(2, 1, 4), (3, 1)]),
    C("neg", lambda x: -x, lambda t, x: -x, [(5,)]),
    C("real_div", ak.real_div, lambda t, x, y: x / y, [(2, 3, 4), (4,)], ["n", "p"]),
    C("pow", ak.pow, lambda t, x, y: x ** y, [(3, 4), (3, 4)], ["p", "n"]),
    C("mod", ak.mod, lambda t, x, y: t.remainder(x, y), [(3, 4), (4,)], ["n", "p"]),
    C("floor_div", lambda x, y: ak.floor_div(x, y) * x, lambda t, x, y: t.div(x, y, rounding_mode="floor") * x,
      [(3, 4), (3, 4)], ["n", "p"]),
    C("maximum", ak.maximum, lambda t, x, y: t.maximum(x, y), [(3, 4), (4,)]),
    C("minimum", ak.minimum, lambda t, x, y: t.minimum(x, y), [(3, 4), (3, 1)]),
    C("select", lambda c, a, b: ak.select(c, a, b), lambda t, c, a, b: t.where(c, a, b),
      [(3, 4), (3, 4), (4,)], ["b", "n", "n"]),
    # unary math
    C("square", ak.square, lambda t, x: x * x, [(3, 4)]),
    C("abs", ak.abs, lambda t, x: x.abs(), [(3, 4)]),
    C("sqrt", ak.sqrt, lambda t, x: x.sqrt(), [(3, 4)], ["p"]),
    C("rsqrt", ak.rsqrt, lambda t, x: x.rsqrt(), [(3, 4)], ["p"]),
    C("inverse", ak.inverse, lambda t, x: 1 / (x + 1e-4), [(3, 4)], ["p"]),
    C("exp", ak.exp, lambda t, x: x.exp(), [(3, 4)]),
    C("exp2", ak.exp2, lambda t, x: 2 ** x, [(3, 4)]),
    C("log", ak.log, lambda t, x: x.log(), [(3, 4)], ["p"]),
    C("erf", ak.erf, lambda t, x: t.erf(x), [(3, 4)]),
    C("sin", ak.sin, lambda t, x: x.sin(), [(3, 4)]),
    C("cos", ak.cos, lambda t, x: x.cos(), [(3, 4)]),
    C("tan", ak.tan, lambda t, x: x.tan(), [(3, 4)], ["u"]),
    C("atan", ak.atan, lambda t, x: x.atan(), [(3, 4)]),
    C("cast", lambda x: ak.cast(x, dtype="fp32"), lambda t, x: x, [(3, 4)]),
    C("cast_int", lambda x, i: x * ak.cast(i, dtype=x.dtype), lambda t, x, i: x * i, [(3, 4), (3, 4)],
      ["n", "i5"]),
    C("floor", lambda x: ak.floor(x) * x, lambda t, x: t.floor(x) * x, [(3, 4)]),
    C("ceil", lambda x: ak.ceil(x) * x, lambda t, x: t.ceil(x) * x, [(3, 4)]),
    C("round", lambda x: ak.round(x * 3.0) * x, lambda t, x: t.round(x * 3) * x, [(3, 4)]),
    C("sign", lambda x: ak.sign(x) * x, lambda t, x: t.sign(x) * x, [(3, 4)]),
    C("thresholded_relu", lambda x: ak.thresholded_relu(x, alpha=0.3), lambda t, x: t.where(x >= 0.3, x, 0 * x),
      [(3, 5)]),
    # linear algebra
    C("matmul", ak.matmul, lambda t, x, y: x @ y, [(3, 4), (4, 5)]),
    C("matmul_batch_bcast", ak.matmul, lambda t, x, y: x @ y, [(2, 3, 4), (4, 5)]),
    C("matmul_bcast_batch", ak.matmul, lambda t, x, y: x @ y, [(2, 1, 3, 4), (3, 4, 2)]),
    C("matmul_tx", lambda x, y: ak.matmul(x, y, transpose_x=True), lambda t, x, y: x.transpose(-1, -2) @ y,
      [(2, 4, 3), (2, 4, 5)]),
    C("matmul_ty", lambda x, y: ak.matmul(x, y, transpose_y=True), lambda t, x, y: x @ y.transpose(-1, -2),
      [(2, 3, 4), (5, 4)]),
    C("matmul_txty", lambda x, y: ak.matmul(x, y, transpose_x=True, transpose_y=True),
      lambda t, x, y: x.transpose(-1, -2) @ y.transpose(-1, -2), [(4, 3), (2, 5, 4)]),
    C("matmul_vec", ak.matmul, lambda t, x, y: x @ y, [(4,), (2, 4, 3)]),
    C("matmul_mat_vec", ak.matmul, lambda t, x, y: x @ y, [(2, 3, 4), (4,)]),
    C("linear", ak.linear, lambda t, x, w, b: F().linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
    C("conv2d", lambda x, w, b: ak.conv(x, w, bias=b), lambda t, x, w, b: F().conv2d(x, w, b),
      [(2, 3, 7, 6), (4, 3, 3, 2), (4,)]),
    C("conv2d_stride_same", lambda x, w: ak.conv(x, w, strides=[2, 2], pad_type="same"),
      lambda t, x, w: F().conv2d(x, w, stride=2, padding=1), [(2, 3, 9, 9), (4, 3, 3, 3)]),
    C("conv2d_custom_pad_dil", lambda x, w: ak.conv(x, w, pad_type="custom", pad=[1, 1, 2, 2], dilations=[1, 2]),
      lambda t, x, w: F().conv2d(x, w, padding=(1, 2), dilation=(1, 2)), [(1, 2, 6, 7), (3, 2, 3, 3)]),
    C("conv2d_stride_remainder", lambda x, w: ak.conv(x, w, strides=[2, 3]),
      lambda t, x, w: F().conv2d(x, w, stride=(2, 3)), [(2, 2, 8, 10), (3, 2, 3, 2)]),
    C("conv2d_groups", lambda x, w: ak.conv(x, w, groups=2),
      lambda t, x, w: F().conv2d(x, w, groups=2), [(2, 4, 5, 5), (6, 2, 3, 3)]),
    C("conv1d", lambda x, w: ak.conv(x, w, strides=[2]), lambda t, x, w: F().conv1d(x, w, stride=2),
      [(2, 3, 11), (4, 3, 3)]),
    C("conv3d", lambda x, w: ak.conv(x, w, strides=[1, 2, 1], pad_type="same"),
      lambda t, x, w: F().conv3d(F().pad(x, (0, 1, 1, 1, 0, 1)), w, stride=(1, 2, 1)),
      [(1, 2, 4, 5, 6), (3, 2, 2, 3, 2)]),
    C("conv2d_same_lower", lambda x, w: ak.conv(x, w, pad_type="same_lower"),
      lambda t, x, w: F().conv2d(F().pad(x, (1, 0, 1, 1)), w), [(2, 2, 5, 6), (3, 2, 3, 2)]),
    C("conv_transpose", lambda x, w: ak.conv_transpose(x, w, strides=[2, 2]),
      lambda t, x, w: F().conv_transpose2d(x, w, stride=2), [(2, 3, 4, 5), (3, 2, 3, 3)]),
    C("sdpa", ak.scaled_dot_product_attention,
      lambda t, q, k, v: F().scaled_dot_product_attention(q, k, v), [(2, 2, 4, 8), (2, 2, 5, 8), (1, 2, 5, 6)]),
    C("sdpa_float_mask", ak.scaled_dot_product_attention,
      lambda t, q, k, v, m: F().scaled_dot_product_attention(q, k, v, attn_mask=m), [(2, 3, 8), (2, 5, 8), (2, 5, 4),
                                                                                     (3, 5)]),
    C("sdpa_bool_mask", ak.scaled_dot_product_attention,
      lambda t, q, k, v, m: F().scaled_dot_product_attention(q, k, v, attn_mask=m), [(2, 4, 8), (2, 4, 8), (2, 4, 4),
                                                                                     (4, 4)], ["n", "n", "n", "causal"]),
    # pooling
    C("max_pool", lambda x: ak.max_pool(x, **_mp(2, 2)), lambda t, x: F().max_pool2d(x, 2, 2), [(2, 3, 6, 6)]),
    C("max_pool_overlap_pad", lambda x: ak.max_pool(x, **_mp(3, 2, pad_type="custom", pad=[1, 1, 1, 1])),
      lambda t, x: F().max_pool2d(x, 3, 2, padding=1), [(2, 2, 7, 7)]),
    C("avg_pool", lambda x: ak.avg_pool(x, **_mp(2, 2)), lambda t, x: F().avg_pool2d(x, 2, 2), [(2, 3, 6, 6)]),
    C("avg_pool_pad_exclude", lambda x: ak.avg_pool(x, **_mp(3, 2, pad_type="custom", pad=[1, 1, 1, 1],
                                                            exclude_padding_from_average=True)),
      lambda t, x: F().avg_pool2d(x, 3, 2, padding=1, count_include_pad=False), [(1, 2, 7, 8)]),
    # softmax, reductions
    C("softmax", lambda x: ak.softmax(x, axis=1), lambda t, x: t.softmax(x, 1), [(2, 5, 3)]),
    C("log_softmax", lambda x: ak.log_softmax(x, axis=-1), lambda t, x: t.log_softmax(x, -1), [(4, 10)]),
    C("reduce_sum", lambda x: ak.reduce_sum(x, axes=[1]), lambda t, x: x.sum(1), [(2, 3, 4)]),
    C("reduce_sum_all", lambda x: ak.reduce_sum(x), lambda t, x: x.sum(), [(2, 3, 4)]),
    C("reduce_mean", lambda x: ak.reduce_mean(x, axes=[0, 2], keep_dims=True),
      lambda t, x: x.mean((0, 2), keepdim=True), [(2, 3, 4)]),
    C("reduce_max", lambda x: ak.reduce_max(x, axes=[-1]), lambda t, x: x.amax(-1), [(3, 6)]),
    C("reduce_min", lambda x: ak.reduce_min(x, axes=[0]), lambda t, x: x.amin(0), [(3, 6)]),
    C("reduce_sum_square", lambda x: ak.reduce_sum_square(x, axes=[1]), lambda t, x: (x * x).sum(1), [(3, 6)]),
    C("reduce_l2_norm", lambda x: ak.reduce_l2_norm(x, axes=[1]), lambda t, x: x.norm(dim=1), [(3, 6)]),
    C("reduce_l1_norm", lambda x: ak.reduce_l1_norm(x, axes=[1]), lambda t, x: x.abs().sum(1), [(3, 6)]),
    C("reduce_log_sum_exp", lambda x: ak.reduce_log_sum_exp(x, axes=[1]), lambda t, x: x.logsumexp(1), [(3, 6)]),
    # normalization
    C("layer_norm", lambda x, g, b: ak.layer_norm(x, axes=[-1], gamma=g, beta=b),
      lambda t, x, g, b: F().layer_norm(x, (6,), g, b), [(2, 3, 6), (6,), (6,)]),
    C("layer_norm_2axes", lambda x, g: ak.layer_norm(x, axes=[1, 2], gamma=g),
      lambda t, x, g: F().layer_norm(x, (3, 6), g), [(2, 3, 6), (3, 6)]),
    C("instance_norm", lambda x, g, b: ak.instance_norm(x, gamma=g, beta=b),
      lambda t, x, g, b: F().instance_norm(x, weight=g, bias=b), [(2, 3, 4, 5), (3,), (3,)]),
    C("batch_norm", lambda x, m, v, g, b: ak.batch_norm(x, m, v, gamma=g, beta=b),
      lambda t, x, m, v, g, b: (x - m[:, None]) / (v[:, None] + 1e-5).sqrt() * g[:, None] + b[:, None], [(2, 3, 4), (3,), (3,), (3,), (3,)],
      ["n", "n", "p", "n", "n"]),
    C("group_norm", lambda x, g, b: ak.group_norm(x, 2, g, b),
      lambda t, x, g, b: F().group_norm(x, 2, g, b), [(2, 4, 3, 3), (4,), (4,)]),
    C("rms_norm", lambda x, g: ak.rms_norm(x, axes=[-1], gamma=g),
      lambda t, x, g: x * (x.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt() * g, [(2, 3, 8), (8,)]),
    C("rms_norm_2axes", lambda x: ak.rms_norm(x, axes=[1, 2]),
      lambda t, x: x * (x.pow(2).mean((1, 2), keepdim=True) + 1e-5).rsqrt(), [(2, 3, 4)]),
    C("rms_norm_channels", lambda x, g: ak.rms_norm(x, axes=[1], gamma=g),       # the Stories layout
      lambda t, x, g: x * (x.pow(2).mean(1, keepdim=True) + 1e-5).rsqrt() * g[:, None, None], [(1, 16, 1, 5), (16,)]),
    C("l2_norm", lambda x: ak.l2_norm(x, axes=[-1]), lambda t, x: F().normalize(x, dim=-1), [(3, 7)]),
    C("l2_norm_2axes", lambda x: ak.l2_norm(x, axes=[0, 2]),
      lambda t, x: x / x.pow(2).sum((0, 2), keepdim=True).sqrt(), [(2, 3, 4)]),
    # layout
    C("reshape", lambda x: ak.reshape(x, shape=[4, -1]), lambda t, x: x.reshape(4, -1), [(2, 3, 4)]),
    C("transpose", lambda x: ak.transpose(x, perm=[2, 0, 1]), lambda t, x: x.permute(2, 0, 1), [(2, 3, 4)]),
    C("squeeze", lambda x: ak.squeeze(x, axes=[1]), lambda t, x: x.squeeze(1), [(3, 1, 4)]),
    C("expand_dims", lambda x: ak.expand_dims(x, axes=[0, 2]), lambda t, x: x[None, :, None], [(3, 4)]),
    C("concat", lambda x, y: ak.concat([x, y, x], axis=1), lambda t, x, y: t.cat([x, y, x], 1),
      [(2, 3), (2, 5)]),
    C("concat_interleave", lambda x, y: ak.concat([x, y], axis=0, interleave=True),
      lambda t, x, y: t.stack([x, y], 1).reshape(6, 4), [(3, 4), (3, 4)]),
    C("split", lambda x: ak.split(x, split_sizes=[1, 3], axis=1)[1], lambda t, x: x[:, 1:], [(3, 4)]),
    C("stack", lambda x, y: ak.stack([x, y], axis=1), lambda t, x, y: t.stack([x, y], 1), [(3, 4), (3, 4)]),
    C("slice_by_index", lambda x: ak.slice_by_index(x, begin=[0, 1, 1], end=[2, 5, 6], stride=[1, 2, 3]),
      lambda t, x: x[0:2, 1:5:2, 1:6:3], [(3, 6, 7)]),
    C("slice_by_index_rev_squeeze", lambda x: ak.slice_by_index(x, begin=[1, 5], end=[0, 0], stride=[1, -2],
                                                             squeeze_mask=[True, False]),
      lambda t, x: x[1, [5, 3, 1]], [(3, 7)]),
    C("slice_by_size", lambda x: ak.slice_by_size(x, begin=[1, 0, -3], size=[1, -1, 2]),
      lambda t, x: x[1:2, :, -3:-1], [(3, 4, 5)]),
    C("pad", lambda x: ak.pad(x, pad=[1, 2, 0, 3]), lambda t, x: F().pad(x, (0, 3, 1, 2)), [(2, 3, 4)]),
    C("tile", lambda x: ak.tile(x, reps=[2, 1, 3]), lambda t, x: x.repeat(2, 1, 3), [(2, 3, 4)]),
    C("upsample_nearest", lambda x: ak.upsample_nearest_neighbor(x, scale_factor_height=2, scale_factor_width=3),
      lambda t, x: F().interpolate(x, scale_factor=(2, 3), mode="nearest"), [(2, 3, 4, 5)]),
    C("crop", lambda x: ak.crop(x, crop_height=[1, 2], crop_width=[2, 0]), lambda t, x: x[..., 1:-2, 2:], [(2, 3, 6, 5)]),
    C("pixel_shuffle", lambda x: ak.pixel_shuffle(x, upscale_factor=2), lambda t, x: F().pixel_shuffle(x, 2),
      [(2, 8, 3, 4)]),
    C("reverse", lambda x: ak.reverse(x, axes=[0, 2]), lambda t, x: x.flip(0, 2), [(2, 3, 4)]),
    C("cumsum", lambda x: ak.cumsum(x, axis=1), lambda t, x: x.cumsum(1), [(3, 5)]),
    C("cumsum_rev_excl", lambda x: ak.cumsum(x, axis=0, exclusive=True, reverse=True),
      lambda t, x: x.flip(0).cumsum(0).flip(0) - x, [(5, 3)]),
    C("gather_along_axis", lambda x, i: ak.gather_along_axis(x, i, axis=1),
      lambda t, x, i: t.gather(x, 1, i.long()), [(3, 5, 2), (3, 4, 2)], ["n", "i5"]),
    C("topk", lambda x: ak.topk(x, k=3, axis=1)[0], lambda t, x: t.topk(x, 3, 1)[0], [(4, 7)]),
    C("slice_update", lambda x, u: ak.slice_update(x, u, begin=[0, 1], end=[3, 4]),
      lambda t, x, u: t.cat([x[:, :1], u, x[:, 4:]], 1), [(3, 6), (3, 3)]),
    C("gather", lambda x, i: ak.gather(x, i, axis=0), lambda t, x, i: x[i.long()], [(7, 5), (2, 3)],
      ["n", "i7"]),
    C("gather_batch_dims", lambda x, i: ak.gather(x, i, axis=2, batch_dims=1),
      lambda t, x, i: t.stack([x[b][:, i[b].long()] for b in range(2)]), [(2, 3, 6, 4), (2, 5)], ["n", "i6"]),
    C("gather_axis1", lambda x, i: ak.gather(x, i, axis=1), lambda t, x, i: x[:, i.long()], [(2, 6, 3), (4,)],
      ["n", "i6"]),
    C("fill_like", lambda x: x * ak.fill_like(x, value=2.5) + x, lambda t, x: x * t.full_like(x, 2.5) + x,
      [(3, 4)]),
    C("gather_nd", lambda x, i: ak.gather_nd(x, i), lambda t, x, i: x[i[:, 0].long(), i[:, 1].long()],
      [(5, 5, 3), (6, 2)], ["n", "i5"]),
    C("gather_nd_batch_dims", lambda x, i: ak.gather_nd(x, i, batch_dims=1),
      lambda t, x, i: t.stack([x[b][i[b, :, 0].long(), i[b, :, 1].long()] for b in range(2)]),
      [(2, 5, 5, 3), (2, 4, 2)], ["n", "i5"]),
    # ir/ops/more.py (issue 15 audit)
    C("band_part", lambda x: ak.band_part(x, lower=1, upper=0), lambda t, x: t.triu(t.tril(x), -1), [(2, 4, 5)]),
    C("prelu", lambda x: ak.prelu(x, alpha=np.array([0.1, 0.5, 2.0])),
      lambda t, x: t.nn.functional.prelu(x, t.tensor([0.1, 0.5, 2.0], dtype=t.float64)), [(2, 3, 4)]),
    C("threshold", lambda x: ak.threshold(x, alpha=0.25), lambda t, x: t.clamp(x, min=0.25), [(3, 5)]),
    C("pixel_unshuffle", lambda x: ak.pixel_unshuffle(x, downscale_factor=2), lambda t, x: F().pixel_unshuffle(x, 2),
      [(2, 3, 4, 6)]),
    C("sinh", ak.sinh, lambda t, x: x.sinh(), [(3, 4)]),
    C("cosh", ak.cosh, lambda t, x: x.cosh(), [(3, 4)]),
    C("asin", ak.asin, lambda t, x: x.asin(), [(3, 4)], ["u"]),
    C("acos", ak.acos, lambda t, x: x.acos(), [(3, 4)], ["u"]),
    C("atanh", ak.atanh, lambda t, x: x.atanh(), [(3, 4)], ["u"]),
    C("asinh", ak.asinh, lambda t, x: x.asinh(), [(3, 4)]),
    C("acosh", lambda x: ak.acosh(x + 1.0), lambda t, x: (x + 1.0).acosh(), [(3, 4)], ["p"]),
    C("clamped_relu", lambda x: ak.clamped_relu(x, alpha=0.25, beta=0.8),
      lambda t, x: t.clamp(t.where(x >= 0, x, 0.25 * x), max=0.8), [(3, 6)]),
    C("scaled_tanh", lambda x: ak.scaled_tanh(x, alpha=1.5, beta=0.5), lambda t, x: 1.5 * t.tanh(0.5 * x), [(3, 4)]),
    C("reduce_log_sum", lambda x: ak.reduce_log_sum(x, axes=[1]), lambda t, x: x.sum(1).log(), [(3, 5)], ["p"]),
    C("reduce_log_sum_keep", lambda x: ak.reduce_log_sum(x, axes=[0], keep_dims=True),
      lambda t, x: x.sum(0, keepdim=True).log(), [(3, 5)], ["p"]),
    C("flatten2d", lambda x: ak.flatten2d(x, axis=2), lambda t, x: x.reshape(6, 20), [(2, 3, 4, 5)]),
]


def _torch_grads(case, values, fp16=False):
    torch = T()
    tins = []
    for v in values:
        t = torch.tensor(v, dtype=torch.float64 if v.dtype.kind == "f" else None)
        if v.dtype.kind == "f":
            t.requires_grad_(True)
        tins.append(t)
    out = case.tfn(torch, *tins)
    r = np.random.default_rng(1).standard_normal(tuple(out.shape))
    r = torch.tensor(r.astype(np.float16).astype(np.float64) if fp16 else r)
    (out * r).sum().backward()
    return [t.grad.numpy() for t, v in zip(tins, values) if v.dtype.kind == "f"], r.numpy()


def ours(case, values, probe, target="m1", numerics="exact", dtype="fp32"):
    ins, out = case.graph(values, dtype)
    loss = ak.reduce_sum(out * probe.astype(np.float32))
    floats = [t for t, v in zip(ins, values) if v.dtype.kind == "f"]
    grads = ak.grad(loss, floats)
    outs = {f"g{i}": g for i, g in enumerate(grads)} | {"loss": loss}
    if numerics == "profile":   # the chip runs runtime-weight convs lowered, M1's runtime matmuls padded
        from anekit.train.lowering import lower_runtime_weights
        outs = lower_runtime_weights(outs, target)
    prog = ak.program(outs)
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    feeds = {t.name: (v.astype(np_dtype) if v.dtype.kind == "f" else v) for t, v in zip(ins, values)}
    res = ak.compile(prog, backend="sim", target=target, numerics=numerics)(feeds)
    return [np.asarray(res[f"g{i}"], np.float64) for i in range(len(grads))]


def compare(a, b):
    """(cosine, relative error) of a gradient against the reference."""
    a, b = np.ravel(a), np.ravel(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na and nb else float(na == nb)
    return cos, float(np.linalg.norm(a - b) / max(nb, 1e-30))


def case_accuracy(case, target="m1", numerics="exact", dtype="fp32"):
    """Worst (cosine, relative error) over the case's float inputs. With fp16 the inputs are
    rounded to fp16 first, for the reference too, so the figure measures the gradient alone."""
    values = case.values()
    if dtype == "fp16":
        values = [v.astype(np.float16).astype(np.float64) if v.dtype.kind == "f" else v for v in values]
    ref, probe = _torch_grads(case, values, dtype == "fp16")
    got = ours(case, values, probe, target, numerics, dtype)
    pairs = [compare(g, r) for g, r in zip(got, ref)]
    return min(p[0] for p in pairs), max(p[1] for p in pairs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gradient_matches_torch(case):
    cos, rel = case_accuracy(case)
    assert cos >= COSINE_MIN and rel <= REL_ERR_MAX, f"{case.id}: cosine {cos:.6f}, relative error {rel:.2e}"


def _forward_op_types(case) -> set[str]:
    ins, out = case.graph(case.values())
    outs = list(out) if isinstance(out, tuple) else [out]
    ops, _ = topo_order(outs)
    return {o.type for o in ops}


def test_every_declared_gradient_is_exercised():
    """An op that declares a gradient rule must appear in some case's forward graph."""
    covered = set().union(*(_forward_op_types(c) for c in CASES))
    declared = {name for name, spec in REGISTRY.items() if spec.grad is not None}
    assert not declared - covered, f"gradient rules no test exercises: {sorted(declared - covered)}"


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# --- the API itself (numpy only) --------------------------------------------------------------

def test_param_is_a_named_input_with_its_initial_value():
    init = np.arange(6.0).reshape(2, 3)
    w = ak.param("w", init)
    assert isinstance(w, Parameter) and w.op is None and w.name == "w" and w.dtype == "fp16"
    np.testing.assert_array_equal(w.init, init)
    x = ak.input("x", (4, 3))
    prog = ak.program({"y": ak.matmul(x, w, transpose_y=True)})
    assert {t.name for t in prog.main.inputs} == {"w", "x"}
    assert all(o.type != "const" or o.outputs[0].shape != (2, 3) for o in prog.main.ops)   # not folded


def test_param_rejects_bad_init():
    with pytest.raises(ShapeError):
        ak.param("w", np.array([1.0, np.nan]))
    with pytest.raises(ShapeError):
        ak.param("w", np.ones(3), dtype="int32")
    with pytest.raises(ShapeError):
        ak.param("w", 3.0)
    with pytest.raises(ShapeError, match="fp16 maximum"):
        ak.param("w", np.array([1e5]))


def test_params_of_finds_the_parameters_a_loss_reads():
    a, b = ak.param("a", np.ones((2, 2))), ak.param("b", np.ones((2,)))
    ak.param("unused", np.ones(3))
    x = ak.input("x", (2, 2))
    loss = ak.reduce_sum(ak.relu(x @ a) + b)
    assert params_of(loss) == [a, b]


def test_grad_changes_with_the_fed_weights_without_recompiling():
    w = ak.param("w", np.ones((3,)), dtype="fp32")
    x = ak.input("x", (3,), "fp32")
    (gx,) = ak.grad(ak.reduce_sum(x * w * w + x * x * 0.5), [x])     # gx = w^2 + x
    exe = ak.compile(ak.program({"gx": gx}), backend="sim", numerics="exact")
    xv = np.zeros(3, np.float32)
    np.testing.assert_allclose(exe({"x": xv, "w": np.array([1, 2, 3], np.float32)})["gx"], [1, 4, 9])
    np.testing.assert_allclose(exe({"x": xv, "w": np.array([2, 0, 1], np.float32)})["gx"], [4, 0, 1])


def test_grad_seed_scales_the_cotangent():
    x = ak.input("x", (2,), "fp32")
    loss = ak.reduce_sum(x * x)
    (g1,) = ak.grad(loss, [x], seed=256.0)
    out = ak.compile(ak.program({"g": g1}), backend="sim", numerics="exact")({"x": np.array([1, -2], np.float32)})
    np.testing.assert_allclose(out["g"], [512, -1024])


def test_missing_rule_names_the_op_and_its_path():
    x = ak.input("x", (2, 6), "fp32")
    y = ak.reduce_prod(ak.relu(x), axes=[1])
    loss = ak.reduce_mean(ak.exp(y, name="e"))
    with pytest.raises(GradientError, match=r"'reduce_prod'.*loss <- reduce_mean <- exp 'e' <- reduce_prod"):
        ak.grad(loss, [x])


def test_a_form_a_rule_does_not_cover_is_an_error():
    x = ak.input("x", (2, 5), "fp32")
    with pytest.raises(GradientError, match="reflect"):
        ak.grad(ak.reduce_sum(ak.pad(x, pad=[1, 1], mode="reflect")), [x])


def test_a_rule_that_omits_a_needed_input_is_an_error(monkeypatch):
    """None means "no gradient flows"; leaving an input out is a gap, not a silent zero."""
    full = REGISTRY["mul"].grad
    monkeypatch.setattr(REGISTRY["mul"], "grad", lambda op, gs: {"x": full(op, gs)["x"]})
    x, y = ak.input("x", (3,), "fp32"), ak.input("y", (3,), "fp32")
    with pytest.raises(GradientError, match="'mul' gives nothing for its input 'y'"):
        ak.grad(ak.reduce_sum(x * y), [y])


def test_integer_and_comparison_outputs_carry_no_gradient():
    x = ak.input("x", (2, 5), "fp32")
    idx = ak.reduce_argmax(x, axis=1)                          # int32: no flow, not an error
    mask = ak.cast(ak.greater(x, 0.0), dtype="fp32")            # from a comparison: no flow
    picked = ak.gather(ak.reshape(x, shape=[10]), idx)              # indices from argmax: no flow
    loss = ak.reduce_sum(x * mask) + ak.reduce_sum(picked) * 0.0
    (g,) = ak.grad(loss, [x])
    xv = np.array([[1, -1, 2, 0.5, -3], [-1, -2, 4, 1, 0.1]], np.float32)
    out = ak.compile(ak.program({"g": g}), backend="sim", numerics="exact")({"x": xv})
    np.testing.assert_allclose(out["g"], (xv > 0).astype(np.float32))


def test_unreached_tensor_gets_zero_gradient():
    x, z = ak.input("x", (3,), "fp32"), ak.input("z", (2, 2), "fp32")
    gx, gz = ak.grad(ak.reduce_sum(x), [x, z])
    assert gz.op.type == "const" and gz.shape == (2, 2) and not np.any(gz.const)


def test_gradients_are_distinct_program_outputs():
    """add's inputs share one cotangent, and d loss / d loss is the seed (here an input):
    every gradient still goes into a program under its own name."""
    a, b = ak.input("a", (3,), "fp32"), ak.input("b", (3,), "fp32")
    scale = ak.input("scale", (), "fp32")
    loss = ak.reduce_sum(a + b)
    ga, gb, gl = ak.grad(loss, [a, b, loss], seed=scale)
    prog = ak.program({"ga": ga, "gb": gb, "gl": gl})
    out = ak.compile(prog, backend="sim", numerics="exact")({"scale": np.float32(4.0)})   # a, b not needed
    np.testing.assert_array_equal(out["ga"], [4, 4, 4])
    np.testing.assert_array_equal(out["gb"], [4, 4, 4])
    assert float(out["gl"]) == 4.0


def test_loss_must_have_one_element():
    x = ak.input("x", (3,), "fp32")
    with pytest.raises(GradientError, match="scalar"):
        ak.grad(x * 2.0, [x])
    with pytest.raises(GradientError, match="seed"):
        ak.grad(ak.reduce_sum(x), [x], seed=[1.0, 2.0])


def test_backward_graph_is_an_ordinary_program():
    """The gradient program prints to MIL and parses back, checks and estimates like any
    program (forward ops only)."""
    from anekit import mil
    x = ak.input("x", (1, 2, 6, 6))
    w = ak.param("w", np.random.default_rng(0).standard_normal((3, 2, 3, 3)) * 0.1)
    loss = ak.reduce_mean(ak.max_pool(ak.relu(ak.conv(x, w)), kernel_sizes=[2, 2], strides=[2, 2]))
    (gw,) = ak.grad(loss, [w])
    from anekit.train.lowering import lower_runtime_weights
    prog = ak.program(lower_runtime_weights({"gw": gw}, "m1"))   # as the Trainer builds it for M1
    text, files = mil.emit(prog)
    back = mil.parse(text, weights=files)
    types = {o.type for o in back.main.ops}
    assert {"matmul", "slice_by_index"} <= types          # the weight gradient's patches and matmul
    assert ak.check(back, "m1").ok
    est = ak.estimate(back, "m1")
    assert est.total_us > 0 and est.flops > 0


@pytest.mark.parametrize("fp16", [False, True])
def test_digits_style_network_gradient(fp16):
    """conv -> relu -> max_pool -> reshape -> linear -> log_softmax -> one-hot NLL, in one go."""
    torch = T()
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((4, 1, 8, 8))
    labels = rng.integers(0, 10, 4)
    wv, bv = rng.standard_normal((6, 1, 3, 3)) * 0.3, rng.standard_normal(6) * 0.1
    fv, cv = rng.standard_normal((10, 54)) * 0.1, rng.standard_normal(10) * 0.1
    dt = "fp16" if fp16 else "fp32"
    x, onehot = ak.input("x", xv.shape, dt), ak.input("y", (4, 10), dt)
    w, b, f, c = (ak.param(n, v, dt) for n, v in (("w", wv), ("b", bv), ("f", fv), ("c", cv)))
    h = ak.max_pool(ak.relu(ak.conv(x, w, bias=b)), kernel_sizes=[2, 2], strides=[2, 2])
    logits = ak.linear(ak.reshape(h, shape=[4, -1]), f, bias=c)
    loss = -ak.reduce_mean(ak.reduce_sum(ak.log_softmax(logits, axis=1) * onehot, axes=[1]))
    params = params_of(loss)
    assert [p.name for p in params] == ["w", "b", "f", "c"]
    grads = ak.grad(loss, params)
    np_dt = np.float16 if fp16 else np.float32
    feeds = {"x": xv.astype(np_dt), "y": np.eye(10)[labels].astype(np_dt),
             **{p.name: p.init.astype(np_dt) for p in params}}
    out = ak.compile(ak.program({f"d{p.name}": g for p, g in zip(params, grads)}), backend="sim", target="m1",
                     numerics="profile" if fp16 else "exact")(feeds)
    tp = [torch.tensor(v, requires_grad=True) for v in (wv, bv, fv, cv)]
    th = F().max_pool2d(F().relu(F().conv2d(torch.tensor(xv), tp[0], tp[1])), 2, 2)
    tl = F().cross_entropy(F().linear(th.reshape(4, -1), tp[2], tp[3]), torch.tensor(labels))
    tl.backward()
    for p, t in zip(params, tp):
        cos, rel = compare(out[f"d{p.name}"], t.grad.numpy())
        assert cos >= (0.999 if fp16 else COSINE_MIN), f"{p.name}: cosine {cos}, rel {rel}"


def _off_engine(outputs, target):
    """(op type, rule) of what keeps a graph (lowered for the target as the Trainer does it:
    runtime weights rewritten, M1's runtime matmuls padded) off the engine, apart from int/bool
    program inputs (the test feeds indices and masks that way)."""
    from anekit.train.lowering import lower_runtime_weights
    rep = ak.check(ak.program(lower_runtime_weights(outputs, target)), target)
    return [(f.op_type, f.rule) for f in rep.findings
            if f.verdict in ("unsupported", "over_limit") and f.rule != "input-dtype"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_backward_graph_runs_on_the_engine_where_the_forward_does(case):
    """The backward graph uses only ops and shapes the engine takes on the first chip of m1,
    m3, m5 that runs the forward graph (else m5, excusing the forward's own ops): no logical
    ops, no rank above the engine's (sin and cos, say, are native from the M3's family only)."""
    values = case.values()
    ins, out = case.graph(values, "fp16")
    target = next((t for t in ("m1", "m3", "m5") if not _off_engine({"y": out}, t)), "m5")
    excused = {op for op, _ in _off_engine({"y": out}, target)}   # tan: no engine path on any family
    floats = [t for t, v in zip(ins, values) if v.dtype.kind == "f"]
    loss = ak.reduce_sum(out * np.random.default_rng(1).standard_normal(out.shape).astype(np.float16))
    grads = {f"g{i}": g for i, g in enumerate(ak.grad(loss, floats)) if g.op.type != "const"}
    off = [f for f in _off_engine(grads, target) if f[0] not in excused]
    assert not off, f"{case.id} on {target}: {off}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gradient_on_the_m1_profile(case):
    """fp16 inputs and storage, the M1's activation tables and MAC model, runtime-weight convs
    lowered: still cosine >= 0.9999 against torch on the same fp16 inputs (worst measured
    0.999995, softplus through the 33-knot sigmoid table); relative error under 1e-2."""
    cos, rel = case_accuracy(case, "m1", "profile", "fp16")
    assert cos >= COSINE_MIN and rel <= 1e-2, f"{case.id} on m1: cosine {cos:.6f}, relative error {rel:.2e}"


def _random_broadcast_pair(rng):
    """Two shapes that broadcast: a random rank-1..4 shape, each axis of the other kept,
    set to 1, or dropped from the front."""
    full = [int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 5)))]
    other = [1 if rng.random() < 0.4 else n for n in full][int(rng.integers(0, len(full))):]
    return (full, other or [1]) if rng.random() < 0.5 else (other or [1], full)


def _random_matmul(rng):
    batch = [int(rng.integers(1, 4)) for _ in range(int(rng.integers(0, 3)))]
    xb = [1 if rng.random() < 0.3 else n for n in batch][int(rng.integers(0, len(batch) + 1)):]
    m, k, n = (int(v) for v in rng.integers(1, 6, 3))
    tx, ty = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    return (xb + ([k, m] if tx else [m, k]), batch + ([n, k] if ty else [k, n]), tx, ty)


@pytest.mark.parametrize("seed", range(12))
def test_random_shapes_broadcast_and_batch(seed):
    """Random broadcasting binaries, random batched matmuls with random transpose flags and a
    random conv geometry, each against torch in exact numerics."""
    rng = np.random.default_rng(100 + seed)
    xs, ys = _random_broadcast_pair(rng)
    name, tfn = [("add", lambda t, x, y: x + y), ("sub", lambda t, x, y: x - y), ("mul", lambda t, x, y: x * y),
                 ("maximum", lambda t, x, y: t.maximum(x, y))][seed % 4]
    mx, my, tx, ty = _random_matmul(rng)
    k = [int(v) for v in rng.integers(1, 4, 2)]
    s = [int(v) for v in rng.integers(1, 3, 2)]
    cin, groups = int(rng.integers(1, 3)) * 2, int(rng.choice([1, 2]))
    size = [k[i] + int(rng.integers(0, 5)) for i in range(2)]
    cases = [
        Case(name, getattr(ak, name), tfn, [tuple(xs), tuple(ys)]),
        Case("matmul", lambda x, y: ak.matmul(x, y, transpose_x=tx, transpose_y=ty),
             lambda t, x, y: (x.transpose(-1, -2) if tx else x) @ (y.transpose(-1, -2) if ty else y),
             [tuple(mx), tuple(my)]),
        Case("conv", lambda x, w: ak.conv(x, w, strides=s, groups=groups),
             lambda t, x, w: F().conv2d(x, w, stride=s, groups=groups), [(2, cin, *size), (4, cin // groups, *k)]),
    ]
    for case in cases:
        cos, rel = case_accuracy(case)
        assert cos >= COSINE_MIN and rel <= REL_ERR_MAX, f"{case.id} {case.shapes}: cosine {cos}, rel {rel:.2e}"


def test_transformer_block_gradients_match_finite_differences():
    """Every weight of a Stories block (RMSNorm, RoPE, causal attention, SwiGLU; conv 1x1
    projections) as a parameter: the gradient's directional derivative along a random
    direction matches central differences of the float64 reference block (no torch)."""
    from anekit.models import stories
    dim, hidden, heads, seq = 16, 24, 2, 6
    w = stories.random_weights(dim, hidden, 1, seed=3)[0]
    params = {k: ak.param(k, v, "fp32") for k, v in w.items()}
    x = ak.input("x", (1, dim, 1, seq), "fp32")
    rng = np.random.default_rng(4)
    xv, r = rng.standard_normal((1, dim, 1, seq)), rng.standard_normal((1, dim, 1, seq))
    loss = ak.reduce_sum(stories.layer(x, params, heads) * r.astype(np.float32))
    names = sorted(params)
    grads = ak.grad(loss, [params[k] for k in names])
    out = ak.compile(ak.program({f"d_{k}": g for k, g in zip(names, grads)}), backend="sim", numerics="exact")(
        {"x": xv.astype(np.float32), **{k: v.astype(np.float32) for k, v in w.items()}})

    def ref_loss(wd):
        y = stories.reference_layer(xv.reshape(dim, seq), wd, heads)
        return float((y * r.reshape(dim, seq)).sum())

    for k in names:
        d = rng.standard_normal(w[k].shape)
        eps = 1e-5
        plus = {**w, k: w[k].astype(np.float64) + eps * d}
        minus = {**w, k: w[k].astype(np.float64) - eps * d}
        numeric = (ref_loss(plus) - ref_loss(minus)) / (2 * eps)
        ours = float((out[f"d_{k}"].astype(np.float64) * d).sum())
        assert abs(ours - numeric) <= 1e-4 * max(abs(numeric), 1.0), f"{k}: {ours} vs {numeric}"
