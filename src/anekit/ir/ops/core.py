"""const and the compressed-weight constexpr ops (guide ch. 7, 25).

All are compile-time: they take the "const" path and never run on the engine. Each
constexpr op says how many bytes its stored form takes and which streaming format it is
(`@spec.defstored`): the checker's program-size limit and the cost model's weight streaming
both read it (ir/weights.py).
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ShapeError
from .. import dtypes as _dt
from .. import intervals as iv
from .. import subbyte
from ..dtypes import from_numpy
from ..spec import OlderForm, attr, const, op, tensor


def _const_range(op, res):
    v = op.attrs.get("val")
    if isinstance(v, str):
        return iv.UNBOUNDED
    return iv.BOOL if np.asarray(v).dtype == np.bool_ else iv.array_iv(v)


def _array_bytes(v) -> float:
    a = np.asarray(v)
    return a.size * a.dtype.itemsize


def _tensor_bytes(t) -> float:
    return (math.prod(t.shape) if t.shape else 1) * _dt.stored_bits(t.dtype) / 8.0 if t is not None else 0.0


@op(kind="const", T=(), val=attr(None), fp16_range=_const_range)
def const_(a):
    """A constant; its value lives inline or in weight.bin."""
    v = a.val
    if isinstance(v, str):
        return [("string", ())]
    arr = np.asarray(v)
    return [(from_numpy(arr.dtype), arr.shape)]


@op(kind="constexpr", T=("int8", "uint8"),
    quantized_data=attr(("int8", "uint8")), zero_point=attr(("int8", "uint8", "fp16", "fp32")),
    scale=attr(("fp16", "fp32")), axis=attr("int32", 0))
def constexpr_affine_dequantize(a):
    """(quantized_data - zero_point) * scale, per channel along `axis` (iOS16 form, block attributes)."""
    q = np.asarray(a.quantized_data)
    ax = int(a.axis)
    if not -q.ndim <= ax < q.ndim:
        raise a.fail("axis", f"axis {ax} out of range for rank {q.ndim}")
    for n in ("scale", "zero_point"):
        v = np.asarray(getattr(a, n))
        if v.ndim > 1 or (v.ndim == 1 and v.size not in (1, q.shape[ax])):
            raise a.fail(n, f"shape {list(v.shape)} must be a scalar or [{q.shape[ax]}] along axis {ax}")
    return [(_float_of(a.scale), q.shape)]


@constexpr_affine_dequantize.defstored
def _(op):
    return "int8", sum(_array_bytes(op.attrs.get(n, ())) for n in ("quantized_data", "scale", "zero_point"))


@constexpr_affine_dequantize.defrange
def _(op, res):
    q = np.asarray(op.attrs["quantized_data"], np.float64)
    zp = np.asarray(op.attrs["zero_point"], np.float64)
    sc = np.asarray(op.attrs["scale"], np.float64)
    ax = int(op.attrs["axis"]) % q.ndim
    if zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape([zp.size if i == ax else 1 for i in range(q.ndim)])
    if sc.ndim == 1 and sc.size > 1:
        sc = sc.reshape([sc.size if i == ax else 1 for i in range(q.ndim)])
    return iv.array_iv((q - zp) * sc)


@op(kind="constexpr", since="ios18", T=("fp16", "fp32"),
    indices=tensor(("uint1", "uint2", "uint3", "uint4", "uint6", "uint8")), lut=tensor("T"),
    vector_axis=const("int32", 0, default=None))
def constexpr_lut_to_dense(a):
    """Palettized weights: each index picks a row of `lut` (iOS18 form).

    lut has shape indices.shape-grouping + [2**nbits, vector_size]: rank(lut) = rank(indices) + 2,
    each lut axis dividing the matching indices axis into palette groups."""
    idx, lut = a.indices.shape, a.lut.shape
    if len(lut) != len(idx) + 2:
        raise a.fail("lut", f"rank {len(lut)} must be rank(indices)+2 = {len(idx) + 2}")
    out = list(idx)
    for i, (n, g) in enumerate(zip(idx, lut)):
        if n % g:
            raise a.fail("lut", f"palette groups {g} do not divide indices axis {i} of size {n}")
    vs = lut[-1]
    if vs > 1:
        if a.vector_axis is None:
            raise a.fail("vector_axis", "required when the lut's vector size is above 1")
        ax = a.vector_axis % len(idx)
        out[ax] *= vs
    return [(a.lut.dtype, tuple(out))]


@constexpr_lut_to_dense.defstored
def _(op):
    return "lut", _tensor_bytes(op.inputs.get("indices")) + _tensor_bytes(op.inputs.get("lut"))


constexpr_lut_to_dense.defrange(lambda op, res: iv.array_iv(op.inputs["lut"].const))


# The iOS 16/17 spelling (coremltools' `constexpr_lut_to_dense` before iOS 18): one palette for
# the whole tensor, `lut` [2**nbits], the indices packed into uint8 bytes as weight.bin packs
# sub-byte values (ir/subbyte.py: a little-endian bit stream; 8-bit indices are the bytes
# themselves) and the output `shape` [rank] as uint32. Read as the iOS 18 form with every
# palette group 1 and vector size 1; an iOS 18 op with that palette writes back the same way.
_LUT16_BITS = {2: 1, 4: 2, 16: 4, 64: 6, 256: 8}


def _lut16_read(a: dict) -> dict:
    lut, packed, shape = np.asarray(a["lut"]), np.asarray(a["indices"]), np.asarray(a["shape"])
    if lut.ndim != 1 or lut.size not in _LUT16_BITS:
        raise ShapeError(f"constexpr_lut_to_dense (iOS 16 form): lut has shape {list(lut.shape)}; it must be "
                         f"[2**nbits] for nbits 1, 2, 4, 6 or 8")
    if shape.ndim != 1 or not shape.size or (shape <= 0).any():
        raise ShapeError(f"constexpr_lut_to_dense (iOS 16 form): shape {shape.tolist()} must list positive sizes")
    bits, count = _LUT16_BITS[lut.size], math.prod(int(n) for n in shape)
    need = subbyte.packed_size(count, bits)
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size != need:
        raise ShapeError(f"constexpr_lut_to_dense (iOS 16 form): indices are {packed.dtype}[{packed.size}]; "
                         f"{count} values of {bits} bits pack into uint8[{need}]")
    dims = tuple(int(n) for n in shape)
    values = packed if bits == 8 else subbyte.unpack_bits(packed, count, bits)
    return {"indices": (values.reshape(dims), f"uint{bits}"),
            "lut": (lut.reshape((1,) * len(dims) + (lut.size, 1)), from_numpy(lut.dtype))}


def _lut16_write(op) -> dict:
    idx, lut = op.inputs["indices"], op.inputs["lut"]
    bits = int(idx.dtype[4:])
    single = all(n == 1 for n in lut.shape[:-2]) and lut.shape[-1] == 1
    if not single or lut.shape[-2] != 2 ** bits or 2 ** bits not in _LUT16_BITS or idx.const is None or lut.const is None:
        raise ShapeError(f"constexpr_lut_to_dense: palette {list(lut.shape)} over {idx.dtype} indices has no iOS 16 "
                         f"form (that takes one constant palette of 2**nbits entries, nbits 1, 2, 4, 6 or 8: "
                          f"ak.quantize(..., group_size=None) makes one)")
    values = np.asarray(idx.const, np.uint8)
    return {"indices": values.reshape(-1) if bits == 8 else subbyte.pack_bits(values, bits),
            "lut": np.asarray(lut.const).reshape(-1), "shape": np.array(idx.shape, np.uint32)}


constexpr_lut_to_dense.defolder(OlderForm(
    "ios16", {"indices": attr("uint8", 1), "lut": attr(("fp16", "fp32"), 1), "shape": attr("uint32", 1)},
    _lut16_read, _lut16_write))


@op(kind="constexpr", since="ios18", T=("fp16", "fp32"), nonzero_data=tensor("T"), mask=tensor("uint1"))
def constexpr_sparse_to_dense(a):
    """Sparse weights: `mask` (uint1, dense shape) marks where `nonzero_data` values go (iOS18 form)."""
    if a.mask.const is not None:
        n = int(np.count_nonzero(a.mask.const))
        if n != a.nonzero_data.size:
            raise a.fail("nonzero_data", f"has {a.nonzero_data.size} values but the mask sets {n}")
    return [(a.nonzero_data.dtype, a.mask.shape)]


@constexpr_sparse_to_dense.defstored
def _(op):
    return "sparse", _tensor_bytes(op.inputs.get("mask")) + _tensor_bytes(op.inputs.get("nonzero_data"))


constexpr_sparse_to_dense.defrange(lambda op, res: iv.union(iv.array_iv(op.inputs["nonzero_data"].const), (0.0, 0.0)))


@op(kind="constexpr", since="ios18", T=("int4", "uint4", "int8", "uint8", "fp16", "fp32"),
    data=tensor(("int4", "uint4", "int8", "uint8", "fp16", "fp32", "uint1", "uint2", "uint3", "uint6")),
    scale=tensor(("fp16", "fp32")), offset=tensor(None, optional=True))
def constexpr_blockwise_shift_scale(a):
    """(data - offset) * scale with one scale per block: scale has data's rank, each axis dividing it."""
    d, s = a.data.shape, a.scale.shape
    if len(s) != len(d):
        raise a.fail("scale", f"rank {len(s)} must equal data rank {len(d)}")
    for i, (n, b) in enumerate(zip(d, s)):
        if n % b:
            raise a.fail("scale", f"axis {i}: {b} blocks do not divide size {n}")
    if a.offset is not None and a.offset.shape != s:
        raise a.fail("offset", f"shape {list(a.offset.shape)} must equal scale's {list(s)}")
    return [(a.scale.dtype, d)]


@constexpr_blockwise_shift_scale.defstored
def _(op):
    return "blockwise", sum(_tensor_bytes(op.inputs.get(n)) for n in ("data", "scale", "offset"))


@constexpr_blockwise_shift_scale.defrange
def _(op, res):
    d = res.of(op.inputs["data"])
    if op.inputs.get("offset") is not None:
        o = res.of(op.inputs["offset"])
        d = iv.fix(d[0] - o[1], d[1] - o[0])
    return iv.mul(d, res.of(op.inputs["scale"]))


def _float_of(v) -> str:
    dt = np.asarray(v).dtype
    if dt == np.float16:
        return "fp16"
    if dt == np.float32:
        return "fp32"
    raise ShapeError(f"constexpr: scale must be fp16 or fp32, got {dt}")
