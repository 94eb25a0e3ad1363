"""[1, C, 1, S] surface layout: byte placement, alignment per family, refusals, request order."""
import numpy as np
import pytest

from anekit import targets
from anekit.errors import AnekitError, DTypeError, ShapeError
from anekit.runtime.ane import layout


def rules(name, order=None):
    return layout.io_rules(targets.get(name), order)


def test_element_c_s_sits_at_c_times_s_plus_s():
    spec = layout.surface_spec("x", (1, 3, 1, 5), "fp16", rules("m4"))
    a = np.arange(15, dtype=np.float16).reshape(1, 3, 1, 5) * np.float16(0.5)
    raw = layout.pack(spec, a)
    assert len(raw) == spec.nbytes == 3 * 5 * 2
    for c in range(3):
        for s in range(5):
            off = (c * 5 + s) * 2                      # docs/hardware.md: element (c, s) at c*S + s
            assert raw[off:off + 2] == np.float16(a[0, c, 0, s]).tobytes()


def test_pack_converts_to_the_declared_io_dtype_little_endian():
    spec = layout.surface_spec("x", (1, 2, 1, 2), "fp32", rules("m4"))
    raw = layout.pack(spec, np.array([[[[1.5, -2.0]], [[3.25, 0.0]]]], dtype=np.float64))
    assert raw == np.array([1.5, -2.0, 3.25, 0.0], dtype="<f4").tobytes()


def test_unpack_reads_only_the_data_bytes_of_a_padded_surface():
    spec = layout.surface_spec("y", (1, 5, 1, 16), "fp16", rules("m5"))
    values = np.linspace(-4, 4, 80).astype(np.float16)
    surface = values.tobytes() + b"\xff" * (spec.alloc - spec.nbytes)   # garbage past the data
    out = layout.unpack(spec, surface)
    assert out.shape == (1, 5, 1, 16) and out.dtype == np.float16
    np.testing.assert_array_equal(out.ravel(), values)


@pytest.mark.parametrize("chip, alignment", [("m1", 64), ("m2", 64), ("m4", 64), ("M4 Pro", 64),
                                             ("m5", 128), ("m5pro", 128)])
def test_alignment_is_a_per_family_rule(chip, alignment):
    spec = layout.surface_spec("x", (1, 5, 1, 16), "fp16", rules(chip))   # 160 data bytes
    assert spec.nbytes == 160
    assert spec.alloc == -(-160 // alignment) * alignment
    props = spec.properties()
    assert props == {"Width": spec.alloc, "Height": 1, "BytesPerElement": 1, "BytesPerRow": spec.alloc,
                     "AllocSize": spec.alloc, "PixelFormat": 0}


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 4, 1, 4), (64, 256), (1, 64, 256), (1, 1, 1, 1, 4)])
def test_shapes_that_do_not_map_to_1_c_1_s_are_refused(shape):
    with pytest.raises(ShapeError, match=r"\[1, C, 1, S\]"):
        layout.surface_spec("x", shape, "fp16", rules("m4"))


@pytest.mark.parametrize("dtype", ["int32", "bool", "fp64"])
def test_io_dtypes_other_than_fp16_fp32_are_refused(dtype):
    with pytest.raises(DTypeError, match="fp16"):
        layout.surface_spec("x", (1, 4, 1, 4), dtype, rules("m4"))


def test_pack_refuses_a_wrong_element_count():
    spec = layout.surface_spec("x", (1, 4, 1, 4), "fp16", rules("m4"))
    with pytest.raises(ShapeError, match="16 elements"):
        layout.pack(spec, np.zeros(15))


def test_unpack_refuses_a_short_surface():
    spec = layout.surface_spec("x", (1, 4, 1, 4), "fp16", rules("m4"))
    with pytest.raises(ShapeError, match="need 32"):
        layout.unpack(spec, b"\0" * 31)


def test_spatial_one_warns_with_the_reason():
    with pytest.warns(RuntimeWarning, match="spatial 1"):
        layout.surface_spec("x", (1, 8, 1, 1), "fp16", rules("m4"))


def test_request_order_declared_and_ascending_size():
    r = rules("m4")
    specs = [layout.surface_spec(n, (1, c, 1, 32), "fp16", r) for n, c in (("a", 8), ("b", 2), ("c", 4), ("d", 2))]
    assert layout.request_order(specs, "declared") == [0, 1, 2, 3]
    assert layout.request_order(specs, "ascending_size") == [1, 3, 2, 0]     # stable for equal sizes


def test_unknown_input_order_is_refused():
    with pytest.raises(AnekitError, match="input_order"):
        rules("m4", "by_name")


def test_huge_surfaces_are_refused_before_allocation():
    with pytest.raises(ShapeError, match="limit"):
        layout.surface_spec("x", (1, 1 << 16, 1, 1 << 16), "fp32", rules("m4"))
