"""The transport boundary: typed arguments, the ctypes objc_msgSend plumbing (driven through a
C callback standing in for objc_msgSend, so it runs on every platform), Foundation helpers,
and FakeTransport's object model (retain counts, pools, deallocation, surfaces)."""
import ctypes
import sys

import pytest

from anekit.errors import AnekitError, BackendUnavailableError, TransportError
from anekit.runtime.ane import FakeTransport, RecordingTransport
from anekit.runtime.ane import foundation as ns
from anekit.runtime.ane import objc
from anekit.runtime.ane.protocol import FRAMEWORK, MODEL
from anekit.runtime.ane.transport import ErrorOut, Ref, in_bytes, obj, objects, ptr, u32, u64


# --- typed arguments -------------------------------------------------------------------------

def test_integer_arguments_are_range_checked():
    assert u32(21).code == "I" and u64(1 << 40).code == "Q"
    for bad in (-1, 1 << 32, 2.0, True):
        with pytest.raises(TransportError):
            u32(bad)


def test_obj_and_ptr_take_handles_only():
    with pytest.raises(TransportError):
        obj("not a handle")
    with pytest.raises(TransportError):
        ptr(None)
    with pytest.raises(TransportError):
        objects([1, 2])


@pytest.mark.parametrize("code, ctype", [("@", ctypes.c_void_p), ("I", ctypes.c_uint32), ("Q", ctypes.c_uint64),
                                         ("q", ctypes.c_int64), ("*", ctypes.c_char_p), ("v", None)])
def test_type_codes_map_to_ctypes(code, ctype):
    assert objc.ctype_for(code) is ctype


def test_unknown_type_code_is_a_transport_error():
    with pytest.raises(TransportError, match="'f'"):
        objc.ctype_for("f")


def test_prototypes_are_built_once_per_signature():
    a = objc.prototype("B", ("I", "@", "^@"))
    assert objc.prototype("B", ("I", "@", "^@")) is a
    assert objc.prototype("B", ("I", "^@")) is not a
    assert a._restype_ is objc.ctype_for("B")
    assert a._argtypes_[:2] == (ctypes.c_void_p, ctypes.c_void_p) and a._argtypes_[2] is ctypes.c_uint32


def _runtime_with(callback):
    """An ObjCRuntime whose objc_msgSend is `callback` (a C function pointer made by ctypes)."""
    rt = objc.ObjCRuntime.__new__(objc.ObjCRuntime)
    rt._msgsend = ctypes.cast(callback, ctypes.c_void_p).value
    rt._selectors = {}
    rt.selector = lambda name: 0x5E1
    return rt


def test_msg_send_passes_exact_c_types_and_fills_the_error_out_parameter():
    seen = {}
    proto = ctypes.CFUNCTYPE(objc.ctype_for("B"), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                             ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))

    def compile_with_qos(receiver, sel, qos, options, error):
        seen.update(receiver=receiver, sel=sel, qos=qos, options=options)
        error[0] = 0xE770          # the callee stores an NSError* through the out-parameter
        return False

    cb = proto(compile_with_qos)
    rt = _runtime_with(cb)
    err = ErrorOut()
    ok = rt.msg_send(0x1000, "compileWithQoS:options:error:", (u32(21), obj(Ref(0x2000)), err), "B")
    assert ok is False
    assert seen == {"receiver": 0x1000, "sel": 0x5E1, "qos": 21, "options": 0x2000}
    assert err.value == Ref(0xE770, "object", "NSError")


