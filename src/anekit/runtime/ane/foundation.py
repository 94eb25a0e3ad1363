"""Foundation objects made and read through a transport: NSString, NSData, NSNumber, NSArray,
NSDictionary, plus retain / release and autorelease pools. Only the makers are on the
dispatch path; the readers serve diagnostics and the tests that prove the makers.

Every factory here is a `+[Class classMethod...]` convenience constructor, so the object it
returns is autoreleased: it lives until the innermost pool pops unless the caller retains it.
"""
from __future__ import annotations

from contextlib import contextmanager

from ...errors import TransportError
from .transport import Ref, Transport, cstring, i64, in_bytes, obj, objects, u64


def cls(t: Transport, name: str) -> Ref:
    """A class by name, cached per transport (TransportError if the runtime lacks it)."""
    cache = t.__dict__.setdefault("_class_cache", {})
    ref = cache.get(name)
    if ref is None:
        ref = t.get_class(name)
        if ref is None:
            raise TransportError(f"Objective-C class {name} not found")
        cache[name] = ref
    return ref


@contextmanager
def autorelease_pool(t: Transport):
    token = t.pool_push()
    try:
        yield
    finally:
        t.pool_pop(token)


def ns_string(t: Transport, text: str) -> Ref:
    ref = t.send(cls(t, "NSString"), "stringWithUTF8String:", cstring(text))
    if ref is None:
        raise TransportError(f"+[NSString stringWithUTF8String:] returned nil for {text[:40]!r}")
    return ref


def ns_data(t: Transport, data: bytes) -> Ref:
    ref = t.send(cls(t, "NSData"), "dataWithBytes:length:", in_bytes(data), u64(len(data)))
    if ref is None:
        raise TransportError(f"+[NSData dataWithBytes:length:] returned nil for {len(data)} bytes")
    return ref


def ns_number(t: Transport, value: int) -> Ref:
    if value >= 0:
        ref = t.send(cls(t, "NSNumber"), "numberWithUnsignedLongLong:", u64(value))
    else:
        ref = t.send(cls(t, "NSNumber"), "numberWithLongLong:", i64(value))
    if ref is None:
        raise TransportError(f"+[NSNumber numberWith...] returned nil for {value}")
    return ref


def ns_array(t: Transport, items: list[Ref]) -> Ref:
    ref = t.send(cls(t, "NSArray"), "arrayWithObjects:count:", objects(items), u64(len(items)))
    if ref is None:
        raise TransportError("+[NSArray arrayWithObjects:count:] returned nil")
    return ref


def ns_dictionary(t: Transport, pairs: list[tuple[Ref, Ref]] | dict) -> Ref:
    """An NSDictionary from (key, value) pairs of Refs, or from {str: Ref} (keys become NSStrings)."""
    if isinstance(pairs, dict):
        pairs = [(ns_string(t, k) if isinstance(k, str) else k, v) for k, v in pairs.items()]
    keys = [k for k, _ in pairs]
    values = [v for _, v in pairs]
    ref = t.send(cls(t, "NSDictionary"), "dictionaryWithObjects:forKeys:count:",
                 objects(values), objects(keys), u64(len(pairs)))
    if ref is None:
        raise TransportError("+[NSDictionary dictionaryWithObjects:forKeys:count:] returned nil")
    return ref


def to_str(t: Transport, ref: Ref | None) -> str | None:
    """An NSString's text (-UTF8String), None for nil."""
    if ref is None:
        return None
    raw = t.send(ref, "UTF8String", returns="*")
    return None if raw is None else raw.decode("utf-8", "replace")


def data_bytes(t: Transport, ref: Ref) -> bytes:
    """An NSData's contents (-length, -bytes, then a copy)."""
    n = t.send(ref, "length", returns="Q")
    return t.memory_read(t.send(ref, "bytes", returns="^v"), n) if n else b""


def number_value(t: Transport, ref: Ref) -> int:
    return t.send(ref, "longLongValue", returns="q")


def array_items(t: Transport, ref: Ref) -> list[Ref | None]:
    n = t.send(ref, "count", returns="Q")
    return [t.send(ref, "objectAtIndex:", u64(i)) for i in range(n)]


def dictionary_value(t: Transport, ref: Ref, key: str) -> Ref | None:
    """-objectForKey: with an NSString key; None when absent."""
    return t.send(ref, "objectForKey:", obj(ns_string(t, key)))


def describe(t: Transport, ref: Ref | None) -> str | None:
    """[[obj description] UTF8String]: the text an NSError carries, None for nil."""
    if ref is None:
        return None
    return to_str(t, t.send(ref, "description"))


def retain(t: Transport, ref: Ref) -> Ref:
    t.send(ref, "retain")
    return ref


def release(t: Transport, ref: Ref | None) -> None:
    if ref is not None:
        t.send(ref, "release", returns="v")


def temporary_directory(t: Transport) -> str:
    path = to_str(t, t.temporary_directory())
    if not path:
        raise TransportError("NSTemporaryDirectory() returned nil")
    return path


__all__ = ["cls", "autorelease_pool", "ns_string", "ns_data", "ns_number", "ns_array", "ns_dictionary",
           "to_str", "data_bytes", "number_value", "array_items", "dictionary_value", "describe", "retain",
           "release", "temporary_directory"]
