"""weight.bin writer and reader: layout, coremltools byte identity, decoding, corruption."""
from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anekit.errors import AnekitError, DTypeError, ShapeError, WeightFileError
from anekit.mil.blobs import (
    DTYPE_CODES, Blob, BlobFile, BlobWriter, read_blob, write_blobs,
)
from anekit.ir.subbyte import pack_bits, unpack_bits

SIZES = (0, 1, 9, 10, 63, 64, 65, 3001)
SUBBYTE_BITS = {"uint1": 1, "uint2": 2, "uint3": 3, "uint4": 4, "uint6": 6, "int4": 4}


def sample(dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random values covering the whole range of `dtype`, one element per value."""
    if dtype == "fp16":
        return rng.standard_normal(n).astype(np.float16)
    if dtype == "fp32":
        return rng.standard_normal(n).astype(np.float32)
    if dtype == "int4":
        return rng.integers(-8, 8, n).astype(np.int8)
    if dtype in SUBBYTE_BITS:
        return rng.integers(0, 1 << SUBBYTE_BITS[dtype], n).astype(np.uint8)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, n).astype(dtype)


def parse_metadata(data: bytes, offset: int) -> tuple:
    """Independent decode of one 64-byte metadata record (docs/mil.md)."""
    sentinel, code, size, data_offset, padding = struct.unpack_from("<IIQQQ", data, offset)
    reserved = data[offset + 32: offset + 64]
    return sentinel, code, size, data_offset, padding, reserved


def naive_pack(values, bits: int) -> bytes:
    """Bit-by-bit reference: value i occupies stream bits i*bits.. LSB-first within each byte."""
    out = bytearray((len(values) * bits + 7) // 8)
    for i, value in enumerate(values):
        for b in range(bits):
            if (int(value) >> b) & 1:
                position = i * bits + b
                out[position // 8] |= 1 << (position % 8)
    return bytes(out)


# ---------------------------------------------------------------- layout, no coremltools needed

def test_layout_header_metadata_alignment_and_unpadded_end():
    a = np.arange(3, dtype=np.float16)
    b = np.array([1, 2, 3, 4, 5], dtype=np.uint8)
    data, offsets = write_blobs([a, (b, "uint3"), np.zeros(0, np.float32)])
    assert struct.unpack_from("<II", data, 0) == (3, 2)
    assert data[8:64] == bytes(56)
    assert offsets[0] == 64
    for offset in offsets:
        assert offset % 64 == 0
    sentinel, code, size, data_offset, padding, reserved = parse_metadata(data, offsets[0])
    assert (sentinel, code, size, data_offset, padding) == (0xDEADBEEF, 1, 6, 128, 0)
    assert reserved == bytes(32)
    assert data[128:134] == a.tobytes()
    assert offsets[1] == 192  # 134 rounded up to 64
    assert data[134:192] == bytes(58)
    _, code, size, data_offset, padding, _ = parse_metadata(data, offsets[1])
    # 5 values x 3 bits = 15 bits -> 2 bytes with one padding bit
    assert (code, size, data_offset, padding) == (12, 2, 256, 1)
    assert data[256:258] == naive_pack([1, 2, 3, 4, 5], 3)
    _, code, size, data_offset, _, _ = parse_metadata(data, offsets[2])
    assert (offsets[2], code, size, data_offset) == (320, 2, 0, 384)
    assert len(data) == 384  # the file end is not padded


def test_guide_uint4_palette_example_low_nibble_first():
    # guide ch. 7: indices [1, 0, 0, 1] pack to the bytes 0x01 0x10
    data, (offset,) = write_blobs([(np.array([1, 0, 0, 1], np.uint8), "uint4")])
    assert data[offset + 64:] == bytes([0x01, 0x10])


def test_int4_is_twos_complement_nibbles():
    values = np.array([-1, 2, -8, 7, 0], np.int8)
    data, (offset,) = write_blobs([(values, "int4")])
    assert data[offset + 64:] == naive_pack([v & 0xF for v in values], 4)
    back = read_blob(data, offset, dtype="int4")
    assert back.dtype == np.int8 and np.array_equal(back, values)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.sampled_from([1, 2, 3, 4, 6]), seed=st.integers(0, 2**32 - 1), n=st.integers(0, 200))
def test_pack_bits_matches_bitwise_reference_and_round_trips(bits, seed, n):
    values = np.random.default_rng(seed).integers(0, 1 << bits, n).astype(np.uint8)
    packed = pack_bits(values, bits)
    assert packed.tobytes() == naive_pack(values, bits)
    assert np.array_equal(unpack_bits(packed.tobytes(), n, bits), values)


@pytest.mark.parametrize("dtype", sorted(set(DTYPE_CODES) - {"bf16", "fp8e4m3", "fp8e5m2"}))
def test_round_trip_every_integer_and_float_dtype(dtype):
    rng = np.random.default_rng(7)
    arrays = [sample(dtype, n, rng) for n in SIZES]
    data, offsets = write_blobs([(a, dtype) for a in arrays])
    blobs = BlobFile(data)
    assert blobs.count == len(arrays) and blobs.offsets == offsets
    for array, offset in zip(arrays, offsets):
        back = blobs.read(offset, dtype=dtype)
        # documented read types: int4 sign-extends to int8, other sub-byte types unpack to uint8
        expected_type = {"int4": np.int8}.get(dtype, np.uint8 if dtype in SUBBYTE_BITS else array.dtype)
        assert back.dtype == expected_type
        assert np.array_equal(back, array)


def test_read_with_shape_and_from_path(tmp_path):
    weights = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    data, (first, second) = write_blobs([weights, (np.arange(10, dtype=np.uint8) % 4, "uint2")])
    path = tmp_path / "weight.bin"
    path.write_bytes(data)
    back = read_blob(path, first, shape=(2, 3, 4))
    assert back.shape == (2, 3, 4) and np.array_equal(back, weights)
    with BlobFile(str(path)) as blobs:
        assert blobs.count == 2
        assert np.array_equal(blobs.read(second, "uint2", shape=(2, 5)), (np.arange(10) % 4).reshape(2, 5))


def test_big_endian_input_is_stored_little_endian():
    values = np.arange(5, dtype=np.float32)
    native, _ = write_blobs([values])
    swapped, _ = write_blobs([values.astype(">f4")])
    assert native == swapped


def test_items_accept_blob_list_pair_and_writer_matches_write_blobs(tmp_path):
    idx = np.array([3, 1, 2], np.uint8)
    by_blob, offs_a = write_blobs([Blob(idx, "uint2")])
    by_list, offs_b = write_blobs([[idx, "uint2"]])
    writer = BlobWriter()
    assert writer.add(idx, "uint2") == offs_a[0]
    path = tmp_path / "w.bin"
    assert writer.write(path) == len(by_blob)
    assert by_blob == by_list == writer.getvalue() == path.read_bytes() and offs_a == offs_b


# ---------------------------------------------------------------- bf16 and fp8 against torch

def test_bf16_encode_and_decode_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(4000).astype(np.float32) * 1e3,
                             np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38], np.float32)])
    data, (offset,) = write_blobs([(values, "bf16")])
    expected_codes = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert data[offset + 64:] == expected_codes.tobytes()
    back = read_blob(data, offset, dtype="bf16")
    assert back.dtype == np.float32
    assert np.array_equal(back, torch.from_numpy(values).to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize("fmt,torch_name", [("fp8e4m3", "float8_e4m3fn"), ("fp8e5m2", "float8_e5m2")])
def test_fp8_codes_match_torch(fmt, torch_name):
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, torch_name)
    codes = np.arange(256, dtype=np.uint8)
    data, (offset,) = write_blobs([(codes, fmt)])  # uint8 input = raw codes
    decoded = read_blob(data, offset, dtype=fmt)
    reference = torch.from_numpy(codes.copy()).view(tdtype).float().numpy()
    assert decoded.dtype == np.float16
    assert np.array_equal(decoded.astype(np.float32), reference, equal_nan=True)

    limit = 440.0 if fmt == "fp8e4m3" else 5e4
    values = np.random.default_rng(5).uniform(-limit, limit, 5000)
    values[:200] *= 1e-3  # subnormal and tiny range
    data, (offset,) = write_blobs([(values, fmt)])
    expected = torch.from_numpy(values).to(tdtype).view(torch.uint8).numpy()
    assert data[offset + 64:] == expected.tobytes()


def test_fp8_e4m3_overflow_is_an_error_not_a_silent_nan():
    with pytest.raises(ShapeError, match="448"):
        write_blobs([(np.array([1.0, 500.0]), "fp8e4m3")])


# ---------------------------------------------------------------- coremltools byte identity

CT_WRITERS = {
    "fp16": "write_fp16_data", "fp32": "write_float_data", "int8": "write_int8_data",
    "uint8": "write_uint8_data", "int16": "write_int16_data", "uint16": "write_uint16_data",
    "int32": "write_int32_data", "uint32": "write_uint32_data", "int4": "write_int4_data",
    "uint1": "write_uint1_data", "uint2": "write_uint2_data", "uint3": "write_uint3_data",
    "uint4": "write_uint4_data", "uint6": "write_uint6_data",
}


@pytest.fixture(scope="module")
def milstorage():
    pytest.importorskip("coremltools")
    from coremltools import libmilstoragepython
    return libmilstoragepython


def ct_payload(dtype: str, array: np.ndarray) -> np.ndarray:
    return array.view(np.uint16) if dtype == "fp16" else array  # its fp16 writer takes raw bits


def ct_write(milstorage, path, items) -> tuple[bytes, list[int]]:
    writer = milstorage._BlobStorageWriter(str(path))
    offsets = [getattr(writer, CT_WRITERS[dtype])(ct_payload(dtype, array)) for array, dtype in items]
    del writer  # flushes and closes the file
    return path.read_bytes(), offsets


@pytest.mark.parametrize("dtype", sorted(CT_WRITERS))
def test_byte_identical_to_coremltools(milstorage, tmp_path, dtype):
    rng = np.random.default_rng(11)
    for n in SIZES:
        items = [(sample(dtype, n, rng), dtype), (sample(dtype, n + 1, rng), dtype), (sample(dtype, 7, rng), dtype)]
        reference, ct_offsets = ct_write(milstorage, tmp_path / f"{n}.bin", items)
        ours, offsets = write_blobs(items)
        assert offsets == ct_offsets, (dtype, n)
        assert ours == reference, (dtype, n)


def test_mixed_dtypes_byte_identical_and_cross_readable(milstorage, tmp_path):
    rng = np.random.default_rng(12)
    dtypes = list(CT_WRITERS) * 2
    items = [(sample(d, int(rng.integers(0, 130)), rng), d) for d in dtypes]
    reference, ct_offsets = ct_write(milstorage, tmp_path / "mixed.bin", items)
    ours, offsets = write_blobs(items)
    assert ours == reference and offsets == ct_offsets
    # our reader on the coremltools file
    with BlobFile(tmp_path / "mixed.bin") as blobs:
        assert blobs.offsets == ct_offsets
        for (array, dtype), offset in zip(items, ct_offsets):
            assert np.array_equal(blobs.read(offset, dtype=dtype), array)


@pytest.mark.parametrize("dtype", sorted(CT_WRITERS))
def test_coremltools_reads_our_files(milstorage, tmp_path, dtype):
    rng = np.random.default_rng(13)
    arrays = [sample(dtype, n, rng) for n in SIZES if n]
    data, offsets = write_blobs([(a, dtype) for a in arrays])
    path = tmp_path / "ours.bin"
    path.write_bytes(data)
    reader = milstorage._BlobStorageReader(str(path))
    method = getattr(reader, CT_WRITERS[dtype].replace("write_", "read_"))
    for array, offset in zip(arrays, offsets):
        assert np.array_equal(method(offset), ct_payload(dtype, array))


# ---------------------------------------------------------------- corruption

@pytest.fixture()
def valid_file() -> tuple[bytes, list[int]]:
    return write_blobs([np.arange(10, dtype=np.float16), (np.arange(9, dtype=np.uint8) % 2, "uint1"),
                        np.arange(4, dtype=np.int32)])


def patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_truncated_header(valid_file):
    with pytest.raises(WeightFileError, match="truncated"):
        BlobFile(valid_file[0][:40])


def test_truncated_empty_path(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(WeightFileError, match="truncated"):
        BlobFile(path)


def test_missing_path_is_weight_file_error(tmp_path):
    with pytest.raises(WeightFileError, match="cannot open"):
        read_blob(tmp_path / "absent.bin", 64)


def test_truncated_data(valid_file):
    data, offsets = valid_file
    cut = data[: offsets[2] + 64 + 8]  # last blob's 16 bytes of data cut to 8
    with pytest.raises(WeightFileError, match="past the end"):
        read_blob(cut, offsets[2])


def test_bad_version(valid_file):
    with pytest.raises(WeightFileError, match="version is 3"):
        BlobFile(patched(valid_file[0], 4, "<I", 3))


def test_bad_sentinel(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match=r"offset 64: sentinel is 0xdeadbeee"):
        read_blob(patched(data, offsets[0], "<I", 0xDEADBEEE), offsets[0])


def test_bad_dtype_code(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match="dtype code 99 is unknown"):
        read_blob(patched(data, offsets[0] + 4, "<I", 99), offsets[0])


def test_expected_dtype_mismatch(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match="dtype is fp16 .code 1., expected fp32"):
        read_blob(data, offsets[0], dtype="fp32")


def test_offset_past_end(valid_file):
    data, _ = valid_file
    with pytest.raises(WeightFileError, match="past end"):
        read_blob(data, len(data) + 64 * 10)


def test_offset_not_aligned(valid_file):
    with pytest.raises(WeightFileError, match="not 64-byte aligned"):
        read_blob(valid_file[0], 96)


def test_offset_inside_header(valid_file):
    with pytest.raises(WeightFileError, match="file header"):
        read_blob(valid_file[0], 0)


def test_size_claiming_a_terabyte(valid_file, tmp_path):
    data, offsets = valid_file
    corrupt = patched(data, offsets[0] + 8, "<Q", 2**40)
    with pytest.raises(WeightFileError, match="size 1099511627776 runs past the end"):
        read_blob(corrupt, offsets[0])
    path = tmp_path / "huge.bin"
    path.write_bytes(corrupt)
    with pytest.raises(WeightFileError, match="size 1099511627776"):
        read_blob(path, offsets[0])


def test_data_offset_past_end(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match="data_offset 18446744073709551615"):
        read_blob(patched(data, offsets[0] + 16, "<Q", 2**64 - 1), offsets[0])


def test_size_not_whole_elements(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match="size 19 is not a whole number of fp16"):
        read_blob(patched(data, offsets[0] + 8, "<Q", 19), offsets[0])


def test_subbyte_padding_inconsistent(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match="padding_size_in_bits 12"):
        read_blob(patched(data, offsets[1] + 24, "<Q", 12), offsets[1])


def test_shape_does_not_match_size(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match=r"holds 9 uint1 elements, shape \(2, 5\) needs 10"):
        read_blob(data, offsets[1], shape=(2, 5))


def test_count_mismatch_too_many(valid_file):
    data, _ = valid_file
    with pytest.raises(WeightFileError, match="count mismatch: header says 4 blobs, the file ends after 3"):
        BlobFile(patched(data, 0, "<I", 4)).offsets


def test_count_mismatch_too_few(valid_file):
    data, offsets = valid_file
    with pytest.raises(WeightFileError, match=f"header says 2 blobs, another starts at offset {offsets[2]}"):
        BlobFile(patched(data, 0, "<I", 2)).offsets


def test_count_beyond_file_size(valid_file):
    with pytest.raises(WeightFileError, match="header count 4294967295 needs at least"):
        BlobFile(patched(valid_file[0], 0, "<I", 2**32 - 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, 500))
def test_random_corruption_only_ever_raises_weight_file_error(valid_file, edits, cut):
    data, offsets = valid_file
    corrupt = bytearray(data)
    for position, value in edits:
        if position < len(corrupt):
            corrupt[position] = value
    corrupt = bytes(corrupt[: max(cut, 0)] if cut < len(corrupt) else corrupt)
    try:
        blobs = BlobFile(corrupt)
        for offset in offsets + blobs.offsets:
            blobs.read(offset)
    except WeightFileError:
        pass


# ---------------------------------------------------------------- writer input errors

def test_writer_rejects_bad_input():
    with pytest.raises(DTypeError, match="float64"):
        write_blobs([np.zeros(3)])
    with pytest.raises(DTypeError, match="unknown weight.bin dtype 'uint5'"):
        write_blobs([(np.zeros(3, np.uint8), "uint5")])
    with pytest.raises(DTypeError, match="fp16 needs a numpy float16"):
        write_blobs([(np.zeros(3, np.float32), "fp16")])
    with pytest.raises(ShapeError, match=r"blob 1: value 16 at flat index 2 is outside uint4's range \[0, 15\]"):
        write_blobs([np.zeros(1, np.float16), (np.array([0, 15, 16], np.uint8), "uint4")])
    with pytest.raises(ShapeError, match=r"outside int4's range \[-8, 7\]"):
        write_blobs([(np.array([-9], np.int8), "int4")])
    with pytest.raises(DTypeError, match="integer array"):
        write_blobs([(np.zeros(3, np.float32), "uint4")])
    for error in (DTypeError, ShapeError, WeightFileError):
        assert issubclass(error, AnekitError)


def test_read_rejects_unknown_expected_dtype_and_bad_shape(valid_file):
    data, offsets = valid_file
    with pytest.raises(DTypeError):
        read_blob(data, offsets[0], dtype="float99")
    with pytest.raises(ShapeError):
        read_blob(data, offsets[0], shape=(-1, 10))


# ---------------------------------------------------------------- memory

def test_writing_copies_fp16_data_once():
    weights = np.random.default_rng(0).standard_normal(8 << 20).astype(np.float16)  # 16 MiB
    tracemalloc.start()
    try:
        data, _ = write_blobs([weights[: 4 << 20], weights[4 << 20:]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) >= weights.nbytes
    # the output itself is one copy; anything beyond that is small bookkeeping
    assert peak < weights.nbytes * 1.05 + (1 << 20), peak


def test_reading_a_path_touches_only_the_blob(tmp_path):
    big = np.zeros(16 << 20, dtype=np.uint8)
    small = np.arange(100, dtype=np.float32)
    data, (_, small_offset) = write_blobs([big, small])
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    del data
    tracemalloc.start()
    try:
        back = read_blob(path, small_offset, dtype="fp32")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(back, small)
    assert peak < 1 << 20, peak  # a whole-file read would allocate 16 MiB