def test_msg_send_passes_bytes_and_object_arrays_by_address():
    got = {}
    proto = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_uint64)

    def dictionary(receiver, sel, values, keys, count):
        got["values"] = [ctypes.c_void_p.from_address(values + 8 * i).value for i in range(count)]
        got["keys"] = [ctypes.c_void_p.from_address(keys + 8 * i).value for i in range(count)]
        return 0xD1C7

    cb = proto(dictionary)
    rt = _runtime_with(cb)
    out = rt.msg_send(0x1, "dictionaryWithObjects:forKeys:count:",
                      (objects([Ref(0xA), Ref(0xB)]), objects([Ref(0xC), Ref(0xD)]), u64(2)), "@")
    assert out == 0xD1C7 and got == {"values": [0xA, 0xB], "keys": [0xC, 0xD]}

    proto2 = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)
    copied = {}

    def data_with_bytes(receiver, sel, ptr_, length):
        copied["bytes"] = ctypes.string_at(ptr_, length)
        return 0xDA7A

    cb2 = proto2(data_with_bytes)
    rt2 = _runtime_with(cb2)
    assert rt2.msg_send(0x1, "dataWithBytes:length:", (in_bytes(b"MIL\x00text"), u64(8)), "@") == 0xDA7A
    assert copied["bytes"] == b"MIL\x00text"


def test_msg_send_checks_the_argument_count_against_the_selector():
    rt = _runtime_with(ctypes.CFUNCTYPE(None)(lambda: None))
    with pytest.raises(TransportError, match="takes 3 arguments"):
        rt.msg_send(0x1, "compileWithQoS:options:error:", (u32(21),), "B")


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS; on a Mac the runtime loads")
def test_objc_transport_refuses_off_macos():
    from anekit.runtime.ane import ObjCTransport
    with pytest.raises(BackendUnavailableError, match="macOS"):
        ObjCTransport()


# --- Foundation through the fake -----------------------------------------------------------------

def test_foundation_objects_round_trip_through_the_fake():
    t = FakeTransport()
    with ns.autorelease_pool(t):
        s = ns.ns_string(t, "héllo")
        assert ns.to_str(t, s) == "héllo"
        d = ns.ns_dictionary(t, {"offset": ns.ns_number(t, 0), "data": ns.ns_data(t, b"\x01\x02")})
        a = ns.ns_array(t, [ns.ns_number(t, 7), ns.ns_number(t, -3)])
        # read back through the objects' own selectors
        assert ns.number_value(t, ns.dictionary_value(t, d, "offset")) == 0
        assert ns.data_bytes(t, ns.dictionary_value(t, d, "data")) == b"\x01\x02"
        assert ns.dictionary_value(t, d, "missing") is None
        assert [ns.number_value(t, r) for r in ns.array_items(t, a)] == [7, -3]
        assert ns.data_bytes(t, ns.ns_data(t, b"")) == b""
        with pytest.raises(TransportError, match="immutable"):
            t.memory_write(t.send(ns.dictionary_value(t, d, "data"), "bytes", returns="^v"), b"x")
    # the recorded calls spell the Foundation values out
    dict_call = [c for c in t.calls if c.selector == "dictionaryWithObjects:forKeys:count:"][0]
    assert dict_call.args == ([0, "<NSData 2 bytes>"], ["offset", "data"], 2)
    arr_call = [c for c in t.calls if c.selector == "arrayWithObjects:count:"][0]
    assert arr_call.args == ([7, -3], 2)
    assert t.live()["objects"] == [] and t.problems == []
    with pytest.raises(TransportError, match="deallocated"):
        ns.to_str(t, s)                       # the pool released it: the real process would crash
    assert d is not None and a is not None


def test_retained_objects_outlive_their_pool_and_die_on_release():
    t = FakeTransport()
    with ns.autorelease_pool(t):
        s = ns.retain(t, ns.ns_string(t, "kept"))
    assert ns.to_str(t, s) == "kept"
    ns.release(t, s)
    assert t.live()["objects"] == []


