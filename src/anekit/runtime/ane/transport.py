"""The one interface all Objective-C traffic to AppleNeuralEngine.framework goes through.

A transport sends selector S to a class or object with typed arguments, plus the handful of C
calls the protocol needs (dlopen, class lookup, autorelease pools, NSTemporaryDirectory,
IOSurface create / lock / unlock / base address, CFRelease, memory copies). Keeping it this
small lets `FakeTransport` implement it faithfully and record it, and lets the same protocol
code (anekit.runtime.ane.protocol) drive the real framework through `ObjCTransport`
(objc_transport.py); `RecordingTransport` (recording.py) wraps either. This module holds the
interface and its argument types only.

Arguments carry their Objective-C type code, so every objc_msgSend is made with an explicit C
signature (arm64 needs the exact prototype: objc_msgSend is not variadic there):

    t.send(model, "compileWithQoS:options:error:", u32(21), obj(options), err, returns="B")

Type codes: "@" object (None = nil), "I" uint32, "i" int32, "Q" uint64, "q" int64, "B" BOOL,
"^v" opaque pointer (an IOSurfaceRef), "r^v" input bytes (const void *), "*" C string,
"r^@" C array of objects (id const *), "^@" NSError ** out-parameter (ErrorOut).
Return codes: "@", "B", "I", "i", "Q", "q", "^v" (address), "*" (bytes or None), "v".
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...errors import TransportError

ARG_CODES = ("@", "I", "i", "Q", "q", "B", "^v", "r^v", "*", "r^@", "^@")
RETURN_CODES = ("@", "B", "I", "i", "Q", "q", "^v", "*", "v")

# IOSurface lock options (IOSurfaceTypes.h): 0 = read-write, 1 = kIOSurfaceLockReadOnly.
LOCK_READ_WRITE = 0
LOCK_READ_ONLY = 1
# The property names IOSurfaceCreate takes (kIOSurface<Name> in IOSurface.framework).
SURFACE_PROPERTIES = ("Width", "Height", "BytesPerElement", "BytesPerRow", "AllocSize", "PixelFormat")


@dataclass(frozen=True)
class Ref:
    """An opaque handle: an Objective-C class or object, an IOSurfaceRef, or a raw address."""
    address: int
    kind: str = "object"      # "class" | "object" | "surface"
    label: str = ""           # class name (for classes) or a short description, for call records

    def __repr__(self) -> str:
        return f"<{self.label or self.kind} 0x{self.address:x}>"


@dataclass
class Arg:
    """One typed argument of a message or C call."""
    code: str
    value: Any

    def summary(self):
        v = self.value
        if self.code == "@":
            return None if v is None else repr(v)
        if self.code == "r^v":
            return f"<{len(v)} bytes>"
        if self.code == "r^@":
            return [None if r is None else repr(r) for r in v]
        if self.code == "^v":
            return repr(v)
        if self.code == "*":
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return v


class ErrorOut(Arg):
    """An `NSError **` out-parameter; after the call `.value` is the NSError (a Ref) or None."""

    def __init__(self):
        super().__init__("^@", None)

    def summary(self):
        return "&error"


def obj(ref: Ref | None) -> Arg:
    if ref is not None and not isinstance(ref, Ref):
        raise TransportError(f"obj() takes a Ref or None, got {type(ref).__name__}")
    return Arg("@", ref)


def _int_arg(code: str, bits: int, signed: bool):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def make(v: int) -> Arg:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise TransportError(f"argument {v!r} does not fit C type '{code}'")
        return Arg(code, v)
    return make


u32 = _int_arg("I", 32, False)
u64 = _int_arg("Q", 64, False)
i64 = _int_arg("q", 64, True)


def boolean(v: bool) -> Arg:
    return Arg("B", bool(v))


def ptr(ref: Ref) -> Arg:
    if not isinstance(ref, Ref):
        raise TransportError(f"ptr() takes a Ref, got {type(ref).__name__}")
    return Arg("^v", ref)


def in_bytes(data: bytes) -> Arg:
    return Arg("r^v", bytes(data))


def cstring(text: str) -> Arg:
    return Arg("*", text.encode("utf-8"))


def objects(refs: list) -> Arg:
    if any(r is not None and not isinstance(r, Ref) for r in refs):
        raise TransportError("objects() takes a list of Refs")
    return Arg("r^@", list(refs))


class Call(NamedTuple):
    """One recorded call: receiver (class name, object label or "C"), selector or C function, args."""
    receiver: str
    selector: str
    args: tuple


class Transport(abc.ABC):
    """Everything the ANE protocol needs from the machine, and nothing more."""

    kind: str = ""            # "objc" (the real framework) or "fake"

    # --- loading and the Objective-C runtime ---------------------------------------------
    @abc.abstractmethod
    def load_library(self, path: str) -> None:
        """dlopen(path, RTLD_NOW); raises TransportError saying why it failed."""

    @abc.abstractmethod
    def get_class(self, name: str) -> Ref | None:
        """objc_getClass(name), None when the class does not exist."""

    @abc.abstractmethod
    def send(self, receiver: Ref, selector: str, *args: Arg, returns: str = "@"):
        """objc_msgSend(receiver, sel_registerName(selector), args...) with the signature the
        argument codes and `returns` spell. Returns a Ref or None for "@", bool for "B", int for
        integers and "^v", bytes or None for "*", None for "v"."""

    @abc.abstractmethod
    def pool_push(self) -> int:
        """objc_autoreleasePoolPush(); returns the token pool_pop needs."""

    @abc.abstractmethod
    def pool_pop(self, token: int) -> None:
        """objc_autoreleasePoolPop(token)."""

    @abc.abstractmethod
    def temporary_directory(self) -> Ref:
        """NSTemporaryDirectory(): an autoreleased NSString."""

    # --- IOSurface and memory ---------------------------------------------------------------
    @abc.abstractmethod
    def surface_create(self, properties: dict[str, int]) -> Ref | None:
        """IOSurfaceCreate with {"Width": n, ...} (keys from SURFACE_PROPERTIES); None on failure."""

    @abc.abstractmethod
    def surface_lock(self, surface: Ref, options: int) -> int:
        """IOSurfaceLock(surface, options, NULL); returns the kern_return_t (0 = success)."""

    @abc.abstractmethod
    def surface_unlock(self, surface: Ref, options: int) -> int:
        """IOSurfaceUnlock(surface, options, NULL); returns the kern_return_t."""

    @abc.abstractmethod
    def surface_base_address(self, surface: Ref) -> int:
        """IOSurfaceGetBaseAddress(surface)."""

    @abc.abstractmethod
    def surface_alloc_size(self, surface: Ref) -> int:
        """IOSurfaceGetAllocSize(surface)."""

    @abc.abstractmethod
    def cf_release(self, ref: Ref) -> None:
        """CFRelease(ref) (for the IOSurfaceRef that IOSurfaceCreate returned)."""

    @abc.abstractmethod
    def memory_write(self, address: int, data: bytes) -> None:
        """memcpy(address, data, len(data)) into memory the caller owns (a locked surface)."""

    @abc.abstractmethod
    def memory_read(self, address: int, size: int) -> bytes:
        """A copy of `size` bytes at `address` (a locked surface)."""

    # --- the machine ------------------------------------------------------------------------
    def check_target(self, target_name: str) -> None:
        """Called by the backend with the target it compiles for; the real transport accepts
        any (the framework compiles for the chip it runs on), FakeTransport adopts or checks it."""

    def describe(self) -> str:
        return self.kind


def check_codes(args: tuple, returns: str) -> None:
    for a in args:
        if not isinstance(a, Arg) or a.code not in ARG_CODES:
            raise TransportError(f"argument {a!r} is not a typed Arg (use obj(), u32(), ...)")
    if returns not in RETURN_CODES:
        raise TransportError(f"unknown return type code '{returns}' (one of {', '.join(RETURN_CODES)})")