def test_over_release_and_pool_less_autorelease_are_reported():
    t = FakeTransport()
    ns.ns_string(t, "no pool")                   # autoreleased with no pool: leaks on a Mac
    assert any("no pool" in p for p in t.problems)
    t2 = FakeTransport()
    with pytest.raises(TransportError):
        with ns.autorelease_pool(t2):
            s = ns.ns_string(t2, "x")
            ns.release(t2, s)                   # not ours to release
            ns.release(t2, s)
    t3 = FakeTransport()
    with ns.autorelease_pool(t3):
        s = ns.ns_string(t3, "x")
        ns.release(t3, s)
    assert any("over-released" in p for p in t3.problems)


def test_the_fake_checks_each_message_signature():
    t = FakeTransport()
    t.load_library(FRAMEWORK)
    model_cls = t.get_class(MODEL)
    with pytest.raises(TransportError, match="takes"):
        t.send(model_cls, "inMemoryModelWithDescriptor:", u64(1))          # wrong C type
    with pytest.raises(TransportError, match="unrecognized selector"):
        t.send(model_cls, "modelWithContentsOfURL:", obj(None))


def test_private_classes_need_the_framework_loaded_first():
    t = FakeTransport()
    assert t.get_class(MODEL) is None
    t.load_library(FRAMEWORK)
    assert t.get_class(MODEL) is not None
    with pytest.raises(TransportError, match="dlopen"):
        t.load_library("/System/Library/PrivateFrameworks/Nope.framework/Nope")


def test_surface_memory_needs_the_right_lock():
    t = FakeTransport()
    s = t.surface_create({"Width": 64, "Height": 1, "BytesPerElement": 1, "BytesPerRow": 64,
                          "AllocSize": 64, "PixelFormat": 0})
    base = t.surface_base_address(s)
    with pytest.raises(TransportError, match="read-write lock"):
        t.memory_write(base, b"x")
    t.surface_lock(s, 1)
    with pytest.raises(TransportError, match="read-write lock"):
        t.memory_write(base, b"x")              # read-only lock
    t.surface_unlock(s, 1)
    t.surface_lock(s, 0)
    t.memory_write(base, b"abc")
    with pytest.raises(TransportError, match="overruns"):
        t.memory_write(base, b"x" * 65)
    t.surface_unlock(s, 0)
    t.surface_lock(s, 1)
    assert t.memory_read(base, 3) == b"abc"
    t.surface_unlock(s, 1)
    t.cf_release(s)
    assert t.live()["surfaces"] == [] and t.problems == []
    with pytest.raises(TransportError):
        t.memory_read(base, 3)                  # use after free


def test_surface_properties_other_than_the_documented_ones_are_reported():
    t = FakeTransport()
    s = t.surface_create({"Width": 16, "Height": 4, "BytesPerElement": 2, "BytesPerRow": 32,
                          "AllocSize": 128, "PixelFormat": 0})
    assert s is not None and any("docs/hardware.md" in p for p in t.problems)


def test_recording_transport_records_what_it_forwards():
    inner = FakeTransport()
    t = RecordingTransport(inner)
    with ns.autorelease_pool(t):
        ns.ns_number(t, 5)
    assert [c.selector for c in t.calls] == ["objc_autoreleasePoolPush", "objc_getClass",
                                             "numberWithUnsignedLongLong:", "objc_autoreleasePoolPop"]
    assert [c.selector for c in t.calls] == [c.selector for c in inner.calls]


def test_transport_errors_are_anekit_errors():
    assert issubclass(TransportError, AnekitError)


def test_the_real_transport_refuses_a_target_of_another_family(monkeypatch):
    from anekit.errors import TargetError
    from anekit.runtime.ane.machine import check_host_target
    check_host_target("m1", host="M1 Max")                      # same family: fine
    check_host_target("m4max", host="M4")
    with pytest.raises(TargetError, match="this Mac's engine is M1 .*family h13.*M4 .*family h16"):
        check_host_target("m4", host="M1")
    import anekit.runtime.ane.machine as machine
    monkeypatch.setattr(machine, "chip_target", lambda: None)
    check_host_target("m4")                                      # unknown host chip: the framework decides
